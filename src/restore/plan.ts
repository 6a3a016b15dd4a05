/**
 * Planning a restore from a snapshot in the bot's store. Pure: state in, steps out.
 *
 * Every node's etcd is stopped and its data moved aside (kept), the snapshot is restored
 * on the bot's host into one data dir per node (nodes have no etcdctl/etcdutl), copied to
 * the nodes with a checksum check, and each node restarts as a member of a new cluster.
 * `all`: every node restored at once. `single`: the first node restored alone, the
 * others joined afterwards with the add-member flow.
 */
import { createHash } from 'node:crypto';
import { additionSteps, sshReachable, unreachableWhy } from '../engine/membership-plans';
import { Fact, PlanDraft, PlanState, refuse, step, StepSpec } from '../engine/plan';
import type { SnapshotRecord } from '../snapshot/store';
import { highestMinor, HostTool, restoreToolFor } from '../exec/host-tools';

export type RestoreMode = 'all' | 'single';

/**
 * How far a restore moves the revision forward where the bot's host has etcdutl
 * (`--bump-revision N --mark-compacted`): past anything a Kubernetes watch cache has seen,
 * so watchers relist instead of serving stale objects. @defaultValue 1e9, as OpenShift does
 */
export const DEFAULT_REVISION_BUMP = 1_000_000_000;

/**
 * How far to bump the restored revision: past the highest revision the bot has seen on the
 * cluster (a watch cache may hold any of them), at least DEFAULT_REVISION_BUMP, in whole
 * steps of it so that the plan, and the hash its approval binds to, does not change with
 * every write made between planning and running.
 */
export function revisionBump(snapshotRevision: string, observedRevision?: string): number {
  const asBig = (s: string | undefined) => (s && /^\d+$/.test(s) ? BigInt(s) : 0n);
  const step = BigInt(DEFAULT_REVISION_BUMP);
  const needed = asBig(observedRevision) > asBig(snapshotRevision) ? asBig(observedRevision) - asBig(snapshotRevision) : 0n;
  return Number((needed / step + 1n) * step);
}


/** The restored data can be trusted: a tool read it, or etcd's own checksum matched. */
export function isVerified(r: SnapshotRecord): boolean {
  return !(r.verified.by === 'none' && (r.verified.integrity ?? 'none') === 'none');
}

/**
 * The one --initial-cluster-token every node of the restored cluster shares: restored
 * with different tokens, nodes get different cluster IDs and reject each other ("request
 * cluster ID mismatch", RUNBOOK). It is derived from what the plan rests on (cluster,
 * snapshot, mode, and the cluster it replaces), not from the clock: the plan is computed
 * again before it runs and must hash the same. The cluster it replaces is the cluster id
 * the bot remembers (stable while members crash-loop and the member list comes and goes);
 * without a memory, today's member ids. A second restore of the same snapshot over the
 * first one's cluster still gets a token, and so a cluster ID, of its own.
 */
export function restoreToken(state: PlanState, snapshotId: string, mode: RestoreMode): string {
  const remembered = state.snapshot.memory?.remembered.clusterId;
  const replaced = remembered ? [`cluster ${remembered}`] : state.summary.members.filter((m) => m.id).map((m) => m.id!).sort();
  const h = createHash('sha256').update(JSON.stringify([state.cluster.name, snapshotId, mode, replaced])).digest('hex');
  return `etcd-medic-restore-${h.slice(0, 16)}`;
}

function findSnapshot(state: PlanState, id: string): SnapshotRecord {
  if (!state.snapshots) refuse('this worker has no snapshot store configured (MEDIC_SNAPSHOT_DIR): nothing to restore from');
  const rec = state.snapshots.find((r) => r.id === id);
  if (!rec) {
    const newest = state.snapshots.find(isVerified);
    refuse(`snapshot ${id} is not in the bot's store for ${state.cluster.name}: see /etcd snapshot list ${state.cluster.name}`
      + (newest ? ` (the newest verified one is ${newest.id}, taken ${newest.createdAt})` : ' (there is none: nothing to restore from)'));
  }
  if (!isVerified(rec)) {
    refuse(`snapshot ${id} was never verified (no etcdctl/etcdutl read it and it carries no etcd checksum): a restore from it could install damaged data. Take a new snapshot, or pick a verified one (/etcd snapshot list ${state.cluster.name})`);
  }
  return rec;
}

