/**
 * The bot's own snapshot store, on the bot's host: `<dir>/<cluster>/<id>.db` with its
 * metadata in `<id>.json`. The metadata is written last and atomically (write, fsync,
 * rename), so a `.db` without a `.json` is a snapshot that never finished: list() does
 * not show it and prune() removes it. A snapshot holds every key of the cluster,
 * Kubernetes Secrets included: directories are 0700 and files 0600.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { NAME_PATTERN } from '../config/schema';
import { MedicError } from '../engine/errors';
import type { OffsiteCopy } from './offsite';

export type SnapshotKind = 'manual' | 'safety' | 'scheduled';

/** What checked the file before it was kept. */
export interface SnapshotVerification {
  /** The tool that read the file; 'none' when neither etcdutl nor etcdctl is on the bot's host. */
  by: 'etcdctl' | 'etcdutl' | 'none';
  /** etcd's hash of the keyspace as `snapshot status` prints it (hex). */
  hash?: string;
  /** The store revision inside the file (decimal text: uint64). */
  revision?: string;
  totalKeys?: number;
  totalSize?: number;
  /**
   * 'sha256': the SHA-256 etcd appends to a streamed snapshot matched the content (what
   * `snapshot restore` checks); 'none': the file carries no such hash.
   */
  integrity?: 'sha256' | 'none';
}

export interface SnapshotRecord {
  id: string;
  cluster: string;
  /** Config node name of the member it was taken from. */
  node: string;
  /** Hex member id of that member. */
  memberId: string;
  /** Store revision of the snapshot, decimal text (uint64); '0' when nothing could tell it. */
  revision: string;
  etcdVersion: string;
  sizeBytes: number;
  /** SHA-256 (hex) of the whole file as stored. */
  sha256: string;
  /** ISO time the snapshot was started. */
  createdAt: string;
  requester: string;
  /** Why it exists, e.g. "safety snapshot before replace-member node3 (job 42)". */
  reason: string;
  jobId?: string;
  kind: SnapshotKind;
  verified: SnapshotVerification;
  /**
   * Live keys at the snapshot's revision, counted by the member when it was taken (a
   * count-only range at that revision): what a restore must serve again. `totalKeys` of
   * `snapshot status` counts every stored revision of every key, not this. Absent when
   * it could not be counted (compacted already, older record): `liveKeysNote` says why.
   */
  liveKeys?: number;
  /** Why liveKeys is absent. */
  liveKeysNote?: string;
  /** Its copy in the offsite object store, read back and checked (absent: none configured, or not yet). */
  offsite?: OffsiteCopy;
  /** Why the offsite copy failed (the local snapshot is complete without it). */
  offsiteError?: string;
  /** Listed from the offsite store only: not in this store (yet); get() brings it back. Never stored. */
  offsiteOnly?: boolean;
}

/** What the writer knows once the file is complete; the store adds id, cluster, createdAt and size. */
export type SnapshotMeta = Omit<SnapshotRecord, 'id' | 'cluster' | 'createdAt' | 'sizeBytes'>;

/** A snapshot being written. Call exactly one of finish() or abort(). */
export interface PendingSnapshot {
  readonly id: string;
  readonly cluster: string;
  readonly createdAt: string;
  /** An empty file (0600) to write the snapshot into; moved into place by finish(). */
  readonly tmpPath: string;
  /** Syncs the file, moves it into place and writes the metadata last. */
  finish(meta: SnapshotMeta): Promise<SnapshotRecord>;
  /** Removes whatever was written. Safe to call more than once, and after a failed finish(). */
  abort(): Promise<void>;
}

export interface PrunePolicy {
  /** Keep the newest `keep` snapshots. */
  keep?: number;
  /** Keep snapshots younger than this many days. */
  maxAgeDays?: number;
  /** Ids that are never removed (e.g. a job's safety snapshot until the job is done). */
  pinned?: string[];
}

export interface SnapshotStore {
  readonly dir: string;
  create(cluster: string, opts?: { node?: string }): Promise<PendingSnapshot>;
  /** Finished snapshots, newest first. */
  list(cluster: string): Promise<SnapshotRecord[]>;
  /** One finished snapshot; refuses an id that is not one (ids are typed in chat). */
  get(cluster: string, id: string): Promise<SnapshotRecord | undefined>;
  /** The .db file of a record. */
  path(record: Pick<SnapshotRecord, 'cluster' | 'id'>): string;
  /**
   * Removes finished snapshots that no rule keeps, and unfinished leftovers. A snapshot
   * is kept when any given rule keeps it (newest `keep`, younger than `maxAgeDays`,
   * pinned); with neither keep nor maxAgeDays, no finished snapshot is removed.
   * Resolves with the records removed.
   */
  prune(cluster: string, policy: PrunePolicy): Promise<SnapshotRecord[]>;
  /** Rewrites a finished snapshot's record (its offsite copy noted); the file is untouched. */
  update(record: SnapshotRecord): Promise<void>;
  /**
   * Brings a snapshot kept elsewhere (offsite) back into this store under its own id:
   * `write` fills the file, then the record makes it visible, as create() does.
   */
  adopt(record: SnapshotRecord, write: (tmpPath: string) => Promise<void>): Promise<SnapshotRecord>;
}

