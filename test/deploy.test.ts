/**
 * What ships in deploy/ is checked with the tools that will read it: the Prometheus rules
 * with promtool (syntax and their own unit tests), and every series they name exists in
 * what the bot exports; the systemd units with systemd-analyze (verify, and the offline
 * security score of their hardening), and every variable they set is one the bot reads.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMetrics } from '../src/metrics/metrics';
import { REPO_ROOT, run } from './support/lab';

const DEPLOY = join(REPO_ROOT, 'deploy');

describe('deploy/prometheus', () => {
  it('promtool accepts the alert rules and their unit tests pass', async () => {
    const check = await run('promtool', ['check', 'rules', join(DEPLOY, 'prometheus', 'etcd-medic-rules.yaml')], { timeoutMs: 60_000 });
    expect(`${check.stdout}${check.stderr}`).toMatch(/SUCCESS: \d+ rules found/);
    expect(check.code).toBe(0);
    const t = await run('promtool', ['test', 'rules', join(DEPLOY, 'prometheus', 'etcd-medic-rules.test.yaml')], { timeoutMs: 60_000 });
    expect(`${t.stdout}${t.stderr}`).toMatch(/SUCCESS/);
    expect(t.code).toBe(0);
  });

  it('every medic_ series the rules use is one the bot exports', async () => {
    const rules = readFileSync(join(DEPLOY, 'prometheus', 'etcd-medic-rules.yaml'), 'utf8');
    const used = [...new Set([...rules.matchAll(/\bmedic_[a-z_]+/g)].map((m) => m[0]))];
    expect(used.length).toBeGreaterThan(3);
    const m = createMetrics({ queueDepth: async () => ({ waiting: 0 }) });
    const exported = new Set([...(await m.text()).matchAll(/^# TYPE (\S+)/gm)].map((x) => x[1]));
    for (const name of used) expect({ name, exported: exported.has(name) }).toEqual({ name, exported: true });
  });
});

/** Every source file's text under src/ (what the bot reads from its environment is named there). */
function sourceText(dir = join(REPO_ROOT, 'src')): string {
  return readdirSync(dir, { withFileTypes: true }).map((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sourceText(p) : e.name.endsWith('.ts') ? readFileSync(p, 'utf8') : '';
  }).join('\n');
}

describe('deploy/systemd', () => {
  const SYSTEMD = join(DEPLOY, 'systemd');
  let dir: string;
  beforeAll(() => {
    // The template is verified as an instance, the way systemctl starts it.
    dir = mkdtempSync(join(tmpdir(), 'medic-units-'));
    copyFileSync(join(SYSTEMD, 'etcd-medic-web.service'), join(dir, 'etcd-medic-web.service'));
    copyFileSync(join(SYSTEMD, 'etcd-medic-worker@.service'), join(dir, 'etcd-medic-worker@.service'));
    symlinkSync('etcd-medic-worker@.service', join(dir, 'etcd-medic-worker@1.service'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('systemd-analyze verify is clean for the web unit and a worker instance', async () => {
    const r = await run('systemd-analyze', ['verify', join(dir, 'etcd-medic-web.service'), join(dir, 'etcd-medic-worker@1.service')], { timeoutMs: 60_000 });
    expect(`${r.stdout}${r.stderr}`.trim()).toBe('');
    expect(r.code).toBe(0);
  });

  it.each(['etcd-medic-web.service', 'etcd-medic-worker@1.service'])('%s is hardened: offline exposure score below 2 (systemd calls < 4 "OK")', async (unit) => {
    const r = await run('systemd-analyze', ['security', '--offline=yes', join(dir, unit)], { timeoutMs: 60_000 });
    const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(r.stdout);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeLessThan(2);
  });

  it('every variable the units and the environment file set is one the bot reads; secrets only as credential files', () => {
    const src = sourceText();
    const text = ['etcd-medic-web.service', 'etcd-medic-worker@.service', 'etcd-medic.env'].map((f) => readFileSync(join(SYSTEMD, f), 'utf8')).join('\n');
    const names = [...new Set([...text.matchAll(/^(?:Environment=)?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]))];
    expect(names).toEqual(expect.arrayContaining(['MEDIC_ROLE', 'MEDIC_CONFIG', 'REDIS_URL', 'MEDIC_SSH_KEY_FILE', 'SLACK_BOT_TOKEN_FILE', 'MEDIC_METRICS_PORT']));
    for (const name of names) {
      const read = src.includes(`'${name}'`) || src.includes(`env.${name}`) || (name.endsWith('_FILE') && src.includes(`'${name.slice(0, -5)}'`));
      expect({ name, read }).toEqual({ name, read: true });
    }
    // Tokens and keys never sit in an environment file or unit, only their files' paths.
    expect(text).not.toMatch(/^(?:Environment=)?(SLACK_BOT_TOKEN|SLACK_SIGNING_SECRET|MEDIC_SSH_KEY|SLACK_APP_TOKEN)=/m);
    // The stop bound covers the shutdown grace plus main.ts's 15 s.
    for (const unit of ['etcd-medic-web.service', 'etcd-medic-worker@.service']) {
      const stop = Number(/^TimeoutStopSec=(\d+)s$/m.exec(readFileSync(join(SYSTEMD, unit), 'utf8'))?.[1]);
      expect(stop).toBeGreaterThanOrEqual(20 + 15);
    }
  });
});
