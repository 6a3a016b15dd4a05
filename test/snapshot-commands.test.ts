/**
 * snapshot save / snapshot list and retention, with fakes for the member and the node and
 * a real snapshot store in a temp dir. The stream is a synthetic file carrying etcd's
 * appended SHA-256, and etcdctl is hidden from PATH, so inspectSnapshot checks the
 * checksum only (test/snapshot-e2e.test.ts does the real thing against the lab).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import snapshotSave, { snapshotSource } from '../commands/snapshot-save';
import snapshotList, { ageText, listReport } from '../commands/snapshot-list';
import { commands } from '../commands';
import type { JobResources } from '../src/actions/context';
import { ClusterConfig, clusterSchema, configSchema } from '../src/config/schema';
import type { RunContext } from '../src/engine/command';
import { isMedicError, MedicError } from '../src/engine/errors';
import { checkRequest } from '../src/engine/policy';
import { parseInvocation } from '../src/engine/parse';
import type { Report } from '../src/engine/report';
import type { EtcdMemberClient } from '../src/exec/etcd-client';
import type { RemoteCommand } from '../src/exec/shell';
import type { ExecResult, SshSession } from '../src/exec/ssh';
import type { EndpointStatus } from '../src/exec/types';
import { SCHEDULER_USER, scheduledSnapshotJob } from '../src/queue/scheduler';
import { applyRetention, newestVerified, retentionPolicy } from '../src/snapshot/retention';
import { createSnapshotStore, SnapshotMeta, SnapshotRecord, SnapshotStore } from '../src/snapshot/store';

const DAY = 86_400_000;
const NODES = ['node1', 'node2', 'node3'];
const MEMBER = (node: string) => `8e9e05c52164694${NODES.indexOf(node) + 1}`;

function clusterConfig(snapshots: Record<string, unknown> = {}): ClusterConfig {
  return clusterSchema.parse({
    name: 'prod-eu1', channels: ['console'], snapshots,
    nodes: NODES.map((n, i) => ({
      name: n, ssh: { host: `10.0.0.${11 + i}`, hostKey: `SHA256:${'A'.repeat(43)}` },
      clientUrl: `https://10.0.0.${11 + i}:2379`, peerUrl: `https://10.0.0.${11 + i}:2380`,
    })),
  });
}

/** 4 KiB of content plus its SHA-256: the shape etcd streams (size = 32 mod 512). */
function streamedFile(seed: string): Buffer {
  const body = Buffer.alloc(4096, seed);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

interface FakeMember { healthy?: boolean; learner?: boolean; unreachable?: boolean; liveKeys?: number; countError?: string }

function fakeClient(node: string, m: FakeMember, calls: string[]): EtcdMemberClient {
  const status: EndpointStatus = {
    memberId: MEMBER(node), version: '3.5.12', dbSize: 4128, dbSizeInUse: 4128, leader: MEMBER('node1'), isLearner: Boolean(m.learner),
    raftTerm: '2', raftIndex: '99', raftAppliedIndex: '99', errors: [],
  };
  return {
    endpoint: `fake://${node}`,
    status: async () => status,
    health: async () => (m.healthy === false ? { healthy: false, latencyMs: 3, error: 'etcdserver: request timed out' } : { healthy: true, latencyMs: 1 }),
    countKeys: async (o) => {
      calls.push(`countKeys ${node} ${o?.revision}`);
      if (m.countError) throw new MedicError('ETCD_ERROR', m.countError);
      return { count: m.liveKeys ?? 1000, revision: o?.revision ?? '0' };
    },
    snapshot: async (sink) => {
      calls.push(`snapshot ${node}`);
      const file = streamedFile(node);
      for (let off = 0; off < file.length; off += 1000) await sink(file.subarray(off, off + 1000));
      // etcd >= 3.6 sends a header; the file itself can't tell its revision here (no etcdctl).
      return { revision: '1234', memberId: MEMBER(node), bytes: file.length };
    },
  } as Partial<EtcdMemberClient> as EtcdMemberClient;
}

/** A node over SSH: remembers what was run and written; sha256sum answers from what was written. */
function fakeSession(node: string, files: Map<string, Buffer>, log: string[], o: { corrupt?: boolean } = {}): SshSession {
  const ok = (stdout = ''): ExecResult => ({ code: 0, signal: null, stdout, stderr: '', truncated: false, durationMs: 1 });
  return {
    exec: async (cmd: RemoteCommand) => {
      log.push(`${node}$ ${cmd.text}`);
      const sum = /^sha256sum -- '([^']+)'$/.exec(cmd.text);
      if (sum) {
        const data = files.get(`${node}:${sum[1]}`);
        return data ? ok(`${createHash('sha256').update(data).digest('hex')}  ${sum[1]}\n`) : { ...ok(), code: 1, stderr: 'No such file' };
      }
      if (cmd.text.includes('df -Pk')) return ok('Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda1 100000000 1000 99999000 1% /\n');
      return ok();
    },
    writeFile: async (path: string, data: Buffer, wo?: { mode?: number }) => {
      log.push(`${node} write ${path} mode ${wo?.mode?.toString(8)}`);
      const stored = Buffer.from(data);
      if (o.corrupt) stored[10] ^= 0xff;
      files.set(`${node}:${path}`, stored);
    },
  } as Partial<SshSession> as SshSession;
}