export interface SnapshotStoreOptions {
  /** Where snapshots live on the bot's host. @defaultValue '/var/lib/etcd-medic/snapshots' */
  dir?: string;
  /** Clock, for ids, createdAt and ages. @defaultValue () => new Date() */
  now?: () => Date;
  /**
   * Age (by mtime) after which prune() removes a file of an unfinished snapshot. A save in
   * progress keeps writing (so its mtime stays fresh), but may run in another process.
   * @defaultValue 30 minutes
   */
  unfinishedGraceMs?: number;
}

export const DEFAULT_SNAPSHOT_DIR = '/var/lib/etcd-medic/snapshots';
/** Snapshot ids: typed in chat later, used in file names here. */
export const SNAPSHOT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/;

const PART = '.part';
const DAY_MS = 86_400_000;

export function isSnapshotId(s: unknown): s is string {
  return typeof s === 'string' && SNAPSHOT_ID_PATTERN.test(s);
}

function checkId(id: string): void {
  if (!isSnapshotId(id)) {
    throw new MedicError('BAD_INPUT', `not a snapshot id: ${JSON.stringify(String(id).slice(0, 100))}; ids look like 20240102T030405Z-node3-1a2b (letters, digits, ".", "_", "-"; list them with snapshot list)`);
  }
}

function checkCluster(cluster: string): void {
  if (!NAME_PATTERN.test(cluster)) throw new MedicError('BAD_INPUT', `not a cluster name: ${JSON.stringify(String(cluster).slice(0, 100))}`);
}

/** 2024-01-02T03:04:05.678Z -> 20240102T030405Z: sorts by time, safe in file names and chat. */
function stamp(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

function newId(at: Date, node?: string): string {
  const suffix = randomBytes(2).toString('hex');
  return node ? `${stamp(at)}-${node.slice(0, 50)}-${suffix}` : `${stamp(at)}-${suffix}`;
}

const isErrno = (e: unknown, code: string) => (e as NodeJS.ErrnoException)?.code === code;

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return false;
    throw e;
  }
}

async function removeFile(path: string): Promise<void> {
  await rm(path, { force: true });
}

/** fsync a directory, so a rename in it survives a crash. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, fsConstants.O_RDONLY);
  try { await fh.sync(); } finally { await fh.close(); }
}

async function syncFile(path: string): Promise<void> {
  const fh = await open(path, 'r+');
  try { await fh.sync(); } finally { await fh.close(); }
}

/** Writes a whole file atomically: a .part written and synced, then renamed over the target. */
async function writeFileAtomic(path: string, data: string): Promise<void> {
  const tmp = path + PART;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

/**
 * mkdir -p with 0700, and tighten a directory that already existed: a snapshot is a copy
 * of every Secret in the cluster.
 */
async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  if ((st.mode & 0o077) === 0) return;
  try {
    await chmod(dir, 0o700);
  } catch (e) {
    throw new MedicError('SNAPSHOT_FAILED', `snapshot directory ${dir} is open to other users (mode ${(st.mode & 0o777).toString(8)}) and the bot cannot restrict it (${(e as Error).message}): chmod 700 it, owned by the bot's user`, false, { cause: e });
  }
}

function isRecord(x: unknown): x is SnapshotRecord {
  const r = x as Partial<SnapshotRecord> | null;
  return typeof r === 'object' && r !== null && isSnapshotId(r.id) && typeof r.cluster === 'string'
    && typeof r.createdAt === 'string' && typeof r.revision === 'string' && typeof r.sizeBytes === 'number'
    && typeof r.sha256 === 'string' && typeof r.verified === 'object' && r.verified !== null;
}

function checkMeta(meta: SnapshotMeta): void {
  if (!/^[0-9a-f]{64}$/.test(meta.sha256)) throw new MedicError('INTERNAL', `snapshot metadata: sha256 must be 64 hex digits, got ${JSON.stringify(meta.sha256)}`);
  if (!/^\d+$/.test(meta.revision)) throw new MedicError('INTERNAL', `snapshot metadata: revision must be decimal text, got ${JSON.stringify(meta.revision)}`);
  if (!['manual', 'safety', 'scheduled'].includes(meta.kind)) throw new MedicError('INTERNAL', `snapshot metadata: unknown kind ${JSON.stringify(meta.kind)}`);
}

