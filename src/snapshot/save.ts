/**
 * "Save a verified snapshot": stream one member's backend into the bot's store, check it
 * the way a restore will, and only then keep it. Whatever fails, nothing half-written is
 * left behind and the error says what to do next.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { describeError, isMedicError, MedicError } from '../engine/errors';
import type { EtcdMemberClient } from '../exec/etcd-client';
import { inspectSnapshot, InspectOptions, SnapshotInspection } from './inspect';
import type { PendingSnapshot, SnapshotKind, SnapshotRecord, SnapshotStore } from './store';

export interface SaveSnapshotOptions {
  /** The member to snapshot (one client per member: etcd3 would pick a random host). */
  client: Pick<EtcdMemberClient, 'status' | 'snapshot'> & Partial<Pick<EtcdMemberClient, 'countKeys'>>;
  store: SnapshotStore;
  cluster: string;
  /** Config node name of that member. */
  node: string;
  requester: string;
  /** Why, for the record and the channel, e.g. "safety snapshot before replace-member node3 (job 42)". */
  reason: string;
  kind: SnapshotKind;
  jobId?: string;
  /** etcd's version, for the record. @defaultValue the version the member reports */
  etcdVersion?: string;
  /** Bytes received so far: at the first chunk, then at most about once a second. Its errors are ignored. */
  onProgress?: (bytes: number) => void;
  /** Deadline of the whole stream. @defaultValue the client's (10 minutes) */
  deadlineMs?: number;
  /** How to check the file. @defaultValue inspectSnapshot's defaults, etcd's checksum required */
  inspect?: InspectOptions;
}

const PROGRESS_EVERY_MS = 1000;

/** Calls onProgress on the first chunk, then at most once per PROGRESS_EVERY_MS; a broken callback never stops the save. */
function throttledProgress(onProgress?: (bytes: number) => void): (bytes: number) => void {
  let last = -Infinity;
  return (bytes) => {
    if (!onProgress || Date.now() - last < PROGRESS_EVERY_MS) return;
    last = Date.now();
    try {
      void Promise.resolve(onProgress(bytes)).catch(() => undefined);
    } catch { /* progress is best effort */ }
  };
}

async function writeAll(fh: FileHandle, chunk: Buffer): Promise<void> {
  for (let off = 0; off < chunk.length;) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
}

/** What streaming produced: the bytes and hash as written, and what etcd said about them. */
interface Streamed { bytes: number; sha256: string; headerRevision?: string; headerMemberId?: string }

/**
 * Streams the member's snapshot into `path`. Each chunk is hashed and written (awaited:
 * the client delivers the next chunk only after this one is on its way to disk), then
 * the file is fsynced and its length checked against what etcd sent.
 */
async function streamInto(o: SaveSnapshotOptions, path: string, sinkError: { e?: unknown }): Promise<Streamed> {
  const fh = await open(path, 'w', 0o600);
  const hash = createHash('sha256');
  const progress = throttledProgress(o.onProgress);
  let written = 0;
  let closed = false;
  try {
    const r = await o.client.snapshot(async (chunk) => {
      // A late chunk after a failure must not touch a file that is being removed.
      if (closed) throw new Error('snapshot file already closed');
      try {
        hash.update(chunk);
        await writeAll(fh, chunk);
      } catch (e) {
        sinkError.e = e;
        throw e;
      }
      written += chunk.length;
      progress(written);
    }, { deadlineMs: o.deadlineMs });
    await fh.sync();
    const { size } = await fh.stat();
    if (r.bytes !== written || size !== written || written === 0) {
      throw new MedicError('SNAPSHOT_FAILED', `etcd sent ${r.bytes} bytes, ${written} were written, the file has ${size}`, true);
    }
    return { bytes: written, sha256: hash.digest('hex'), headerRevision: known(r.revision), headerMemberId: r.memberId || undefined };
  } finally {
    closed = true;
    await fh.close();
  }
}

/** etcd (3.4, 3.5) sends no header with snapshot chunks: the client reports '0' then. */
const known = (revision: string | undefined) => (revision && revision !== '0' ? revision : undefined);

/**
 * The snapshot's revision: the one stored in the file. A header revision, when etcd sends
 * one, is taken when a chunk is sent, after the backend snapshot began, so it may be
 * ahead of the file (writes in between) but never behind it.
 */
function reconcileRevision(o: SaveSnapshotOptions, s: Streamed, v: SnapshotInspection): string {
  const header = s.headerRevision;
  if (v.revision !== undefined && header !== undefined && BigInt(v.revision) > BigInt(header)) {
    throw new MedicError('SNAPSHOT_INVALID', `the snapshot from ${o.node} holds revision ${v.revision} but etcd said it was taken at ${header}: it is not the snapshot that was sent. Take a new one, from another member if this repeats`);
  }
  return v.revision ?? header ?? '0';
}