function checkNodes(state: PlanState, mode: RestoreMode): void {
  const unreachable = state.cluster.nodes.filter((n) => !sshReachable(state.snapshot.probes.find((p) => p.node === n.name)));
  if (unreachable.length) {
    const names = unreachable.map((n) => `${n.name} (${unreachableWhy(state.snapshot.probes.find((p) => p.node === n.name))})`).join(', ');
    // An old member left running would keep serving its own (old) data to the API servers on its node.
    refuse(`${names} can't be reached over SSH: a restore must stop etcd on every node first${mode === 'all' ? ' and install data on each' : ''}. `
      + `Fix access, or remove ${unreachable.length === 1 ? 'that node' : 'those nodes'} from clusters.yaml if ${unreachable.length === 1 ? 'it is' : 'they are'} gone for good`);
  }
}

/** "42 B", "1.5 MiB". */
function size(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : bytes >= 1024 ? `${(bytes / 1024).toFixed(0)} KiB` : `${bytes} B`;
}

function age(from: string, to: string): string {
  const ms = Date.parse(to) - Date.parse(from);
  if (!Number.isFinite(ms)) return 'unknown';
  if (ms < 0) return 'taken after the cluster was probed';
  const min = Math.floor(ms / 60_000);
  if (min < 120) return `${min} min`;
  const h = Math.floor(min / 60);
  return h < 48 ? `${h} h` : `${Math.floor(h / 24)} days`;
}

/** The highest etcd minor version of the members that answered and of the snapshot: what the restore tooling must reach. */
function clusterMinor(state: PlanState, rec: SnapshotRecord): string | undefined {
  return highestMinor([...state.snapshot.probes.map((x) => x.status?.version), rec.etcdVersion]);
}

/** The tool this worker would restore with, when it knows its tools. */
function plannedTool(state: PlanState, rec: SnapshotRecord): HostTool | undefined {
  if (!state.hostTools) return undefined;
  const pick = restoreToolFor(state.hostTools, clusterMinor(state, rec));
  return 'tool' in pick ? pick.tool : undefined;
}

function bumpText(state: PlanState, rec: SnapshotRecord): string {
  const n = revisionBump(rec.revision, state.observedRevision);
  const past = `past the highest revision the bot has seen here${state.observedRevision && state.observedRevision !== '0' ? `, ${state.observedRevision}` : ''}`;
  const tool = plannedTool(state, rec);
  if (!tool) return `+${n} (${past}) and marked compacted when the bot's host has etcdutl (etcd ≥ 3.5); none with etcdctl 3.4`;
  if (tool.tool === 'etcdutl') return `+${n} (${past}) and marked compacted, with etcdutl ${tool.version} on this worker's host`;
  return `none: this worker's host restores with ${tool.tool} ${tool.version} (no etcdutl), so the revision goes back to ${rec.revision}`;
}

