/**
 * What the bot remembers of each cluster, and every way the cluster can contradict it.
 *
 * etcd itself cannot tell that its data vanished: members whose data dirs were all lost
 * bootstrap a brand-new, empty cluster under the same member ids and the same cluster id
 * (they derive from names, peer URLs and the token), and read "healthy". The bot can:
 * it keeps, per cluster, the highest revision it has seen (revisions never go backwards
 * in one cluster's life), the cluster id its serving members agreed on, and their member
 * ids. A probe that contradicts that is a finding, named in status and diagnose, with the
 * newest verified snapshot to restore from; none of them reads "healthy".
 *
 * The memory is sticky: while a finding stands, what the bot saw before is kept (so the
 * alarm does not go away by itself on the next probe). It is reset when the bot's own
 * restore or force-new-cluster completes (the new identity is then the expected one), or
 * when someone forgets it on purpose (`forget`, after a restore done by hand).
 */
import type { Redis } from 'ioredis';
import type { ClusterMemoryView, ClusterSnapshot, DataLossFinding } from '../exec/types';
import type { StatusSummary } from './status-summary';

export type { ClusterMemoryView, DataLossFinding };

const big = (s: string | undefined) => (s && /^\d+$/.test(s) ? BigInt(s) : 0n);

/** Answering members grouped by the cluster id they answer for, in config order. */
function byClusterId(snap: ClusterSnapshot): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const p of snap.probes) {
    const id = p.status?.clusterId;
    if (!id) continue;
    out.set(id, [...(out.get(id) ?? []), p.node]);
  }
  return out;
}

