/**
 * The etcd tooling on the bot's host: versions read from the real tools, the rule that a
 * restore never uses tooling older than the cluster's etcd, and the refusal that names the
 * binary the host needs, at plan time and again on the worker that runs the restore.
 */
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { atLeastMinor, highestMinor, hostTools, minorOf, parseToolVersion, restoreToolFor } from '../src/exec/host-tools';
import { prepareRestore } from '../src/restore/prepare';
import { DEFAULT_REVISION_BUMP } from '../src/restore/plan';

const which = (tool: string): string | undefined => {
  try { return execFileSync('sh', ['-c', `command -v ${tool}`]).toString().trim() || undefined; } catch { return undefined; }
};

describe('host tool versions', () => {
  it('reads the version line of etcdutl and etcdctl (3.4 and 3.5 formats)', () => {
    expect(parseToolVersion('etcdctl version: 3.4.23\nAPI version: 3.4\n')).toBe('3.4.23');
    expect(parseToolVersion('etcdutl version: 3.5.30\nAPI version: 3.5\n')).toBe('3.5.30');
    expect(parseToolVersion('Usage: etcdctl\n')).toBeUndefined();
  });

  it('compares minor versions, and unknown versions are never enough', () => {
    expect(minorOf('3.5.30')).toEqual([3, 5]);
    expect(atLeastMinor('3.5.30', '3.5')).toBe(true);
    expect(atLeastMinor('3.6.0', '3.5')).toBe(true);
    expect(atLeastMinor('3.4.23', '3.5')).toBe(false);
    expect(atLeastMinor('garbage', '3.4')).toBe(false);
    expect(highestMinor(['3.4.23', undefined, '3.5.16', '3.5.30'])).toBe('3.5');
    expect(highestMinor([undefined, ''])).toBeUndefined();
  });

  it('picks etcdutl when it is recent enough, etcdctl otherwise; refuses tooling older than the cluster, naming the binary', () => {
    const t34 = [{ tool: 'etcdctl' as const, version: '3.4.23' }];
    const t35 = [{ tool: 'etcdutl' as const, version: '3.5.30' }, { tool: 'etcdctl' as const, version: '3.5.30' }];
    expect(restoreToolFor(t34, '3.4')).toEqual({ tool: t34[0] });
    expect(restoreToolFor(t35, '3.5')).toEqual({ tool: t35[0] });
    expect(restoreToolFor(t35, '3.4')).toEqual({ tool: t35[0] });
    const r = restoreToolFor(t34, '3.5');
    expect('refusal' in r && r.refusal).toMatch(/needs etcdutl 3\.5 or newer on the bot's host, and it has etcdctl 3\.4\.23/);
    expect('refusal' in r && r.refusal).toMatch(/etcd issue 20967/);
    const none = restoreToolFor([], '3.4');
    expect('refusal' in none && none.refusal).toMatch(/needs etcdctl 3\.4 or newer .* it has neither etcdutl nor etcdctl/);
  });

  it('asks the real tools on PATH what they are', async () => {
    const tools = await hostTools({ fresh: true });
    const etcdctl = which('etcdctl');
    expect(etcdctl).toBeDefined(); // Debian's etcd-client: scripts/setup.sh installs it
    const said = execFileSync(etcdctl!, ['version'], { env: { ...process.env, ETCDCTL_API: '3' } }).toString();
    expect(tools.find((t) => t.tool === 'etcdctl')?.version).toBe(parseToolVersion(said));
    expect(tools.some((t) => t.tool === 'etcdutl')).toBe(!!which('etcdutl'));
  });
});

describe('a restore on a host whose only tool is older than the cluster', () => {
  let bin: string;
  const path = process.env.PATH;
  beforeAll(() => {
    // A host with Debian bookworm's etcdctl 3.4 and nothing newer.
    bin = mkdtempSync(join(tmpdir(), 'medic-tools-'));
    symlinkSync('/usr/bin/etcdctl', join(bin, 'etcdctl'));
    process.env.PATH = bin;
  });
  afterAll(() => {
    process.env.PATH = path;
    rmSync(bin, { recursive: true, force: true });
  });

  it('is refused before anything is restored, naming etcdutl 3.5', async () => {
    const tools = await hostTools({ fresh: true });
    expect(tools).toEqual([{ tool: 'etcdctl', version: expect.stringMatching(/^3\.4\./) }]);
    const work = mkdtempSync(join(tmpdir(), 'medic-restore-old-'));
    try {
      await expect(prepareRestore({
        snapshotPath: '/nonexistent.db', workDir: join(work, 'out'), members: [{ name: 'node1', peerUrl: 'https://127.0.0.1:2380' }],
        nodes: ['node1'], token: 't', method: { auto: DEFAULT_REVISION_BUMP }, minVersion: '3.5',
      })).rejects.toThrow(/needs etcdutl 3\.5 or newer on the bot's host, and it has etcdctl 3\.4\.\d+/);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
