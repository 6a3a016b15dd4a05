/**
 * Checks a snapshot file on the bot's host before the bot relies on it. Two checks, because
 * neither is enough alone:
 * - the SHA-256 etcd appends to every streamed snapshot must match the content. This is what
 *   `snapshot restore` checks, and it catches any flipped byte; `snapshot status` does not
 *   (bbolt keeps a spare meta page and never reads free pages, so damage there goes unseen
 *   until the restore refuses the file);
 * - `etcdutl snapshot status` (etcd >= 3.5) or `etcdctl snapshot status` (3.4, Debian's
 *   etcd-client) must open the database and read every key: this gives the revision and
 *   key count, and refuses a file that is not an etcd database at all.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { MedicError } from '../engine/errors';
import { runTool } from '../exec/host-tools';
import type { SnapshotVerification } from './store';

export type SnapshotTool = 'etcdutl' | 'etcdctl';

export type SnapshotInspection = SnapshotVerification & { integrity: 'sha256' | 'none' };

export interface InspectOptions {
  /** Deadline of the status tool (it reads the whole database). @defaultValue 120000 */
  timeoutMs?: number;
  /** Tools to try, in order; the first one installed is used. @defaultValue ['etcdutl', 'etcdctl'] */
  tools?: SnapshotTool[];
  /**
   * Refuse a file without etcd's appended SHA-256. Every streamed snapshot has one, so a
   * fresh download without it was cut short; a db file copied out of a data dir has none.
   * @defaultValue false
   */
  requireChecksum?: boolean;
}

/** etcd's restore logic: a file whose size is 32 past a multiple of 512 ends in its SHA-256. */
const SHA_LEN = 32;
const hasAppendedSha = (size: number) => size % 512 === SHA_LEN;

const invalid = (path: string, why: string, cause?: unknown) =>
  new MedicError('SNAPSHOT_INVALID', `snapshot ${path} is not usable: ${why}`, false, { cause });

/** 'sha256' when the appended hash matches, 'none' when the file has none; throws on a mismatch. */
async function checkAppendedSha(path: string, size: number): Promise<'sha256' | 'none'> {
  if (!hasAppendedSha(size)) return 'none';
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { start: 0, end: size - SHA_LEN - 1 })) h.update(chunk as Buffer);
  const trailer = Buffer.alloc(SHA_LEN);
  const fh = await open(path, 'r');
  try { await fh.read(trailer, 0, SHA_LEN, size - SHA_LEN); } finally { await fh.close(); }
  if (!h.digest().equals(trailer)) {
    throw invalid(path, 'its content does not match the SHA-256 etcd appended to it (damaged on disk or in transit); `snapshot restore` would refuse it too. Take a new snapshot');
  }
  return 'sha256';
}

/**
 * Parses `snapshot status -w json`: {"hash":…,"revision":…,"totalKey":…,"totalSize":…}.
 * The numbers are read from the text: JSON.parse would round a revision past 2^53.
 */
export function parseSnapshotStatus(text: string): { hash: string; revision: string; totalKeys: number; totalSize: number } {
  const body = text.trim();
  let obj: unknown;
  try { obj = JSON.parse(body); } catch { obj = undefined; }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new Error(`not a JSON object: ${body.slice(0, 200)}`);
  const field = (name: string): string => {
    const m = new RegExp(`"${name}"\\s*:\\s*(\\d+)`).exec(body);
    if (!m) throw new Error(`no ${name} in ${body.slice(0, 200)}`);
    return m[1]!;
  };
  const safe = (name: string): number => {
    const n = Number(field(name));
    if (!Number.isSafeInteger(n)) throw new Error(`${name} out of range: ${field(name)}`);
    return n;
  };
  // etcdctl's table view prints the hash in hex; keep that form so operators can compare.
  return { hash: BigInt(field('hash')).toString(16), revision: BigInt(field('revision')).toString(10), totalKeys: safe('totalKey'), totalSize: safe('totalSize') };
}

const firstLine = (s: string) => s.trim().split('\n').filter((l) => !/deprecat/i.test(l))[0] ?? s.trim();

/**
 * Verifies a snapshot file on the bot's host. Resolves with what the tool read, or
 * `by: 'none'` when no tool is installed but etcd's checksum matched; throws
 * SNAPSHOT_INVALID when the file is damaged or not an etcd database, SNAPSHOT_FAILED when
 * it could not be checked at all.
 */
export async function inspectSnapshot(path: string, o: InspectOptions = {}): Promise<SnapshotInspection> {
  // Absolute, so a name starting with "-" can never be read as a flag.
  const file = resolve(path);
  const st = await stat(file).catch((e: unknown) => { throw invalid(file, `cannot read it (${(e as Error).message})`, e); });
  if (!st.isFile()) throw invalid(file, 'not a regular file');
  // bbolt would try to initialise an empty file as a new database.
  if (st.size === 0) throw invalid(file, 'it is empty');
  const integrity = await checkAppendedSha(file, st.size);
  if (integrity === 'none' && o.requireChecksum) {
    throw invalid(file, `it ends without the SHA-256 etcd appends to every snapshot it streams (${st.size} bytes): the download was cut short. Take a new snapshot`);
  }

  const timeoutMs = o.timeoutMs ?? 120_000;
  for (const tool of o.tools ?? ['etcdutl', 'etcdctl']) {
    const r = await runTool(tool, ['snapshot', 'status', '-w', 'json', file], timeoutMs);
    if (r.missing) continue;
    if (r.killed) {
      throw new MedicError('SNAPSHOT_FAILED', `${tool} snapshot status ${file} did not finish within ${timeoutMs} ms: a very large database or a slow disk on the bot's host; raise the inspect timeout and retry`, true);
    }
    if (typeof r.code === 'string') {
      throw new MedicError('SNAPSHOT_FAILED', `could not run ${tool} on the bot's host (${r.code}): check its installation, or remove it from PATH so another tool is used`);
    }
    if (r.code !== undefined) throw invalid(file, `${tool} snapshot status failed: ${firstLine(r.stderr || r.stdout)}`);
    try {
      return { by: tool, integrity, ...parseSnapshotStatus(r.stdout) };
    } catch (e) {
      throw new MedicError('SNAPSHOT_FAILED', `could not read ${tool} snapshot status output (${(e as Error).message}): is ${tool} an etcd v3 tool?`, false, { cause: e });
    }
  }
  if (integrity === 'sha256') return { by: 'none', integrity };
  throw new MedicError('SNAPSHOT_FAILED', `cannot verify ${file}: neither etcdutl nor etcdctl is installed on the bot's host and the file carries no etcd checksum; install etcd-client (Debian) or etcdutl`);
}