/** The cluster id most serving members answer for (ties: the leader's side, then config order). */
function servingClusterId(snap: ClusterSnapshot, summary: StatusSummary): string | undefined {
  const healthy = new Set(summary.members.filter((m) => m.healthy && m.node).map((m) => m.node!));
  const votes = new Map<string, number>();
  for (const p of snap.probes) {
    if (p.status?.clusterId && healthy.has(p.node)) votes.set(p.status.clusterId, (votes.get(p.status.clusterId) ?? 0) + 1);
  }
  return [...votes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
}

/** The highest revision a healthy member answered with ('0' when none did). */
function servingRevision(snap: ClusterSnapshot, summary: StatusSummary): string {
  const healthy = new Set(summary.members.filter((m) => m.healthy && m.node).map((m) => m.node!));
  return snap.probes.filter((p) => healthy.has(p.node) && p.status?.revision)
    .map((p) => p.status!.revision!).reduce((a, b) => (big(b) > big(a) ? b : a), '0');
}

/** Whether the cluster serves (a quorum of voters healthy): only then do its revision and id speak for the cluster. */
function serves(summary: StatusSummary): boolean {
  return summary.voters > 0 && summary.healthyVoters >= summary.quorum;
}

/**
 * Pure: how the cluster as probed now contradicts what the bot saw before. Empty when it
 * does not (or when the bot remembers nothing yet).
 */
export function findDataLoss(remembered: ClusterMemoryView, snap: ClusterSnapshot, summary: StatusSummary): DataLossFinding[] {
  const out: DataLossFinding[] = [];
  const groups = byClusterId(snap);
  if (groups.size > 1) {
    const sides = [...groups.entries()].map(([id, nodes]) => `${nodes.join(', ')} for cluster ${id}`);
    out.push({
      kind: 'split-cluster',
      text: `members answer for different clusters: ${sides.join('; ')}. `
        + `${remembered.clusterId ? `The bot knew this cluster as ${remembered.clusterId}` : 'The bot has no earlier cluster id to tell which is right'}: a member that answers for another cluster holds other data (a node restored or bootstrapped on its own)`,
    });
  }
  if (!serves(summary)) return out;
  const id = servingClusterId(snap, summary);
  if (remembered.clusterId && id && id !== remembered.clusterId) {
    out.push({
      kind: 'cluster-id-changed',
      text: `the cluster id changed: the bot knew ${snap.cluster} as cluster ${remembered.clusterId}${remembered.at ? ` (last seen ${remembered.at})` : ''}, it now answers as ${id}. `
        + 'Another cluster was formed in its place (a restore or re-bootstrap the bot did not do): its data is not the data the bot saw',
    });
  }
  const now = servingRevision(snap, summary);
  if (big(remembered.revision) > 0n && big(now) > 0n && big(now) < big(remembered.revision)) {
    out.push(big(now) <= 1n
      ? {
        kind: 'came-back-empty',
        text: `the cluster came back empty: it is at revision ${now} (nothing ever written), the bot has seen it at revision ${remembered.revision}. `
          + 'Every member\'s data dir was lost and etcd bootstrapped a new, empty cluster under the same member ids: it reads healthy, but holds nothing',
      }
      : {
        kind: 'revision-backwards',
        text: `the revision went backwards: the cluster is at revision ${now}, the bot has seen it at ${remembered.revision}. `
          + 'Revisions never decrease in one cluster\'s life: data was lost or replaced (a restore from an older snapshot, or members rebuilt from stale data)',
      });
  }
  return out;
}

export interface ClusterMemory {
  get(cluster: string): Promise<ClusterMemoryView>;
  /**
   * Compares a probe with the memory and remembers what it may: the cluster id, members and
   * highest revision, when the cluster serves and nothing contradicts the memory. Returns the
   * findings and the memory as it is after this probe.
   */
  observe(snap: ClusterSnapshot, summary: StatusSummary, now?: Date): Promise<{ findings: DataLossFinding[]; remembered: ClusterMemoryView }>;
  /** Forgets the cluster (after a restore or force-new-cluster): the next probe is remembered as the cluster. */
  forget(cluster: string): Promise<void>;
}

const MAX_REVISION = `
local cur = redis.call('HGET', KEYS[1], 'revision')
local new = ARGV[1]
if (not cur) or #new > #cur or (#new == #cur and new > cur) then redis.call('HSET', KEYS[1], 'revision', new) end
return 1`;

/**
 * The memory in Redis: one hash per cluster, `<prefix>:memory:<cluster>` (shared by every
 * web and worker process of one deployment; no expiry: a cluster is remembered until forgotten).
 */
export function createClusterMemory(redis: Redis, prefix = 'etcd-medic'): ClusterMemory {
  const key = (cluster: string) => `${prefix}:memory:${cluster}`;
  const get = async (cluster: string): Promise<ClusterMemoryView> => {
    const h = await redis.hgetall(key(cluster));
    return {
      clusterId: h.clusterId || undefined,
      members: h.members ? h.members.split(',') : undefined,
      revision: h.revision && /^\d+$/.test(h.revision) ? h.revision : '0',
      at: h.at || undefined,
    };
  };
  return {
    get,
    async observe(snap, summary, now = new Date()) {
      const before = await get(snap.cluster);
      const findings = findDataLoss(before, snap, summary);
      if (findings.length || !serves(summary)) return { findings, remembered: before };
      // Nothing contradicts the memory and the cluster serves: this is the cluster now.
      const id = servingClusterId(snap, summary);
      const members = summary.members.filter((m) => m.id).map((m) => m.id!).sort();
      const rev = servingRevision(snap, summary);
      if (id) await redis.hset(key(snap.cluster), { clusterId: id, members: members.join(','), at: now.toISOString() });
      if (rev !== '0') await redis.eval(MAX_REVISION, 1, key(snap.cluster), rev);
      // What the bot knows after this probe: plans made from it and computed again later agree.
      return { findings, remembered: await get(snap.cluster) };
    },
    async forget(cluster) {
      await redis.del(key(cluster));
    },
  };
}

/** What to do about findings: the newest verified snapshot and the restore command, or how to get one. */
export function dataLossNext(cluster: string, newest?: { id: string; createdAt: string }): string[] {
  return newest
    ? [`restore from the newest verified snapshot, ${newest.id} (taken ${newest.createdAt}): /etcd restore ${cluster} ${newest.id} --mode all`,
      `if this cluster was rebuilt on purpose (a restore by hand): /etcd forget ${cluster}, then /etcd status ${cluster}`]
    : [`no verified snapshot of ${cluster} is in the bot's store: restore from your own backup, then /etcd forget ${cluster}`];
}
