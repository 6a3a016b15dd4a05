/**
 * The bot's memory of a cluster and the ways the cluster can contradict it: revision gone
 * backwards, a cluster that came back empty, a changed cluster id, members answering for
 * different clusters. Pure detection on probe-shaped states, the sticky memory on a real
 * Redis, and what status and diagnose make of it (never "healthy").
 */
import IORedis, { Redis } from 'ioredis';
import { createClusterMemory, findDataLoss } from '../src/engine/cluster-memory';
import { summarize } from '../src/engine/status-summary';
import { diagnose } from '../src/engine/diagnose';
import statusCommand, { statusReport, withDataLoss } from '../commands/status';
import type { ClusterSnapshot } from '../src/exec/types';
import { clusterConfig, ClusterDescription, snapshotOf } from './support/plan-state';
import { TEST_REDIS_URL } from './support/harness';
import type { SnapshotRecord } from '../src/snapshot/store';

const CLUSTER_ID = 'cdf818194e3a8c32';

/** A probe of prod-eu1 where every answering member reports `revision` and `clusterId` (per node overrides). */
function probed(d: ClusterDescription, revision: string, ids: Record<string, string> = {}): { snap: ClusterSnapshot; summary: ReturnType<typeof summarize> } {
  const cluster = clusterConfig(d);
  const snap = snapshotOf(cluster, d);
  for (const p of snap.probes) {
    if (p.status) { p.status.revision = revision; p.status.clusterId = ids[p.node] ?? CLUSTER_ID; }
  }
  return { snap, summary: summarize(cluster, snap) };
}

const remembered = { clusterId: CLUSTER_ID, members: [], revision: '48213', at: '2026-12-01T10:00:00.000Z' };

describe('data loss detection (pure)', () => {
  it('nothing when the cluster is as the bot saw it, or when the bot saw nothing yet', () => {
    const { snap, summary } = probed({}, '48300');
    expect(findDataLoss(remembered, snap, summary)).toEqual([]);
    expect(findDataLoss({ revision: '0' }, snap, summary)).toEqual([]);
  });

  it('a cluster at revision 1 where the bot saw 48213: it came back empty', () => {
    const { snap, summary } = probed({}, '1');
    expect(summary.verdict).toBe('healthy'); // what etcd says of itself
    const f = findDataLoss(remembered, snap, summary);
    expect(f.map((x) => x.kind)).toEqual(['came-back-empty']);
    expect(f[0].text).toMatch(/came back empty: it is at revision 1 .* seen it at revision 48213/);
  });

  it('a lower revision: it went backwards; a new cluster id: another cluster in its place', () => {
    const back = probed({}, '3000');
    expect(findDataLoss(remembered, back.snap, back.summary).map((x) => x.kind)).toEqual(['revision-backwards']);
    const other = probed({}, '50000', { node1: 'aaaa000000000001', node2: 'aaaa000000000001', node3: 'aaaa000000000001' });
    const f = findDataLoss(remembered, other.snap, other.summary);
    expect(f.map((x) => x.kind)).toEqual(['cluster-id-changed']);
    expect(f[0].text).toMatch(/the bot knew prod-eu1 as cluster cdf818194e3a8c32 \(last seen 2026-12-01T10:00:00.000Z\), it now answers as aaaa000000000001/);
  });

  it('members answering for different clusters are named, each side with its cluster id', () => {
    const { snap, summary } = probed({}, '48300', { node3: 'bbbb000000000002' });
    const f = findDataLoss(remembered, snap, summary);
    expect(f.map((x) => x.kind)).toEqual(['split-cluster']);
    expect(f[0].text).toMatch(/node1, node2 for cluster cdf818194e3a8c32; node3 for cluster bbbb000000000002/);
  });

  it('without quorum, a lagging survivor is not taken for the cluster (no revision or id verdict)', () => {
    const { snap, summary } = probed({ down: ['node2', 'node3'] }, '100');
    expect(findDataLoss(remembered, snap, summary)).toEqual([]);
  });
});

describe('cluster memory in Redis', () => {
  let redis: Redis;
  const prefix = `t-memory-${process.pid}-${Date.now()}`;
  beforeAll(() => { redis = new IORedis(TEST_REDIS_URL); });
  afterAll(async () => { await redis.quit(); });

  it('remembers a serving cluster, keeps what it saw while a finding stands, and starts over once forgotten', async () => {
    const memory = createClusterMemory(redis, prefix);
    const calm = probed({}, '48213');
    expect((await memory.observe(calm.snap, calm.summary, new Date('2026-12-01T10:00:00Z'))).findings).toEqual([]);
    expect(await memory.get('prod-eu1')).toEqual({ clusterId: CLUSTER_ID, members: expect.any(Array), revision: '48213', at: '2026-12-01T10:00:00.000Z' });

    const empty = probed({}, '1');
    expect((await memory.observe(empty.snap, empty.summary)).findings.map((f) => f.kind)).toEqual(['came-back-empty']);
    // Sticky: the next probe still sees the loss (the alarm does not clear itself).
    expect((await memory.observe(empty.snap, empty.summary)).findings.map((f) => f.kind)).toEqual(['came-back-empty']);
    expect((await memory.get('prod-eu1')).revision).toBe('48213');

    await memory.forget('prod-eu1');
    expect(await memory.get('prod-eu1')).toEqual({ revision: '0' });
    expect((await memory.observe(empty.snap, empty.summary)).findings).toEqual([]);
    expect((await memory.get('prod-eu1')).revision).toBe('1');
  });
});

describe('status and diagnose of a cluster whose data vanished', () => {
  const newest = { id: '20261201T095500Z-node1-1a2b', createdAt: '2026-12-01T09:55:00.000Z', revision: '48000', liveKeys: 1000, node: 'node1', verified: { by: 'etcdutl', integrity: 'sha256' } } as SnapshotRecord;

  it('status: "data lost", not healthy, with the restore command of the newest verified snapshot', () => {
    const { snap, summary } = probed({}, '1');
    snap.memory = { findings: findDataLoss(remembered, snap, summary), remembered };
    const r = withDataLoss(statusReport(snap, summary), snap, newest);
    expect(r.verdict).toEqual({ level: 'critical', text: expect.stringMatching(/^data lost: the cluster came back empty \(the members' own health: healthy: 3\/3/) });
    expect(r.notes![0]).toMatch(/came back empty/);
    expect(r.next![0]).toBe('restore from the newest verified snapshot, 20261201T095500Z-node1-1a2b (taken 2026-12-01T09:55:00.000Z): /etcd restore prod-eu1 20261201T095500Z-node1-1a2b --mode all');
    expect(statusCommand.id).toBe('status');
  });

  it('diagnose: a data-lost finding first, with the restore and the evidence', () => {
    const cluster = clusterConfig();
    const { snap, summary } = probed({}, '1');
    snap.memory = { findings: findDataLoss(remembered, snap, summary), remembered };
    const f = diagnose({ cluster, snapshot: snap, summary, nodes: [], backups: { newestVerified: newest, total: 1 } });
    expect(f[0].scenario).toBe('data-lost');
    expect(f[0].title).toMatch(/^data lost: came back empty; .*restore from 20261201T095500Z-node1-1a2b/);
    expect(f[0].next).toEqual(['/etcd restore prod-eu1 20261201T095500Z-node1-1a2b --mode all', '/etcd forget prod-eu1']);
    expect(f[0].evidence.join('\n')).toMatch(/newest verified snapshot: 20261201T095500Z-node1-1a2b, revision 48000, 1000 keys/);
  });
});