function facts(state: PlanState, rec: SnapshotRecord, mode: RestoreMode, initialCluster: string[], token: string): Fact[] {
  const s = state.summary;
  const first = state.cluster.nodes[0].name;
  const others = state.cluster.nodes.slice(1).map((n) => n.name);
  return [
    { label: 'Snapshot', value: `${rec.id} (${rec.kind}, ${size(rec.sizeBytes)}, sha256 ${rec.sha256.slice(0, 12)}, verified by ${rec.verified.by}${rec.verified.integrity === 'sha256' ? ' + etcd checksum' : ''})` },
    { label: 'Taken at', value: `${rec.createdAt} from ${rec.node} (member ${rec.memberId}), etcd ${rec.etcdVersion}` },
    { label: 'Snapshot revision', value: rec.revision === '0' ? 'unknown (the verify step checks only health and members)' : rec.revision },
    {
      label: 'Live keys',
      value: rec.liveKeys !== undefined ? `${rec.liveKeys} (checked after the restore)`
        : `${rec.liveKeysNote ?? 'not recorded with the snapshot'}${rec.verified.totalKeys !== undefined ? ` (the file holds ${rec.verified.totalKeys} entries, all revisions)` : ''}; the key count is not checked`,
    },
    { label: 'Mode', value: mode === 'all' ? `all: every node restored at once (${state.cluster.nodes.map((n) => n.name).join(', ')})` : `single: ${first} restored alone, then ${others.join(', ') || 'no other node'} added back one by one` },
    { label: 'Restored members', value: initialCluster.join(',') },
    { label: 'Cluster token', value: `${token} (one for every node)` },
    {
      label: 'Revision bump',
      value: `${bumpText(state, rec)}. The step says what was done`,
      // The observed revision moves with every write; the bump itself moves in steps of 1e9.
      volatile: true,
    },
    { label: 'Cluster now', value: `${s.verdict}: ${s.healthyVoters}/${s.voters} voting members healthy`, volatile: true },
    { label: 'Snapshot age', value: age(rec.createdAt, state.snapshot.collectedAt), volatile: true },
  ];
}

function warnings(state: PlanState, rec: SnapshotRecord, mode: RestoreMode): string[] {
  const out: string[] = [];
  const dataDir = state.cluster.paths.dataDir;
  const serving = state.summary.members.filter((m) => m.healthy && m.node).map((m) => m.node!);
  if (serving.length) {
    out.push(`etcd still serves data on ${serving.join(', ')}: the restore replaces it with the snapshot's, and every write after ${rec.createdAt} is lost. `
      + `Each node's current ${dataDir}/member is moved aside to ${dataDir}/member.medic-job-<plan>-<time> (kept, not deleted)`);
  } else {
    out.push(`each node's current ${dataDir}/member, if any, is moved aside to ${dataDir}/member.medic-job-<plan>-<time> (kept, not deleted; clear it once the cluster is good)`);
  }
  if (plannedTool(state, rec)?.tool !== 'etcdutl') {
    out.push(`the revision is bumped only when the bot's host has etcdutl (etcd ≥ 3.5). With etcd 3.4 tooling (etcdctl, no etcdutl) the revision is NOT bumped and goes back to ${rec.revision}: `
      + 'Kubernetes watch caches may then serve stale data. Restart every kube-apiserver after the restore either way');
  } else {
    out.push('restart every kube-apiserver after the restore: the bumped, compacted revision makes their watches relist, but a restart is the sure way');
  }
  const newer = state.snapshots?.find(isVerified);
  if (newer && newer.id !== rec.id && newer.createdAt > rec.createdAt) out.push(`a newer verified snapshot exists: ${newer.id} (taken ${newer.createdAt}); this plan restores the older ${rec.id}`);
  const versions = [...new Set(state.snapshot.probes.map((p) => p.status?.version).filter((v): v is string => !!v))];
  const minor = (v: string) => v.split('.').slice(0, 2).join('.');
  if (versions.length && rec.etcdVersion && !versions.some((v) => minor(v) === minor(rec.etcdVersion))) {
    out.push(`the snapshot was taken from etcd ${rec.etcdVersion}; the nodes answered as ${versions.join(', ')}: check the etcd image before relying on the result`);
  }
  if (mode === 'single' && state.cluster.nodes.length > 1) {
    out.push(`${state.cluster.nodes[0].name} serves alone, with no fault tolerance, until the other nodes have joined`);
  }
  return out;
}