interface World {
  members?: Record<string, FakeMember>;
  corruptCopy?: boolean;
}

function fakeResources(cluster: ClusterConfig, w: World, calls: string[], nodeFiles: Map<string, Buffer>) {
  let closed = 0;
  const client = (n: string) => fakeClient(n, w.members?.[n] ?? {}, calls);
  const res = {
    cluster,
    etcd: async (n: string) => {
      if (w.members?.[n]?.unreachable) throw new MedicError('SSH_UNREACHABLE', `${n}: connect ECONNREFUSED`, true);
      return client(n);
    },
    healthyEtcd: async () => {
      const n = NODES.find((x) => !w.members?.[x]?.unreachable && w.members?.[x]?.healthy !== false);
      if (!n) throw new MedicError('ETCD_UNAVAILABLE', 'no healthy member to talk to');
      calls.push(`healthyEtcd -> ${n}`);
      return { node: n, client: client(n) };
    },
    session: async (n: string) => fakeSession(n, nodeFiles, calls, { corrupt: w.corruptCopy }),
    close: async () => { closed++; },
  };
  return { res: res as Partial<JobResources> as JobResources, closed: () => closed };
}

let work: string;
let store: SnapshotStore;
let clock: Date;
let savedPath: string | undefined;

beforeAll(() => {
  // No etcdctl/etcdutl: the synthetic files are checked by etcd's checksum alone.
  savedPath = process.env.PATH;
  process.env.PATH = '/nonexistent-medic-test-path';
});
afterAll(() => { process.env.PATH = savedPath; });
beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'medic-snapcmd-'));
  clock = new Date('2024-03-10T12:00:00.000Z');
  store = createSnapshotStore({ dir: join(work, 'snapshots'), now: () => clock });
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

async function runSave(args: Record<string, string>, w: World = {}, o: { snapshots?: Record<string, unknown>; user?: string } = {}) {
  const cluster = clusterConfig(o.snapshots);
  const calls: string[] = [];
  const nodeFiles = new Map<string, Buffer>();
  const fake = fakeResources(cluster, w, calls, nodeFiles);
  const ctx: RunContext = {
    config: configSchema.parse({ clusters: [cluster] }), cluster, args: { cluster: cluster.name, ...args },
    origin: { adapter: 'slack', channel: 'C0OPS', user: o.user ?? 'U0ALICE' }, jobId: '77',
    probe: async () => { throw new Error('not used'); }, snapshots: store, openResources: () => fake.res,
  };
  if (o.user === SCHEDULER_USER) ctx.origin = { adapter: 'console', channel: 'console', user: SCHEDULER_USER };
  const report = await snapshotSave.execute!(ctx);
  return { report, calls, nodeFiles, closed: fake.closed(), cluster };
}

const field = (r: Report, label: string) => r.fields?.find((f) => f.label === label)?.value;

/** A finished record in the store at the current clock; the clock then moves on. */
async function saved(over: Partial<SnapshotMeta> = {}, advanceMs = 3600_000): Promise<SnapshotRecord> {
  const p = await store.create('prod-eu1', { node: over.node ?? 'node1' });
  writeFileSync(p.tmpPath, Buffer.from(`data of ${p.id}`));
  const r = await p.finish({
    node: 'node1', memberId: MEMBER('node1'), revision: '42', etcdVersion: '3.5.12', sha256: 'b'.repeat(64), requester: 'U0BOB',
    reason: 'test', kind: 'manual', liveKeys: 7,
    verified: { by: 'etcdctl', hash: 'be158048', revision: '42', totalKeys: 9, totalSize: 20480, integrity: 'sha256' },
    ...over,
  });
  clock = new Date(clock.getTime() + advanceMs);
  return r;
}

