/**
 * Retention of the bot's snapshots, from a cluster's `snapshots` settings: after each save a
 * snapshot is kept while it is among the newest `keep` or younger than `maxAgeDays`, and the
 * newest verified snapshot is never removed, whatever the settings say: during an outage it
 * may be the only way back.
 */
import type { ClusterConfig } from '../config/schema';
import type { PrunePolicy, SnapshotRecord, SnapshotStore } from './store';

export type RetentionSettings = Pick<ClusterConfig['snapshots'], 'keep' | 'maxAgeDays'>;

export interface RetentionResult {
  removed: SnapshotRecord[];
  /** Finished snapshots left in the store. */
  kept: number;
  /** The newest verified snapshot, which retention never removes. */
  newestVerified?: SnapshotRecord;
}

/**
 * A snapshot a restore can rely on: etcd's own SHA-256 (what `snapshot restore` checks)
 * matched its content when it was saved. The store only keeps such files from saveSnapshot;
 * this guards against records written by anything else.
 */
export function isVerified(r: SnapshotRecord): boolean {
  return r.verified.integrity === 'sha256';
}

/** The newest verified snapshot of records listed newest first. */
export function newestVerified(records: readonly SnapshotRecord[]): SnapshotRecord | undefined {
  return records.find(isVerified);
}

/** The prune policy for a cluster's settings; `pinned` adds ids the caller still needs (a running job's safety snapshot). */
export function retentionPolicy(records: readonly SnapshotRecord[], s: RetentionSettings, pinned: readonly string[] = []): PrunePolicy {
  const guard = newestVerified(records);
  return { keep: s.keep, maxAgeDays: s.maxAgeDays, pinned: [...new Set([...pinned, ...(guard ? [guard.id] : [])])] };
}

/** Applies the cluster's retention to its snapshots in the store. */
export async function applyRetention(store: SnapshotStore, cluster: string, s: RetentionSettings, pinned: readonly string[] = []): Promise<RetentionResult> {
  const records = await store.list(cluster);
  const removed = await store.prune(cluster, retentionPolicy(records, s, pinned));
  const gone = new Set(removed.map((r) => r.id));
  return { removed, kept: records.filter((r) => !gone.has(r.id)).length, newestVerified: newestVerified(records) };
}

/** One line for reports: what the settings keep. */
export function describeRetention(s: RetentionSettings): string {
  return `retention keeps the newest ${s.keep} snapshot${s.keep === 1 ? '' : 's'} and any younger than ${s.maxAgeDays} day${s.maxAgeDays === 1 ? '' : 's'}; the newest verified one is never removed`;
}