/**
 * Live keys at the snapshot's revision, asked of the same member. A restore compares its
 * key count with this; the snapshot stays good without it, so a failure is recorded, not
 * thrown (e.g. the revision was compacted between the snapshot and the count).
 */
async function countLiveKeys(o: SaveSnapshotOptions, revision: string): Promise<{ liveKeys: number } | { liveKeysNote: string }> {
  if (!o.client.countKeys) return { liveKeysNote: 'not counted (this client cannot count keys)' };
  if (revision === '0') return { liveKeysNote: 'not counted: the snapshot\'s revision is unknown' };
  try {
    return { liveKeys: (await o.client.countKeys({ revision })).count };
  } catch (e) {
    const compacted = /compacted/i.test(describeError(e));
    return { liveKeysNote: compacted ? `not counted: revision ${revision} was compacted before it could be counted` : `not counted: ${describeError(e)}` };
  }
}

/** The next step for the user, by what went wrong. */
function advice(o: SaveSnapshotOptions, e: unknown): { hint: string; retryable: boolean } {
  const errno = (e as NodeJS.ErrnoException | undefined)?.code;
  if (errno === 'ENOSPC' || errno === 'EDQUOT') return { hint: `free space in ${o.store.dir} on the bot's host (prune old snapshots), then retry`, retryable: false };
  if (errno === 'EACCES' || errno === 'EPERM' || errno === 'EROFS') return { hint: `the bot cannot write ${o.store.dir}: make it writable by the bot's user (mode 700), then retry`, retryable: false };
  if (isMedicError(e) && (e.code === 'ETCD_UNAVAILABLE' || e.code === 'ETCD_TIMEOUT')) {
    return { hint: `check ${o.node} with /etcd status ${o.cluster}, then retry, or snapshot another healthy member`, retryable: true };
  }
  return { hint: `retry; if it fails again, snapshot another healthy member (/etcd status ${o.cluster})`, retryable: isMedicError(e) && e.retryable };
}

/** The first error with an errno code (ENOSPC…) in a chain of causes. */
function errnoCause(e: unknown): NodeJS.ErrnoException | undefined {
  for (let c = e, depth = 0; c instanceof Error && depth < 5; c = c.cause, depth++) {
    const code = (c as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return c;
  }
  return undefined;
}

function failure(o: SaveSnapshotOptions, e: unknown, sinkError: unknown): MedicError {
  const what = `${o.kind} snapshot of ${o.node} (cluster ${o.cluster})`;
  if (isMedicError(e) && e.code === 'SNAPSHOT_INVALID') {
    return new MedicError('SNAPSHOT_INVALID', `${what} was refused and deleted: ${e.message}. If another member's snapshot is refused too, stop and investigate; check ${o.node} for a CORRUPT alarm (/etcd status ${o.cluster})`, false, { cause: e });
  }
  // A disk error while writing reaches us wrapped as an etcd error: report and advise on it.
  const local = sinkError ?? errnoCause(e);
  const { hint, retryable } = advice(o, local ?? e);
  const why = local ? `writing ${o.store.dir} on the bot's host: ${describeError(local)}` : describeError(e);
  return new MedicError('SNAPSHOT_FAILED', `${what} failed, nothing was kept: ${why}. Next: ${hint}`, retryable, { cause: e });
}

/**
 * Takes a snapshot of one member into the store and verifies it before keeping it.
 * Resolves with the kept record; throws SNAPSHOT_INVALID (etcd's checks refused the file)
 * or SNAPSHOT_FAILED, and in both cases leaves nothing behind.
 */
export async function saveSnapshot(o: SaveSnapshotOptions): Promise<SnapshotRecord> {
  const sinkError: { e?: unknown } = {};
  let pending: PendingSnapshot | undefined;
  try {
    // etcd sends no header with the chunks: status() names the member that will answer.
    const status = await o.client.status();
    pending = await o.store.create(o.cluster, { node: o.node });
    const streamed = await streamInto(o, pending.tmpPath, sinkError);
    if (streamed.headerMemberId && streamed.headerMemberId !== status.memberId) {
      throw new MedicError('SNAPSHOT_FAILED', `member ${streamed.headerMemberId} sent the snapshot but ${status.memberId} answered status: the connection to ${o.node} changed hands`, true);
    }
    const verified = await inspectSnapshot(pending.tmpPath, { requireChecksum: true, ...o.inspect });
    const revision = reconcileRevision(o, streamed, verified);
    const live = await countLiveKeys(o, revision);
    return await pending.finish({
      node: o.node, memberId: status.memberId, revision, etcdVersion: o.etcdVersion ?? status.version,
      sha256: streamed.sha256, requester: o.requester, reason: o.reason, kind: o.kind,
      ...(o.jobId !== undefined ? { jobId: o.jobId } : {}),
      verified,
      ...live,
    });
  } catch (e) {
    await pending?.abort().catch(() => undefined);
    throw failure(o, e, sinkError.e);
  }
}
