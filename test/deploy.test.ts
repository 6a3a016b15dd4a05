/**
 * What ships in deploy/ is checked with the tools that will read it: the Prometheus rules
 * with promtool (syntax and their own unit tests), and every series they name exists in
 * what the bot exports; the systemd units with systemd-analyze (verify, and the offline
 * security score of their hardening), and every variable they set is one the bot reads; the
 * Kubernetes manifests rendered by kustomize and read as a reviewer would.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfig } from '../src/config/load';
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

/** The bot reads `name` from its environment (a `_FILE` variable: through secret(env, NAME)). */
function readsVariable(src: string, name: string): boolean {
  return src.includes(`'${name}'`) || src.includes(`env.${name}`) || (name.endsWith('_FILE') && src.includes(`'${name.slice(0, -5)}'`));
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
      const read = readsVariable(src, name);
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

describe('deploy/kubernetes', () => {
  type Doc = { kind: string; metadata: { name: string; namespace?: string }; spec?: Record<string, any>; data?: Record<string, string> };
  let docs: Doc[];
  beforeAll(async () => {
    // kustomize 5.x from Debian's newer releases, unpacked beside the lab's etcd (never installed).
    const tool = await run('bash', [join(REPO_ROOT, 'scripts', 'debian-tool.sh'), 'kustomize', 'kustomize'], { timeoutMs: 300_000 });
    if (tool.code !== 0) throw new Error(`could not fetch kustomize: ${tool.stderr}`);
    const out = await run(tool.stdout.trim(), ['build', join(DEPLOY, 'kubernetes')], { timeoutMs: 60_000 });
    if (out.code !== 0) throw new Error(`kustomize build failed: ${out.stderr}`);
    docs = parseAllDocuments(out.stdout).map((d) => d.toJSON() as Doc);
  }, 320_000);

  const of = (kind: string, name?: string) => docs.filter((d) => d.kind === kind && (!name || d.metadata.name.startsWith(name)));
  const pods = () => [...of('Deployment'), ...of('StatefulSet')].map((d) => ({ name: d.metadata.name, spec: d.spec!.template.spec }));

  it('renders web and worker Deployments, Redis, Services, the config, NetworkPolicies, PDBs and a ServiceMonitor, all in the namespace', () => {
    expect(of('Deployment').map((d) => d.metadata.name).sort()).toEqual(['etcd-medic-web', 'etcd-medic-worker']);
    expect(of('Deployment', 'etcd-medic-worker')[0].spec!.replicas).toBe(2);
    expect(of('StatefulSet', 'etcd-medic-redis')).toHaveLength(1);
    expect(of('Service').map((d) => d.metadata.name).sort()).toEqual(['etcd-medic-redis', 'etcd-medic-web', 'etcd-medic-worker']);
    expect(of('PodDisruptionBudget')).toHaveLength(2);
    expect(of('ServiceMonitor')).toHaveLength(1);
    expect(of('NetworkPolicy').length).toBeGreaterThanOrEqual(3);
    for (const d of docs) expect({ kind: d.kind, namespace: d.metadata.namespace }).toEqual({ kind: d.kind, namespace: 'etcd-medic' });
    // Redis as BullMQ needs it, and durable.
    const redisArgs: string[] = of('StatefulSet', 'etcd-medic-redis')[0].spec!.template.spec.containers[0].args;
    expect(redisArgs.join(' ')).toMatch(/--appendonly yes/);
    expect(redisArgs.join(' ')).toMatch(/--maxmemory-policy noeviction/);
  });

  it('the inventory in the ConfigMap is one the bot loads', () => {
    const cm = of('ConfigMap', 'etcd-medic-config')[0];
    const dir = mkdtempSync(join(tmpdir(), 'medic-k8s-'));
    try {
      writeFileSync(join(dir, 'clusters.yaml'), cm.data!['clusters.yaml']);
      expect(loadConfig(join(dir, 'clusters.yaml')).clusters.map((c) => c.name)).toEqual(['prod-eu1']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('every pod runs non-root, read-only, without privileges, with requests, limits and probes', () => {
    for (const p of pods()) {
      expect({ pod: p.name, nonRoot: p.spec.securityContext?.runAsNonRoot, seccomp: p.spec.securityContext?.seccompProfile?.type, token: p.spec.automountServiceAccountToken })
        .toEqual({ pod: p.name, nonRoot: true, seccomp: 'RuntimeDefault', token: false });
      for (const c of p.spec.containers) {
        const sc = c.securityContext ?? {};
        expect({ c: c.name, ro: sc.readOnlyRootFilesystem, esc: sc.allowPrivilegeEscalation, drop: sc.capabilities?.drop })
          .toEqual({ c: c.name, ro: true, esc: false, drop: ['ALL'] });
        expect(c.resources?.requests?.memory).toBeDefined();
        expect(c.resources?.limits?.memory).toBeDefined();
        expect(c.readinessProbe).toBeDefined();
        expect(c.livenessProbe).toBeDefined();
      }
    }
  });

  it('the bot\'s containers: probes on its /healthz and /readyz at MEDIC_METRICS_PORT, secrets only as files from a Secret by reference, variables it reads', () => {
    const src = sourceText();
    const env = Object.fromEntries(of('ConfigMap', 'etcd-medic-env')[0].data ? Object.entries(of('ConfigMap', 'etcd-medic-env')[0].data!) : []);
    expect(of('Secret')).toHaveLength(0);
    for (const name of ['etcd-medic-web', 'etcd-medic-worker']) {
      const spec = pods().find((p) => p.name === name)!.spec;
      const c = spec.containers[0];
      const port = (c.ports as Array<{ name: string; containerPort: number }>).find((x) => x.name === c.livenessProbe.httpGet.port)!.containerPort;
      expect(String(port)).toBe(env.MEDIC_METRICS_PORT);
      expect(c.livenessProbe.httpGet.path).toBe('/healthz');
      expect(c.readinessProbe.httpGet.path).toBe('/readyz');
      const vars: Array<{ name: string; value?: string }> = c.env;
      for (const v of [...vars.map((x) => x.name), ...Object.keys(env)]) {
        const read = readsVariable(src, v);
        expect({ v, read }).toEqual({ v, read: true });
      }
      expect(vars.map((x) => x.name)).not.toEqual(expect.arrayContaining(['SLACK_BOT_TOKEN']));
      // Each *_FILE points into the mounted Secret, which names the key it needs.
      const secretVol = (spec.volumes as Array<{ name: string; secret?: { secretName: string; items: Array<{ key: string; path: string }> } }>).find((v) => v.secret)!;
      const mount = (c.volumeMounts as Array<{ name: string; mountPath: string }>).find((m) => m.name === secretVol.name)!;
      for (const f of vars.filter((x) => x.name.endsWith('_FILE'))) {
        expect(f.value!.startsWith(`${mount.mountPath}/`)).toBe(true);
        expect(secretVol.secret!.items.map((i) => i.path)).toContain(f.value!.slice(mount.mountPath.length + 1));
      }
    }
    const worker = pods().find((p) => p.name === 'etcd-medic-worker')!.spec;
    expect(worker.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(20 + 15);
  });
});

describe('deploy/compose.yaml', () => {
  type Service = { image: string; environment?: Record<string, string>; secrets?: string[]; command?: string[]; healthcheck?: { test: string[] };
    read_only?: boolean; user?: string; cap_drop?: string[]; deploy?: { replicas?: number }; volumes?: string[]; configs?: Array<{ source: string; target: string }>; stop_grace_period?: string };
  const file = join(DEPLOY, 'compose.yaml');
  const compose = parse(readFileSync(file, 'utf8'), { merge: true }) as {
    services: Record<string, Service>; secrets: Record<string, { file: string }>; configs: Record<string, { file: string }>; volumes: Record<string, unknown>;
  };

  it('web, two workers and Redis (AOF, noeviction), each with a health check', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['redis', 'web', 'worker']);
    expect(compose.services.worker.deploy?.replicas).toBe(2);
    expect(compose.services.redis.command!.join(' ')).toMatch(/--appendonly yes .*--maxmemory-policy noeviction/);
    for (const [name, s] of Object.entries(compose.services)) expect({ name, health: !!s.healthcheck?.test?.length }).toEqual({ name, health: true });
  });

  it('the bot\'s services use the image scripts/build-image.sh makes, locked down, with the inventory and variables it reads', () => {
    const src = sourceText();
    const version = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).version as string;
    const script = readFileSync(join(REPO_ROOT, 'scripts', 'build-image.sh'), 'utf8');
    expect(script).toContain('"localhost/etcd-medic:$VERSION"');
    for (const name of ['web', 'worker']) {
      const s = compose.services[name];
      expect(s.image).toBe(`localhost/etcd-medic:${version}`);
      expect({ name, ro: s.read_only, user: s.user, caps: s.cap_drop }).toEqual({ name, ro: true, user: '10001:10001', caps: ['ALL'] });
      expect(s.configs).toEqual([{ source: 'clusters', target: '/etc/etcd-medic/clusters.yaml' }]);
      expect(Number(/^(\d+)s$/.exec(s.stop_grace_period ?? '')?.[1])).toBeGreaterThanOrEqual(20 + 15);
      for (const v of Object.keys(s.environment ?? {})) {
        const read = readsVariable(src, v);
        expect({ v, read }).toEqual({ v, read: true });
      }
      // Secrets only as files compose mounts at /run/secrets/<name>.
      for (const [v, path] of Object.entries(s.environment ?? {}).filter(([k]) => k.endsWith('_FILE') && k !== 'MEDIC_AUDIT_ANCHOR_FILE')) {
        expect({ v, secret: s.secrets?.includes(path.replace('/run/secrets/', '')) }).toEqual({ v, secret: true });
      }
      expect(Object.keys(s.environment ?? {})).not.toEqual(expect.arrayContaining(['SLACK_BOT_TOKEN']));
    }
    // The workers' store is one named volume.
    expect(compose.services.worker.volumes).toEqual(['snapshots:/var/lib/etcd-medic']);
    expect(Object.keys(compose.volumes)).toEqual(expect.arrayContaining(['snapshots', 'redis']));
  });

  it('the files it references exist (the inventory, which the bot loads) or are secrets kept out of git', () => {
    const inventory = join(DEPLOY, compose.configs.clusters.file);
    expect(loadConfig(inventory).clusters.length).toBeGreaterThan(0);
    const ignored = readFileSync(join(REPO_ROOT, '.gitignore'), 'utf8').split('\n');
    for (const [name, s] of Object.entries(compose.secrets)) {
      expect({ name, file: s.file }).toEqual({ name, file: `./secrets/${name}` });
    }
    expect(ignored).toContain('deploy/secrets/');
  });
});

describe('deploy/Containerfile', () => {
  const text = readFileSync(join(DEPLOY, 'Containerfile'), 'utf8');
  it('FROM scratch over the debootstrap root filesystem, non-root, a state volume, the bot as entrypoint, no secrets', () => {
    const lines = text.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(lines[0]).toBe('FROM scratch');
    expect(text).toMatch(/^ADD rootfs\.tar \/$/m);
    expect(text).toMatch(/^USER 10001:10001$/m);
    expect(text).toMatch(/^VOLUME \["\/var\/lib\/etcd-medic"\]$/m);
    expect(text).toMatch(/^ENTRYPOINT \["\/usr\/bin\/node", "\/opt\/etcd-medic\/dist\/src\/main\.js"\]$/m);
    expect(text).not.toMatch(/^(ENV|ARG)\b[^\n]*(TOKEN|SECRET|KEY)=/m);
  });
});
