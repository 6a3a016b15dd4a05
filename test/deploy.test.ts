/**
 * What ships in deploy/ is checked with the tools that will read it: the Prometheus rules
 * with promtool (syntax and their own unit tests), and every series they name exists in
 * what the bot exports.
 */
import { readFileSync } from 'node:fs';
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
