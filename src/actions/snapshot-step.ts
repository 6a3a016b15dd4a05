/**
 * snapshot.safety: before a destructive step, a verified snapshot of a healthy member,
 * kept in the bot's snapshot store (the same code as /etcd snapshot save).
 */
import type { EtcdMemberClient } from '../exec/etcd-client';
import { saveSnapshot } from '../snapshot/save';
import type { SnapshotStore } from '../snapshot/store';

export interface SnapshotDeps {
  store: SnapshotStore;
}

export async function safetySnapshot(deps: SnapshotDeps, o: {
  client: EtcdMemberClient; cluster: string; node: string; requester: string; planId: string; reason: string; progress(text: string): void;
}): Promise<{ id: string; detail: string }> {
  const status = await o.client.status();
  const rec = await saveSnapshot({
    client: o.client, store: deps.store, cluster: o.cluster, node: o.node, requester: o.requester,
    reason: `${o.reason} (job ${o.planId})`, kind: 'safety', jobId: o.planId, etcdVersion: status.version,
    onProgress: (bytes: number) => o.progress(`safety snapshot from ${o.node}: ${(bytes / (1 << 20)).toFixed(1)} MiB`),
  });
  const keys = rec.verified.totalKeys === undefined ? '' : `, ${rec.verified.totalKeys} keys`;
  return {
    id: rec.id,
    detail: `safety snapshot ${rec.id} from ${o.node}: revision ${rec.revision}${keys}, ${(rec.sizeBytes / 1024).toFixed(0)} KiB, sha256 ${rec.sha256.slice(0, 12)}, verified by ${rec.verified.by}`,
  };
}
