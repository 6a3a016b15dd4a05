/**
 * restore: the plan (pure: state + snapshot records + arguments in, exact steps out), its
 * refusals and approvals, and the bot-side half of the restore (etcdctl snapshot restore
 * into per-node data dirs, packed as tars) against a throwaway one-member etcd, not the lab.
 */
import { execFileSync } from 'node:child_process';
import { revisionBump } from '../src/restore/plan';
import { maxRevision } from '../src/engine/workflow';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import restore from '../commands/restore';
import { commands } from '../commands';
import { isMedicError } from '../src/engine/errors';
import { parseInvocation } from '../src/engine/parse';
import { membersChanged, parallelRanges, PlanState } from '../src/engine/plan';
import { requiredApprovals } from '../src/engine/workflow';
import { configSchema } from '../src/config/schema';
import { DEFAULT_REVISION_BUMP, restoreToken } from '../src/restore/plan';
import { prepareRestore } from '../src/restore/prepare';
import { createEtcdMemberClient } from '../src/exec/etcd-client';
import { saveSnapshot } from '../src/snapshot/save';
import { createSnapshotStore, SnapshotRecord } from '../src/snapshot/store';
import { buildPlan, clusterConfig, ClusterDescription, planState, stepList } from './support/plan-state';
import { startSingleEtcd } from './support/etcd-single';

jest.setTimeout(60_000);

const C = 'prod-eu1';
const SNAP = '20240501T030000Z-node2-1a2b';

function record(over: Partial<SnapshotRecord> = {}): SnapshotRecord {
  return {
    id: SNAP, cluster: C, node: 'node2', memberId: '91bc3c398fb3c146', revision: '4711', etcdVersion: '3.5.15',
    sizeBytes: 3 * 1024 * 1024 + 32, sha256: 'ab'.repeat(32), createdAt: '2024-05-01T03:00:00.000Z', requester: 'U0ALICE',
    reason: 'manual', kind: 'manual', verified: { by: 'etcdutl', revision: '4711', totalKeys: 2300, integrity: 'sha256' },
    liveKeys: 1000,
    ...over,
  };
}

function stateWith(d: ClusterDescription = {}, snapshots: SnapshotRecord[] | undefined = [record()]): PlanState {
  return { ...planState(d), snapshots };
}

const plan = (state: PlanState, args: Record<string, string>) => buildPlan(restore, state, { cluster: C, ...args }).plan;

function refusal(state: PlanState, args: Record<string, string>): string {
  try {
    restore.plan!(state, { cluster: C, ...args });
  } catch (e) {
    if (isMedicError(e) && e.code === 'UNSAFE') return e.message;
    throw e;
  }
  throw new Error(`restore ${JSON.stringify(args)} was not refused`);
}

const ADD_STEPS = (node: string) => [
  `node.stopEtcd ${node}`, `node.moveDataAside ${node}`, `node.ensurePki ${node}`, `etcd.memberAddLearner ${node}`,
  `node.writeConfig ${node}`, `node.startEtcd ${node}`, `etcd.waitLearnerSynced ${node}`, `etcd.memberPromote ${node}`, 'cluster.verify',
];

