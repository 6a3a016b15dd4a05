/**
 * The bot's snapshot store with an offsite copy behind it: every snapshot finished here is
 * uploaded and read back before it counts as offsite (a failed upload leaves the local
 * snapshot, with the error on its record; a safety snapshot's upload runs beside the repair); list() shows the offsite-only ones too; get()
 * of one kept only offsite brings it back into the local store (checked), so a restore
 * works after the bot's disk was lost; prune() applies the same retention to both.
 */
import { describeError } from '../engine/errors';
import type { Offsite } from './offsite';
import { unkept, type PendingSnapshot, type PrunePolicy, type SnapshotRecord, type SnapshotStore } from './store';

export interface TieredOptions {
  /** Told when an offsite step fails (the local store keeps working). */
  log?: (msg: string, extra?: Record<string, unknown>) => void;
}

export function withOffsite(local: SnapshotStore, offsite: Offsite, o: TieredOptions = {}): SnapshotStore & { offsite: Offsite } {
  async function copyOffsite(rec: SnapshotRecord): Promise<SnapshotRecord> {
    let updated: SnapshotRecord;
    try {
      updated = { ...rec, offsite: await offsite.upload(rec, local.path(rec)), offsiteError: undefined };
    } catch (e) {
      o.log?.('offsite copy failed', { snapshot: rec.id, error: describeError(e) });
      updated = { ...rec, offsiteError: describeError(e) };
    }
    await local.update(updated);
    return updated;
  }

  const store: SnapshotStore & { offsite: Offsite } = {
    dir: local.dir,
    offsite,
    path: (r) => local.path(r),
    update: (r) => local.update(r),
    adopt: (r, w) => local.adopt(r, w),

    async create(cluster, opts): Promise<PendingSnapshot> {
      const pending = await local.create(cluster, opts);
      return {
        id: pending.id, cluster: pending.cluster, createdAt: pending.createdAt, tmpPath: pending.tmpPath,
        finish: async (meta) => {
          const rec = await pending.finish(meta);
          // A safety snapshot is taken in the middle of a repair: the repair does not wait for
          // the upload (its record notes the offsite copy once it is checked).
          if (meta.kind === 'safety') {
            void copyOffsite(rec).catch((e: unknown) => o.log?.('offsite copy failed', { snapshot: rec.id, error: describeError(e) }));
            return rec;
          }
          return copyOffsite(rec);
        },
        abort: () => pending.abort(),
      };
    },

    async list(cluster) {
      const [mine, remote] = await Promise.all([
        local.list(cluster),
        offsite.list(cluster).catch((e: unknown) => { o.log?.('could not list the offsite store', { cluster, error: describeError(e) }); return []; }),
      ]);
      const ids = new Set(mine.map((r) => r.id));
      return [...mine, ...remote.filter((r) => !ids.has(r.id)).map((r) => ({ ...r, offsiteOnly: true }))]
        .sort((a, b) => (a.createdAt !== b.createdAt ? (a.createdAt < b.createdAt ? 1 : -1) : a.id < b.id ? 1 : -1));
    },

    async get(cluster, id) {
      const rec = await local.get(cluster, id);
      if (rec) return rec;
      const remote = (await offsite.list(cluster)).find((r) => r.id === id);
      if (!remote) return undefined;
      // Kept only offsite (this disk lost, or another worker's host): fetched and checked.
      return local.adopt({ ...remote, offsiteOnly: undefined }, (tmp) => offsite.download(remote, tmp));
    },

    async prune(cluster, policy: PrunePolicy) {
      const removed = await local.prune(cluster, policy);
      // The same rules over the offsite copies, judged with the local ones (the newest may be local only).
      const gone = new Set(unkept(await store.list(cluster), policy, new Date()).map((r) => r.id));
      const remote = (await offsite.list(cluster)).filter((r) => gone.has(r.id));
      await offsite.remove(remote);
      const seen = new Set(removed.map((r) => r.id));
      return [...removed, ...remote.filter((r) => !seen.has(r.id))];
    },
  };
  return store;
}