describe('snapshot save', () => {
  it('parses as a two-word read command with an optional node', () => {
    const config = configSchema.parse({ clusters: [clusterConfig()] });
    expect(parseInvocation('snapshot save prod-eu1', commands, config).args).toEqual({ cluster: 'prod-eu1' });
    expect(parseInvocation('snapshot save prod-eu1 node2', commands, config).args).toEqual({ cluster: 'prod-eu1', node: 'node2' });
    expect(() => parseInvocation('snapshot save prod-eu1 node9', commands, config)).toThrow(/unknown node 'node9'/);
    expect(parseInvocation('snapshot list prod-eu1', commands, config).command.id).toBe('snapshot list');
    expect([snapshotSave.risk, snapshotList.risk]).toEqual(['read', 'read']);
  });

  it('saves from a healthy member, verified, with live keys at its revision, and reports what restores rely on', async () => {
    const { report, calls, closed } = await runSave({});
    const [record] = await store.list('prod-eu1');
    expect(record).toMatchObject({
      node: 'node1', memberId: MEMBER('node1'), revision: '1234', etcdVersion: '3.5.12', requester: 'U0ALICE',
      reason: 'manual snapshot', kind: 'manual', jobId: '77', liveKeys: 1000, verified: { by: 'none', integrity: 'sha256' },
    });
    expect(record.sha256).toBe(createHash('sha256').update(readFileSync(store.path(record))).digest('hex'));
    expect(calls).toEqual(['healthyEtcd -> node1', 'snapshot node1', 'countKeys node1 1234']);
    expect(closed).toBe(1);

    expect(report.title).toBe('etcd snapshot save — prod-eu1');
    expect(report.verdict).toEqual({ level: 'ok', text: `saved and verified snapshot ${record.id} of node1 at revision 1234 (1000 live keys)` });
    expect(report.fields).toEqual([
      { label: 'Snapshot', value: record.id },
      { label: 'Member', value: `node1 (${MEMBER('node1')})` },
      { label: 'Revision', value: '1234' },
      { label: 'etcd version', value: '3.5.12' },
      { label: 'Size', value: '4 KiB' },
      { label: 'SHA-256', value: record.sha256.slice(0, 12) },
      { label: 'Live keys', value: '1000' },
      { label: 'Verified by', value: 'sha256 only' },
      { label: 'Taken', value: '2024-03-10T12:00:00.000Z' },
      { label: 'Requester', value: 'U0ALICE' },
      { label: 'Retention', value: 'nothing removed, 1 kept' },
    ]);
    expect(report.next).toEqual(['/etcd snapshot list prod-eu1']);
    expect(report.notes).toContain('retention keeps the newest 10 snapshots and any younger than 30 days; the newest verified one is never removed');
  });

  it('uses the node asked for when it is a healthy voting member', async () => {
    const { calls } = await runSave({ node: 'node3' });
    expect(calls).toEqual(['snapshot node3', 'countKeys node3 1234']);
    expect((await store.list('prod-eu1'))[0]).toMatchObject({ node: 'node3', memberId: MEMBER('node3') });
  });

  it.each([
    ['unhealthy', { healthy: false }, /node3 can't be snapshotted: its member is unhealthy \(etcdserver: request timed out\)/],
    ['a learner', { learner: true }, /node3 can't be snapshotted: its member is a learner/],
    ['unreachable', { unreachable: true }, /node3 can't be snapshotted: its member can't be reached \(node3: connect ECONNREFUSED\)/],
  ])('refuses a node whose member is %s, saves nothing and says what to do', async (_, member, why) => {
    const { report, calls, closed } = await runSave({ node: 'node3' }, { members: { node3: member } });
    expect(report.verdict?.level).toBe('critical');
    expect(report.verdict?.text).toMatch(/^refused: /);
    expect(report.verdict?.text).toMatch(why);
    expect(report.verdict?.text).toContain('/etcd snapshot save prod-eu1');
    expect(report.next).toEqual(['/etcd snapshot save prod-eu1', '/etcd status prod-eu1']);
    expect(calls.filter((c) => c.startsWith('snapshot'))).toEqual([]);
    expect(await store.list('prod-eu1')).toEqual([]);
    expect(closed).toBe(1);
  });

  it('without a node, skips unhealthy members', async () => {
    const { calls } = await runSave({}, { members: { node1: { healthy: false } } });
    expect(calls[0]).toBe('healthyEtcd -> node2');
  });

  it('snapshotSource passes other failures through (not a refusal)', async () => {
    const res = { healthyEtcd: async () => { throw new MedicError('ETCD_UNAVAILABLE', 'no healthy member to talk to'); } } as Partial<JobResources> as JobResources;
    await expect(snapshotSource(res, 'prod-eu1')).rejects.toMatchObject({ code: 'ETCD_UNAVAILABLE' });
  });

  it('keeps the snapshot when live keys can\'t be counted, and says so', async () => {
    const { report } = await runSave({}, { members: { node1: { countError: 'etcdserver: mvcc: required revision has been compacted' } } });
    const [record] = await store.list('prod-eu1');
    expect(record.liveKeys).toBeUndefined();
    expect(record.liveKeysNote).toBe('not counted: revision 1234 was compacted before it could be counted');
    expect(field(report, 'Live keys')).toBe('?');
    expect(report.verdict?.text).toMatch(/live keys not counted/);
    expect(report.notes?.[0]).toMatch(/live keys not counted: revision 1234 was compacted.*can check the revision but not the key count/);
  });

  it('records a scheduled run as kind scheduled', async () => {
    await runSave({}, {}, { user: SCHEDULER_USER, snapshots: { scheduleMinutes: 60 } });
    expect((await store.list('prod-eu1'))[0]).toMatchObject({ kind: 'scheduled', requester: SCHEDULER_USER, reason: 'scheduled snapshot (every 60 min)' });
  });

  it('applies retention after the save and reports what it removed', async () => {
    clock = new Date(clock.getTime() - 100 * DAY);
    const old = [await saved(), await saved(), await saved()];
    clock = new Date('2024-03-10T12:00:00.000Z');
    const { report } = await runSave({}, {}, { snapshots: { keep: 2, maxAgeDays: 7 } });
    const left = await store.list('prod-eu1');
    expect(left.map((r) => r.id)).toEqual([left[0].id, old[2].id]);
    expect(field(report, 'Retention')).toBe('removed 2 older snapshots, 2 kept');
    expect(report.notes).toContain(`removed: ${old[1].id}, ${old[0].id}`);
  });

  describe('copy on the node (snapshots.copyOnNode)', () => {
    it('writes <dataDir>/snapshots/<id>.db (0600, dir made with a fixed template) and checks its SHA-256 there', async () => {
      const { report, calls, nodeFiles } = await runSave({ node: 'node2' }, {}, { snapshots: { copyOnNode: true } });
      const [record] = await store.list('prod-eu1');
      const path = `/var/lib/etcd/snapshots/${record.id}.db`;
      expect(nodeFiles.get(`node2:${path}`)).toEqual(readFileSync(store.path(record)));
      expect(calls.filter((c) => c.startsWith('node2'))).toEqual([
        "node2$ umask 077 && mkdir -p -- '/var/lib/etcd/snapshots' && chmod 700 -- '/var/lib/etcd/snapshots' && df -Pk -- '/var/lib/etcd/snapshots'",
        `node2 write ${path} mode 600`,
        `node2$ sha256sum -- '${path}'`,
      ]);
      expect(field(report, 'Copy on node')).toBe(`node2:${path} (SHA-256 checked)`);
      expect(report.verdict?.level).toBe('ok');
    });

    it('removes a copy whose SHA-256 does not match and warns; the stored snapshot stays', async () => {
      const { report, calls } = await runSave({}, { corruptCopy: true }, { snapshots: { copyOnNode: true } });
      const [record] = await store.list('prod-eu1');
      expect(calls).toContain(`node1$ rm -f -- '/var/lib/etcd/snapshots/${record.id}.db'`);
      expect(report.verdict?.level).toBe('warn');
      expect(report.verdict?.text).toMatch(/the copy on the node failed/);
      expect(field(report, 'Copy on node')).toMatch(/^node1: removed: its SHA-256 on the node is [0-9a-f]{12}, not /);
    });

    it('removes the node copies of snapshots retention removed', async () => {
      clock = new Date(clock.getTime() - 100 * DAY);
      const old = [await saved({ node: 'node2' }), await saved({ node: 'node3' }), await saved({ node: 'node3' })];
      clock = new Date('2024-03-10T12:00:00.000Z');
      const { calls } = await runSave({}, {}, { snapshots: { copyOnNode: true, keep: 1, maxAgeDays: 1 } });
      expect(calls).toContain(`node2$ rm -f -- '/var/lib/etcd/snapshots/${old[0].id}.db'`);
      expect(calls).toContain(`node3$ rm -f -- '/var/lib/etcd/snapshots/${old[2].id}.db' '/var/lib/etcd/snapshots/${old[1].id}.db'`);
    });
  });
});

describe('retention', () => {
  const settings = { keep: 2, maxAgeDays: 7 };

  it('keeps the newest `keep` and anything younger than maxAgeDays', async () => {
    clock = new Date(clock.getTime() - 30 * DAY);
    const a = await saved({}, DAY); // 30 days old
    const b = await saved({}, 25 * DAY); // 29 days old
    const c = await saved({}, DAY); // 4 days old: young
    const d = await saved({}, DAY); // 3 days old: young
    const e = await saved({}, 2 * DAY); // 2 days old: young
    const res = await applyRetention(store, 'prod-eu1', settings);
    expect(res.removed.map((r) => r.id)).toEqual([b.id, a.id]);
    expect(res.kept).toBe(3);
    expect((await store.list('prod-eu1')).map((r) => r.id)).toEqual([e.id, d.id, c.id]);
  });

  it('never removes the newest verified snapshot, even when no rule keeps it', async () => {
    clock = new Date(clock.getTime() - 60 * DAY);
    const good = await saved({}, DAY);
    const unverified = { verified: { by: 'etcdctl' as const, integrity: 'none' as const } };
    const x = await saved(unverified, DAY);
    const y = await saved(unverified, DAY);
    const z = await saved(unverified, 30 * DAY); // now every snapshot is older than maxAgeDays
    const records = await store.list('prod-eu1');
    expect(newestVerified(records)?.id).toBe(good.id);
    expect(retentionPolicy(records, settings, ['pinned-by-job'])).toEqual({ keep: 2, maxAgeDays: 7, pinned: ['pinned-by-job', good.id] });
    const res = await applyRetention(store, 'prod-eu1', settings);
    expect(res.removed.map((r) => r.id)).toEqual([x.id]);
    expect((await store.list('prod-eu1')).map((r) => r.id)).toEqual([z.id, y.id, good.id]);
  });

  it('keeps what the caller pins (a running job\'s safety snapshot)', async () => {
    clock = new Date(clock.getTime() - 60 * DAY);
    const safety = await saved({ kind: 'safety' }, DAY);
    await saved({}, DAY);
    await saved({}, DAY);
    await saved({}, DAY);
    const res = await applyRetention(store, 'prod-eu1', { keep: 1, maxAgeDays: 1 }, [safety.id]);
    expect(res.removed).toHaveLength(2);
    expect((await store.list('prod-eu1')).map((r) => r.id)).toContain(safety.id);
  });

  it('config: defaults, and a schedule of at least 5 minutes', () => {
    expect(clusterConfig().snapshots).toEqual({ keep: 10, maxAgeDays: 30, copyOnNode: false });
    expect(clusterConfig({ scheduleMinutes: 5 }).snapshots.scheduleMinutes).toBe(5);
    expect(() => clusterConfig({ scheduleMinutes: 1 })).toThrow();
    expect(() => clusterConfig({ keep: 0 })).toThrow();
    expect(() => clusterConfig({ keepForever: true })).toThrow(/keepForever/);
  });
});

describe('snapshot list', () => {
  it('lists newest first with revision, live keys, size, checksum, verification, age; suggests restoring the newest verified one', async () => {
    const older = await saved({ node: 'node2', revision: '100', liveKeys: 1000, requester: 'U0BOB' }, 2 * DAY);
    const newer = await saved({ node: 'node1', revision: '250', liveKeysNote: 'not counted: x', liveKeys: undefined, kind: 'scheduled', requester: SCHEDULER_USER }, 3600_000);
    const unverified = await saved({ node: 'node3', revision: '300', verified: { by: 'none', integrity: 'none' } }, 45_000);
    const cluster = clusterConfig({ scheduleMinutes: 60 });
    const r = listReport(cluster, await store.list('prod-eu1'), clock, '9');
    expect(r.tables?.[0].columns).toEqual(['ID', 'NODE', 'REVISION', 'KEYS', 'SIZE', 'SHA256', 'VERIFIED', 'AGE', 'KIND', 'REQUESTER']);
    expect(r.tables?.[0].rows).toEqual([
      [unverified.id, 'node3', '300', '7', `${unverified.sizeBytes} B`, 'bbbbbbbbbbbb', 'not verified', '45s', 'manual', 'U0BOB'],
      [newer.id, 'node1', '250', '?', `${newer.sizeBytes} B`, 'bbbbbbbbbbbb', 'etcdctl + sha256', '61m', 'scheduled', SCHEDULER_USER],
      [older.id, 'node2', '100', '1000', `${older.sizeBytes} B`, 'bbbbbbbbbbbb', 'etcdctl + sha256', '2d', 'manual', 'U0BOB'],
    ]);
    expect(r.verdict?.text).toBe(`3 snapshots; newest verified: ${newer.id}, revision 250, ? live keys, 61m old`);
    expect(r.next).toEqual([`/etcd restore prod-eu1 ${newer.id} --mode all`, '/etcd snapshot save prod-eu1']);
    expect(r.notes).toContain('a scheduled snapshot is taken every 60 minutes');
    expect(r.notes).toContain('retention keeps the newest 10 snapshots and any younger than 30 days; the newest verified one is never removed');
  });

  it('with no snapshots, says so and suggests taking one', async () => {
    const cluster = clusterConfig();
    const ctx = { cluster, snapshots: store, jobId: '3' } as Partial<RunContext> as RunContext;
    const r = await snapshotList.execute!(ctx);
    expect(r.verdict).toEqual({ level: 'warn', text: 'no snapshots of prod-eu1 in the bot\'s store: take one now' });
    expect(r.next).toEqual(['/etcd snapshot save prod-eu1']);
    expect(r.notes).toContain('no scheduled snapshots (set snapshots.scheduleMinutes)');
  });

  it('ages read at a glance', () => {
    const now = new Date('2024-03-10T12:00:00Z');
    expect(['2024-03-10T11:59:15Z', '2024-03-10T11:00:00Z', '2024-03-09T12:00:00Z', '2024-03-01T12:00:00Z'].map((t) => ageText(t, now))).toEqual(['45s', '60m', '24h', '9d']);
  });
});

describe('policy', () => {
  const access = {
    read: { requesters: ['U0ONCALL', 'U0VIEWER'] },
    mutating: { requesters: ['U0ONCALL'], approvers: ['U0LEAD'] },
    destructive: { requesters: ['U0ONCALL'], approvers: ['U0LEAD'] },
  };
  const cluster = clusterSchema.parse({ ...clusterConfig(), channels: ['C0OPS'], access });
  const request = (user: string, channel = 'C0OPS') => {
    try {
      checkRequest(cluster, snapshotSave.risk, { adapter: 'slack', channel, user });
      checkRequest(cluster, snapshotList.risk, { adapter: 'slack', channel, user });
      return 'ok';
    } catch (e) {
      if (isMedicError(e)) return e.code;
      throw e;
    }
  };

  it('both are read commands: whoever may read may snapshot and list, nobody else, only from the cluster\'s channels', () => {
    expect([snapshotSave.risk, snapshotList.risk]).toEqual(['read', 'read']);
    expect([!!snapshotSave.execute, !!snapshotSave.plan, !!snapshotList.execute]).toEqual([true, false, true]);
    expect(request('U0VIEWER')).toBe('ok');
    expect(request('U0ONCALL')).toBe('ok');
    expect(request('U0RANDOM')).toBe('NOT_PERMITTED');
    expect(request('U0ONCALL', 'C0ELSEWHERE')).toBe('CHANNEL_NOT_ALLOWED');
  });
});

describe('scheduled snapshot jobs', () => {
  it('are ordinary snapshot save runs as console:scheduler', () => {
    expect(scheduledSnapshotJob('prod-eu1', new Date('2024-03-10T12:00:00Z'))).toEqual({
      command: 'snapshot save', args: { cluster: 'prod-eu1' }, cluster: 'prod-eu1',
      origin: { adapter: 'console', channel: 'console', user: 'console:scheduler' }, requestedAt: '2024-03-10T12:00:00.000Z', phase: 'run',
    });
  });
});