describe('restore plan', () => {
  // Every data dir lost: no etcd answers, SSH works.
  const allDown = { down: ['node1', 'node2', 'node3'] };

  it('--mode all: verify the file, stop and move aside everywhere, restore on the bot, install, configure and start every node, verify', () => {
    const p = plan(stateWith(allDown), { snapshot: SNAP, mode: 'all' });
    expect(stepList(p)).toEqual([
      'snapshot.verifyFile',
      'node.stopEtcd node1', 'node.stopEtcd node2', 'node.stopEtcd node3',
      'node.moveDataAside node1', 'node.moveDataAside node2', 'node.moveDataAside node3',
      'restore.prepareData',
      'restore.installData node1', 'restore.installData node2', 'restore.installData node3',
      'node.writeRestoreConfig node1', 'node.writeRestoreConfig node2', 'node.writeRestoreConfig node3',
      'node.startEtcd node1', 'node.startEtcd node2', 'node.startEtcd node3',
      'restore.verify',
    ]);
    const token = restoreToken(stateWith(allDown), SNAP, 'all');
    const initialCluster = ['node1=https://10.0.0.11:2380', 'node2=https://10.0.0.12:2380', 'node3=https://10.0.0.13:2380'];
    expect(p.steps[0].params).toEqual({ snapshot: SNAP, sha256: 'ab'.repeat(32), revision: '4711' });
    // The whole cluster is replaced: no live-member check before stopping or moving data.
    for (const s of p.steps.filter((x) => x.action === 'node.moveDataAside')) expect(s.params).toEqual({ node: s.node, force: true });
    // The stops run at once; each knows the others, so whichever member leads then stops last.
    for (const s of p.steps.filter((x) => x.action === 'node.stopEtcd')) {
      expect(s.params).toEqual({ node: s.node, force: true, peersStopping: ['node1', 'node2', 'node3'].filter((n) => n !== s.node) });
    }
    // minTool: the snapshot's etcd (3.5.15; no member answers): the tooling must be at least 3.5.
    expect(p.steps[7].params).toEqual({ snapshot: SNAP, sha256: 'ab'.repeat(32), token, initialCluster, nodes: ['node1', 'node2', 'node3'], bump: DEFAULT_REVISION_BUMP, minTool: '3.5' });
    expect(p.steps[11].params).toEqual({ node: 'node1', initialCluster: initialCluster.join(','), token });
    expect(p.steps[17].params).toEqual({ nodes: ['node1', 'node2', 'node3'], revision: '4711', liveKeys: 1000 });
    const facts = Object.fromEntries(p.facts.map((f) => [f.label, f.value]));
    expect(facts).toMatchObject({
      'Snapshot revision': '4711', 'Live keys': '1000 (checked after the restore)', 'Cluster token': `${token} (one for every node)`,
      'Restored members': initialCluster.join(','),
    });
    expect(facts['Taken at']).toBe('2024-05-01T03:00:00.000Z from node2 (member 91bc3c398fb3c146), etcd 3.5.15');
    expect(p.facts.find((f) => f.label === 'Snapshot age')).toMatchObject({ value: '12 min', volatile: true });
    expect(p.warnings.join('\n')).toMatch(/With etcd 3\.4 tooling \(etcdctl, no etcdutl\) the revision is NOT bumped and goes back to 4711: Kubernetes watch caches may then serve stale data/);
    expect(p.warnings.join('\n')).toMatch(/moved aside to \/var\/lib\/etcd\/member\.medic-job-<plan>-<time> \(kept, not deleted/);
    // Each node's stop, data move, install, config and start run on all three at once; the
    // file check before and the restore on the bot's host run alone.
    expect(parallelRanges(p.steps)).toEqual(['2-4', '5-7', '9-11', '12-14', '15-17']);
  });

  it('--mode single: the first node restored alone and verified, then the add-member flow for the others, then a final verify', () => {
    const p = plan(stateWith(allDown), { snapshot: SNAP, mode: 'single' });
    expect(stepList(p)).toEqual([
      'snapshot.verifyFile',
      'node.stopEtcd node1', 'node.stopEtcd node2', 'node.stopEtcd node3',
      'node.moveDataAside node1', 'node.moveDataAside node2', 'node.moveDataAside node3',
      'restore.prepareData', 'restore.installData node1', 'node.writeRestoreConfig node1', 'node.startEtcd node1', 'restore.verify',
      ...ADD_STEPS('node2'), ...ADD_STEPS('node3'),
      'restore.verify',
    ]);
    const token = restoreToken(stateWith(allDown), SNAP, 'single');
    expect(p.steps[7].params).toMatchObject({ token, initialCluster: ['node1=https://10.0.0.11:2380'], nodes: ['node1'] });
    expect(p.steps[9].params).toEqual({ node: 'node1', initialCluster: 'node1=https://10.0.0.11:2380', token });
    expect(p.steps[11].params).toEqual({ nodes: ['node1'], revision: '4711', liveKeys: 1000 });
    // Stops and data moves on all nodes at once; each join moves old data aside while its PKI is checked.
    expect(parallelRanges(p.steps)).toEqual(['2-4', '5-7', '14-15', '23-24']);
    // The joins verify 2 then 3 voters; the last step checks every member and the data.
    const verifies = p.steps.filter((s) => s.action === 'cluster.verify').map((s) => s.params);
    expect(verifies).toEqual([{ voters: 2, node: 'node2' }, { voters: 3, node: 'node3' }]);
    expect(p.steps[p.steps.length - 1].params).toEqual({ nodes: ['node1', 'node2', 'node3'], revision: '4711', liveKeys: 1000 });
    expect(p.warnings.join('\n')).toContain('node1 serves alone, with no fault tolerance, until the other nodes have joined');
  });

  it('one token for every node, the same when the plan is computed again before it runs, and new for another snapshot, mode or set of members', () => {
    const a = buildPlan(restore, stateWith(allDown), { cluster: C, snapshot: SNAP, mode: 'all' });
    const again = buildPlan(restore, stateWith(allDown), { cluster: C, snapshot: SNAP, mode: 'all' });
    expect(again.hash).toBe(a.hash);
    const tokens = new Set(a.plan.steps.map((s) => s.params.token).filter((t) => t !== undefined));
    expect(tokens.size).toBe(1);
    const token = [...tokens][0] as string;
    expect(token).toMatch(/^etcd-medic-restore-[0-9a-f]{16}$/);
    // Volatile facts (health now, age) never void an approval.
    const healthier = { ...stateWith(allDown), snapshot: { ...stateWith(allDown).snapshot, collectedAt: '2024-05-01T05:00:00.000Z' } };
    expect(buildPlan(restore, healthier, { cluster: C, snapshot: SNAP, mode: 'all' }).hash).toBe(a.hash);

    const other = record({ id: '20240501T040000Z-node1-3c4d', createdAt: '2024-05-01T04:00:00.000Z' });
    expect(restoreToken(stateWith(allDown, [other, record()]), other.id, 'all')).not.toBe(token);
    expect(restoreToken(stateWith(allDown), SNAP, 'single')).not.toBe(token);
    // Restoring the same snapshot again over the first restore's members: a new cluster ID.
    expect(restoreToken(stateWith({}), SNAP, 'all')).not.toBe(token);
  });

  it('while the lost members crash-loop (the member list answered one probe, not the next), the bot\'s memory keeps the token and the approval', () => {
    const remembering = (st: PlanState, clusterId = 'cdf818194e3a8c32'): PlanState => ({
      ...st, snapshot: { ...st.snapshot, memory: { findings: [], remembered: { clusterId, revision: '5000' } } },
    });
    const args = { cluster: C, snapshot: SNAP, mode: 'all' };
    const nobody = buildPlan(restore, remembering(stateWith(allDown)), args);
    const oneAnswers = buildPlan(restore, remembering(stateWith({ down: ['node2', 'node3'] })), args);
    const allAnswer = buildPlan(restore, remembering(stateWith({})), args);
    expect(oneAnswers.hash).toBe(nobody.hash);
    expect(allAnswer.hash).toBe(nobody.hash);
    expect(membersChanged(nobody.plan.basis, oneAnswers.plan.basis)).toBeUndefined();
    // Once the bot knows the restored cluster (another id), the next restore gets a token of its own.
    expect(restoreToken(remembering(stateWith({}), 'aaaa000000000001'), SNAP, 'all')).not.toBe(restoreToken(remembering(stateWith({})), SNAP, 'all'));
  });

  it('says what it replaces when etcd still serves data, and when a newer verified snapshot exists', () => {
    const newer = record({ id: '20240501T040000Z-node1-3c4d', createdAt: '2024-05-01T04:00:00.000Z' });
    const p = plan(stateWith({}, [newer, record()]), { snapshot: SNAP, mode: 'all' });
    const w = p.warnings.join('\n');
    expect(w).toContain('etcd still serves data on node1, node2, node3: the restore replaces it with the snapshot\'s, and every write after 2024-05-01T03:00:00.000Z is lost');
    expect(w).toContain('a newer verified snapshot exists: 20240501T040000Z-node1-3c4d');
    expect(p.facts.find((f) => f.label === 'Cluster now')).toMatchObject({ value: 'healthy: 3/3 voting members healthy', volatile: true });
  });

  it('without a recorded live key count it says so and the verify step does not count', () => {
    const p = plan(stateWith(allDown, [record({ liveKeys: undefined, liveKeysNote: 'not counted: revision 4711 was compacted before it could be counted' })]), { snapshot: SNAP, mode: 'all' });
    expect(p.facts.find((f) => f.label === 'Live keys')!.value).toBe('not counted: revision 4711 was compacted before it could be counted (the file holds 2300 entries, all revisions); the key count is not checked');
    expect(p.steps[p.steps.length - 1].params).toEqual({ nodes: ['node1', 'node2', 'node3'], revision: '4711', liveKeys: -1 });
  });

  it('refuses a snapshot that is not in the store, naming the newest verified one', () => {
    expect(refusal(stateWith(allDown), { snapshot: '20240101T000000Z-node1-ffff', mode: 'all' }))
      .toBe(`snapshot 20240101T000000Z-node1-ffff is not in the bot's store for ${C}: see /etcd snapshot list ${C} (the newest verified one is ${SNAP}, taken 2024-05-01T03:00:00.000Z)`);
    expect(refusal(stateWith(allDown, []), { snapshot: SNAP, mode: 'all' })).toMatch(/is not in the bot's store .*\(there is none: nothing to restore from\)/);
    expect(refusal(planState(allDown), { snapshot: SNAP, mode: 'all' })).toMatch(/no snapshot store configured/);
  });

  it('refuses an unverified snapshot', () => {
    const unverified = record({ verified: { by: 'none', integrity: 'none' } });
    expect(refusal(stateWith(allDown, [unverified]), { snapshot: SNAP, mode: 'single' }))
      .toMatch(/^snapshot \S+ was never verified \(no etcdctl\/etcdutl read it and it carries no etcd checksum\)/);
    // etcd's checksum alone is a verification (no tool on the bot's host at save time).
    expect(() => plan(stateWith(allDown, [record({ verified: { by: 'none', integrity: 'sha256' } })]), { snapshot: SNAP, mode: 'all' })).not.toThrow();
  });

  it('refuses when the bot\'s host has only tooling older than the cluster\'s etcd, naming the binary; says what the bump will be with the tool it has', () => {
    const old = { ...stateWith(allDown), hostTools: [{ tool: 'etcdctl' as const, version: '3.4.23' }] };
    expect(refusal(old, { snapshot: SNAP, mode: 'all' }))
      .toMatch(/^restoring this etcd 3\.5 cluster needs etcdutl 3\.5 or newer on the bot's host, and it has etcdctl 3\.4\.23: .*etcd issue 20967.*Install etcdutl 3\.5 or newer/);
    const modern = { ...stateWith(allDown), hostTools: [{ tool: 'etcdutl' as const, version: '3.5.30' }, { tool: 'etcdctl' as const, version: '3.5.30' }] };
    const p = plan(modern, { snapshot: SNAP, mode: 'all' });
    expect(p.facts.find((f) => f.label === 'Revision bump')!.value).toBe(`+${DEFAULT_REVISION_BUMP} (past the highest revision the bot has seen here) and marked compacted, with etcdutl 3.5.30 on this worker's host. The step says what was done`);
    expect(p.warnings.join('\n')).not.toMatch(/NOT bumped/);
    // A 3.4 snapshot of a 3.4 cluster: Debian's etcdctl 3.4 is enough, and the plan says there is no bump.
    const c34 = { ...stateWith(allDown, [record({ etcdVersion: '3.4.23' })]), hostTools: [{ tool: 'etcdctl' as const, version: '3.4.23' }] };
    const p34 = plan(c34, { snapshot: SNAP, mode: 'all' });
    expect(p34.steps[7].params.minTool).toBe('3.4');
    expect(p34.facts.find((f) => f.label === 'Revision bump')!.value).toMatch(/^none: this worker's host restores with etcdctl 3\.4\.23 \(no etcdutl\), so the revision goes back to 4711/);
  });

  it('refuses while a node can\'t be reached over SSH: its etcd could not be stopped', () => {
    expect(refusal(stateWith({ sshUnreachable: ['node3'] }), { snapshot: SNAP, mode: 'all' }))
      .toMatch(/^node3 \(ssh 10\.0\.0\.13:22: connect ECONNREFUSED\) can't be reached over SSH: a restore must stop etcd on every node first and install data on each/);
    expect(refusal(stateWith({ sshUnreachable: ['node2', 'node3'] }), { snapshot: SNAP, mode: 'single' })).toMatch(/^node2 \(ssh [^)]*\), node3 \(ssh [^)]*\) can't be reached/);
  });

  it('needs two approvals, more if the cluster asks for more; parses --mode either way', () => {
    expect(restore.risk).toBe('destructive');
    expect(requiredApprovals(restore, clusterConfig())).toBe(2);
    expect(requiredApprovals(restore, clusterConfig({ access: { destructive: { approvers: ['U0BOB'], approvals: 1 } } }))).toBe(2);
    expect(requiredApprovals(restore, clusterConfig({ access: { destructive: { approvers: ['U0BOB'], approvals: 3 } } }))).toBe(3);

    const config = configSchema.parse({ clusters: [clusterConfig()] });
    expect(parseInvocation(`restore ${C} ${SNAP}`, commands, config).args).toEqual({ cluster: C, snapshot: SNAP, mode: 'all' });
    expect(parseInvocation(`restore ${C} ${SNAP} --mode single`, commands, config).args).toEqual({ cluster: C, snapshot: SNAP, mode: 'single' });
    expect(parseInvocation(`restore ${C} --mode=single ${SNAP}`, commands, config).args).toEqual({ cluster: C, snapshot: SNAP, mode: 'single' });
    expect(() => parseInvocation(`restore ${C} ${SNAP} --mode some`, commands, config)).toThrow(/mode/);
    expect(() => parseInvocation(`restore ${C} ../../etc/passwd`, commands, config)).toThrow();
  });
});

describe('restore data on the bot\'s host (etcdctl 3.4, a throwaway etcd)', () => {
  let work: string;
  beforeAll(() => { work = mkdtempSync(join(tmpdir(), 'medic-restore-')); });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('restores one data dir per node with one token; a data dir made again is the same member; it serves the snapshot\'s keys', async () => {
    const keys = Object.fromEntries(Array.from({ length: 25 }, (_, i) => [`/restore-test/${i}`, `v${i}`]));
    const source = await startSingleEtcd({ clientPort: 23891, peerPort: 23892, keys });
    const store = createSnapshotStore({ dir: join(work, 'store') });
    let rec: SnapshotRecord;
    const client = createEtcdMemberClient({ endpoint: source.endpoint, deadlineMs: 5000 });
    try {
      rec = await saveSnapshot({ client, store, cluster: 'lab', node: 'single', requester: 'U0ALICE', reason: 'test', kind: 'manual' });
    } finally {
      client.close();
      await source.stop();
    }
    const members = [{ name: 'node1', peerUrl: 'http://127.0.0.1:23992' }, { name: 'node2', peerUrl: 'http://127.0.0.1:23994' }];
    const opts = {
      snapshotPath: store.path(rec), workDir: join(work, 'out'), members, nodes: ['node1', 'node2'], token: 'etcd-medic-restore-test',
      method: { auto: DEFAULT_REVISION_BUMP }, tools: ['etcdutl', 'etcdctl'] as Array<'etcdutl' | 'etcdctl'>,
    };
    const r = await prepareRestore(opts);
    // Debian's etcd-client: no etcdutl, so no bump; said so, and recorded for a regeneration.
    expect(r.tool).toBe(process.env.PATH?.split(':').some((d) => { try { execFileSync('test', ['-x', join(d, 'etcdutl')]); return true; } catch { return false; } }) ? 'etcdutl' : 'etcdctl');
    expect(r.nodes.map((n) => n.node)).toEqual(['node1', 'node2']);
    for (const n of r.nodes) expect(n.sha256).toMatch(/^[0-9a-f]{64}$/);

    // A worker elsewhere must restore the same way or not at all.
    if (r.tool === 'etcdctl') {
      await expect(prepareRestore({ ...opts, nodes: ['node2'], method: { tool: 'etcdutl', bump: DEFAULT_REVISION_BUMP } })).rejects.toThrow(/which this worker's host does not have/);
    }
    const again = await prepareRestore({ ...opts, workDir: join(work, 'again'), nodes: ['node1'], method: { tool: r.tool, bump: r.bump } });
    const unpack = (tar: string) => {
      const out = join(work, `x-${Date.now()}-${Math.random()}`);
      mkdirSync(out);
      execFileSync('tar', ['-xzf', tar, '-C', out]);
      return out;
    };
    const first = unpack(r.nodes[0].tar);
    const second = unpack(again.nodes[0].tar);
    // node1 alone can't start a 2-member cluster: start the data made again as node1 with a
    // single-member restore instead, and compare what the two data dirs say about themselves.
    const status = (dir: string) => execFileSync('etcdctl', ['snapshot', 'status', '-w', 'json', join(dir, 'member', 'snap', 'db')], { env: { ...process.env, ETCDCTL_API: '3' } }).toString();
    const parse = (s: string) => { const m = /"hash":(\d+),"revision":(\d+),"totalKey":(\d+)/.exec(s); return m ? m.slice(2) : s; };
    expect(parse(status(first))).toEqual(parse(status(second)));

    // One member restored alone serves every key of the snapshot at its revision.
    const single = await prepareRestore({ ...opts, workDir: join(work, 'single'), members: [{ name: 'solo', peerUrl: 'http://127.0.0.1:23894' }], nodes: ['solo'], method: { tool: r.tool, bump: r.bump } });
    const data = unpack(single.nodes[0].tar);
    const solo = await startSingleEtcd({ clientPort: 23893, peerPort: 23894, name: 'solo', dataDir: data });
    try {
      const got = await solo.etcdctlOk(['get', '--prefix', '/restore-test/', '--keys-only']);
      expect(got.split('\n').filter(Boolean)).toHaveLength(25);
      expect(BigInt(await solo.revision())).toBeGreaterThanOrEqual(BigInt(rec.revision) + BigInt(r.bump));
      const members2 = await solo.etcdctlOk(['member', 'list']);
      expect(members2).toMatch(/started, solo, http:\/\/127\.0\.0\.1:23894/);
    } finally {
      await solo.stop();
    }
  });
});

describe('revision bump', () => {
  it('goes past the highest revision the bot has seen, at least 1e9, in whole steps of 1e9', () => {
    expect(revisionBump('5000')).toBe(1e9);
    expect(revisionBump('5000', '900000000')).toBe(1e9);
    expect(revisionBump('5000', '1000005000')).toBe(2e9);
    expect(revisionBump('5000', '2500000000')).toBe(3e9);
    // Small writes between planning and running don't change it (nor the plan's hash).
    expect(revisionBump('5000', '1000004000')).toBe(revisionBump('5000', '1000004999'));
  });

  it('the highest of uint64 revisions, compared exactly', () => {
    expect(maxRevision(['0', '18446744073709551615', '18446744073709551614', 'x'])).toBe('18446744073709551615');
    expect(maxRevision([])).toBe('0');
  });
});