/** The restore plan: refuses unknown or unverified snapshots and nodes it can't reach. */
export function planRestore(state: PlanState, args: { snapshot: string; mode: string }): PlanDraft {
  const mode = args.mode === 'single' ? 'single' : args.mode === 'all' ? 'all' : refuse(`--mode must be all or single, not ${args.mode}`);
  const rec = findSnapshot(state, args.snapshot);
  checkNodes(state, mode);
  const nodes = state.cluster.nodes;
  const restored = mode === 'all' ? nodes : nodes.slice(0, 1);
  const initialCluster = restored.map((n) => `${n.name}=${n.peerUrl}`);
  const token = restoreToken(state, rec.id, mode);
  const p = state.cluster.paths;
  const names = restored.map((n) => n.name);
  const liveKeys = rec.liveKeys ?? -1;
  // The tool must be at least the cluster's etcd (and the snapshot's): older tooling restores data its etcd did not write.
  const minTool = clusterMinor(state, rec) ?? '';
  if (state.hostTools) {
    const pick = restoreToolFor(state.hostTools, minTool || undefined);
    if ('refusal' in pick) refuse(pick.refusal);
  }

  const steps: StepSpec[] = [
    step('snapshot.verifyFile', undefined, { snapshot: rec.id, sha256: rec.sha256, revision: rec.revision },
      `re-check ${rec.id} on the bot's host (sha256, etcd checksum, snapshot status): a damaged file stops here, before any node is touched`),
    // All at once; whichever member leads then stops last (it would wait on a leadership transfer to a peer that is stopping).
    ...nodes.map((n) => step('node.stopEtcd', n.name, { node: n.name, force: true, peersStopping: nodes.filter((o) => o !== n).map((o) => o.name) },
      `stop etcd on ${n.name} (${state.cluster.runtime === 'systemd' ? `systemctl stop ${state.cluster.systemd.unit}` : `manifest moved to ${p.workDir}`}); the whole cluster is replaced; the leader stops last`, 'stop')),
    ...nodes.map((n) => step('node.moveDataAside', n.name, { node: n.name, force: true },
      `move ${p.dataDir}/member on ${n.name} aside (kept, not deleted)`, 'aside')),
    step('restore.prepareData', undefined, {
      snapshot: rec.id, sha256: rec.sha256, token, initialCluster, nodes: names, bump: revisionBump(rec.revision, state.observedRevision), minTool,
    }, `on the bot's host${minTool ? ` (tooling ≥ etcd ${minTool})` : ''}: snapshot restore into a fresh data dir for ${names.join(', ')} (own --name and peer URL, --initial-cluster=${initialCluster.join(',')}, one token), packed as a tar`),
    ...restored.map((n) => step('restore.installData', n.name, { node: n.name },
      `copy ${n.name}'s restored data over SSH, check its sha256 on the node, move it into ${p.dataDir}/member`, 'install')),
    ...restored.map((n) => step('node.writeRestoreConfig', n.name, { node: n.name, initialCluster: initialCluster.join(','), token },
      `${n.name}'s etcd config: --initial-cluster-state=new, the restored --initial-cluster, --initial-cluster-token=${token}, no --force-new-cluster (backup kept)`, 'config')),
    ...restored.map((n) => step('node.startEtcd', n.name, { node: n.name }, `start etcd on ${n.name}`, 'start')),
    step('restore.verify', undefined, { nodes: names, revision: rec.revision, liveKeys },
      `verify: ${names.length} member${names.length === 1 ? '' : 's'} (${names.join(', ')}), all healthy, revision ≥ ${rec.revision}${liveKeys >= 0 ? `, ${liveKeys} keys` : ''}`),
  ];
  if (mode === 'single') {
    nodes.slice(1).forEach((n, i) => steps.push(...additionSteps(state, n.name, i + 2)));
    if (nodes.length > 1) {
      const all = nodes.map((n) => n.name);
      steps.push(step('restore.verify', undefined, { nodes: all, revision: rec.revision, liveKeys },
        `verify: ${all.length} members (${all.join(', ')}), all healthy voters, revision ≥ ${rec.revision}${liveKeys >= 0 ? `, ${liveKeys} keys` : ''}`));
    }
  }
  return { steps, facts: facts(state, rec, mode, initialCluster, token), warnings: warnings(state, rec, mode) };
}