function checkPolicy(p: PrunePolicy): void {
  if (p.keep !== undefined && !(Number.isInteger(p.keep) && p.keep >= 0)) {
    throw new MedicError('BAD_INPUT', `keep must be a whole number of snapshots (0 or more), got ${p.keep}`);
  }
  if (p.maxAgeDays !== undefined && !(Number.isFinite(p.maxAgeDays) && p.maxAgeDays > 0)) {
    throw new MedicError('BAD_INPUT', `maxAgeDays must be a positive number of days, got ${p.maxAgeDays}`);
  }
}

/** Newest first; ids break ties (they start with the time too). */
function newestFirst(a: SnapshotRecord, b: SnapshotRecord): number {
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? 1 : -1;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/** Which records (newest first) no rule keeps. */
export function unkept(records: SnapshotRecord[], p: PrunePolicy, now: Date): SnapshotRecord[] {
  // Without a rule there is nothing to measure against: keep everything.
  if (p.keep === undefined && p.maxAgeDays === undefined) return [];
  const kept = new Set(p.pinned ?? []);
  if (p.keep !== undefined) records.slice(0, p.keep).forEach((r) => kept.add(r.id));
  if (p.maxAgeDays !== undefined) {
    const cutoff = now.getTime() - p.maxAgeDays * DAY_MS;
    records.filter((r) => Date.parse(r.createdAt) >= cutoff).forEach((r) => kept.add(r.id));
  }
  return records.filter((r) => !kept.has(r.id));
}

export function createSnapshotStore(o: SnapshotStoreOptions = {}): SnapshotStore {
  const dir = o.dir ?? DEFAULT_SNAPSHOT_DIR;
  const now = o.now ?? (() => new Date());
  const graceMs = o.unfinishedGraceMs ?? 30 * 60_000;
  /** Snapshots this process is writing: prune() leaves them alone whatever their age. */
  const active = new Set<string>();

  const clusterDir = (cluster: string) => { checkCluster(cluster); return join(dir, cluster); };
  const dbPath = (cluster: string, id: string) => { checkId(id); return join(clusterDir(cluster), `${id}.db`); };
  const metaPath = (cluster: string, id: string) => join(clusterDir(cluster), `${id}.json`);

  /** A record from its .json; undefined when missing, unreadable, or its .db is gone. */
  async function readRecord(cluster: string, id: string): Promise<SnapshotRecord | undefined> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(metaPath(cluster, id), 'utf8'));
    } catch (e) {
      if (isErrno(e, 'ENOENT') || e instanceof SyntaxError) return undefined;
      throw e;
    }
    if (!isRecord(parsed) || parsed.id !== id || parsed.cluster !== cluster) return undefined;
    return (await exists(dbPath(cluster, id))) ? parsed : undefined;
  }

  /** Creates <id>.db.part exclusively; a clash (same second, same random suffix) draws again. */
  async function reserve(cluster: string, at: Date, node?: string): Promise<string> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const id = newId(at, node);
      if (await exists(dbPath(cluster, id)) || await exists(metaPath(cluster, id))) continue;
      try {
        const fh = await open(dbPath(cluster, id) + PART, 'wx', 0o600);
        await fh.close();
        return id;
      } catch (e) {
        if (!isErrno(e, 'EEXIST')) throw e;
      }
    }
    throw new MedicError('INTERNAL', `could not pick a free snapshot id in ${clusterDir(cluster)}`);
  }

  async function create(cluster: string, opts: { node?: string } = {}): Promise<PendingSnapshot> {
    if (opts.node !== undefined && !NAME_PATTERN.test(opts.node)) throw new MedicError('BAD_INPUT', `not a node name: ${JSON.stringify(opts.node)}`);
    await ensurePrivateDir(dir);
    await ensurePrivateDir(clusterDir(cluster));
    const at = now();
    const id = await reserve(cluster, at, opts.node);
    const key = `${cluster}/${id}`;
    active.add(key);
    const tmpPath = dbPath(cluster, id) + PART;
    let state: 'open' | 'finished' | 'aborted' = 'open';
    return {
      id, cluster, tmpPath, createdAt: at.toISOString(),
      async finish(meta) {
        if (state !== 'open') throw new MedicError('INTERNAL', `snapshot ${id} was already ${state}`);
        checkMeta(meta);
        await syncFile(tmpPath);
        const { size } = await stat(tmpPath);
        const record: SnapshotRecord = { ...meta, id, cluster, createdAt: at.toISOString(), sizeBytes: size };
        await rename(tmpPath, dbPath(cluster, id));
        // The metadata makes the snapshot visible: only once the data is in place.
        await writeFileAtomic(metaPath(cluster, id), JSON.stringify(record, null, 2) + '\n');
        await syncDir(clusterDir(cluster));
        state = 'finished';
        active.delete(key);
        return record;
      },
      async abort() {
        if (state === 'finished') return; // never delete a snapshot that was kept
        state = 'aborted';
        active.delete(key);
        await removeFile(metaPath(cluster, id) + PART);
        await removeFile(metaPath(cluster, id));
        await removeFile(tmpPath);
        await removeFile(dbPath(cluster, id));
      },
    };
  }

  async function list(cluster: string): Promise<SnapshotRecord[]> {
    let names: string[];
    try {
      names = await readdir(clusterDir(cluster));
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return [];
      throw e;
    }
    const ids = names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -'.json'.length)).filter(isSnapshotId);
    const records = await Promise.all(ids.map((id) => readRecord(cluster, id)));
    return records.filter((r): r is SnapshotRecord => r !== undefined).sort(newestFirst);
  }

  async function get(cluster: string, id: string): Promise<SnapshotRecord | undefined> {
    checkCluster(cluster);
    checkId(id);
    return readRecord(cluster, id);
  }

  async function removeRecord(r: SnapshotRecord): Promise<void> {
    // Metadata first: a crash in between leaves an unfinished .db, which the next prune removes.
    await removeFile(metaPath(r.cluster, r.id));
    await removeFile(dbPath(r.cluster, r.id));
  }

  /**
   * Files of snapshots that never finished (.part files, a .db without .json, a .json whose
   * .db is gone), older than the grace period and not being written by this process.
   */
  async function removeUnfinished(cluster: string): Promise<void> {
    const cdir = clusterDir(cluster);
    let names: string[];
    try {
      names = await readdir(cdir);
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return;
      throw e;
    }
    const present = new Set(names);
    const cutoff = now().getTime() - graceMs;
    for (const name of names) {
      const m = /^(.+?)\.(db|json)(\.part)?$/.exec(name);
      if (!m || !isSnapshotId(m[1]) || active.has(`${cluster}/${m[1]}`)) continue;
      const [, id, ext, part] = m;
      const partner = ext === 'db' ? `${id}.json` : `${id}.db`;
      if (!part && present.has(partner)) continue;
      const st = await stat(join(cdir, name)).catch(() => undefined);
      if (st && st.mtimeMs < cutoff) await removeFile(join(cdir, name));
    }
  }

  async function prune(cluster: string, policy: PrunePolicy): Promise<SnapshotRecord[]> {
    checkPolicy(policy);
    const removed = unkept(await list(cluster), policy, now());
    for (const r of removed) await removeRecord(r);
    await removeUnfinished(cluster);
    return removed;
  }

  async function update(record: SnapshotRecord): Promise<void> {
    if (!(await readRecord(record.cluster, record.id))) throw new MedicError('INTERNAL', `snapshot ${record.id} is not in the store: nothing to update`);
    await writeFileAtomic(metaPath(record.cluster, record.id), JSON.stringify(record, null, 2) + '\n');
  }

  async function adopt(record: SnapshotRecord, write: (tmpPath: string) => Promise<void>): Promise<SnapshotRecord> {
    if (!isRecord(record)) throw new MedicError('SNAPSHOT_INVALID', 'the offsite record of this snapshot is not one the bot wrote');
    const { cluster, id } = record;
    await ensurePrivateDir(dir);
    await ensurePrivateDir(clusterDir(cluster));
    const existing = await readRecord(cluster, id);
    if (existing) return existing;
    const key = `${cluster}/${id}`;
    active.add(key);
    // Named like an unfinished snapshot of its own, so a crash here leaves what prune() removes.
    const tmp = join(clusterDir(cluster), `${id.slice(0, 60)}-adopt${randomBytes(3).toString('hex')}.db${PART}`);
    try {
      await write(tmp);
      await syncFile(tmp);
      await rename(tmp, dbPath(cluster, id));
      await writeFileAtomic(metaPath(cluster, id), JSON.stringify(record, null, 2) + '\n');
      await syncDir(clusterDir(cluster));
      return record;
    } finally {
      active.delete(key);
      await removeFile(tmp);
    }
  }

  return { dir, create, list, get, path: (r) => dbPath(r.cluster, r.id), prune, update, adopt };
}
