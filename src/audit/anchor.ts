import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { MedicError } from '../engine/errors';

/**
 * Anchors: the chain's head, signed, kept where Redis can't reach it.
 *
 * The hash chain proves that the lines in Redis fit together; it can't prove that none
 * are missing after the last one, because whoever cuts the tail can also rewrite the
 * `<key>:head` record (or wipe both). An anchor is a copy of the head (seq and hash) taken
 * at a known time and posted to chat and appended to a local file on the bot host; the
 * log must still contain that entry with that hash, and since each hash covers the one
 * before, the whole prefix up to the anchor is pinned too.
 *
 * `sig` is HMAC-SHA256 under the audit key when the log has one. Without a key it is a
 * plain SHA-256 of the same fields: that catches a damaged or mistyped anchor and, checked
 * against the log, a cut tail, but anyone can compute it, so it proves nothing about who
 * made the anchor: trust an unkeyed anchor only as far as you trust where you found it.
 */

export type AnchorAlg = 'hmac-sha256' | 'sha256';

export interface AuditAnchor {
  /** The Redis key of the log it anchors (signed, so an anchor can't be moved to another log). */
  key: string;
  /** Number of entries = seq of the last one; 0 for an empty log. */
  seq: number;
  /** Hash of entry `seq` (64 zeros for an empty log). */
  head: string;
  /** ISO time the anchor was taken, on the signer's clock. */
  at: string;
  alg: AnchorAlg;
  /** Hex HMAC-SHA256 (alg hmac-sha256) or SHA-256 (alg sha256) of anchorSigningString(). */
  sig: string;
}

/** An anchor and where it was read from, for messages ("--anchor", "anchors.jsonl line 3"). */
export interface PlacedAnchor {
  anchor: AuditAnchor;
  source: string;
}

export interface AnchorProblem {
  /** Where the anchor (or the line that should have been one) came from. */
  source: string;
  anchor?: AuditAnchor;
  reason: string;
}

const HEX64 = /^[0-9a-f]{64}$/;
/** Keys the one-line form carries bare; others (spaces, parentheses) fall back to the JSON form. */
const PLAIN_KEY = /^[^\s()"]+$/;
// One regex for the chat line, tolerant of the whitespace a chat client may change.
const LINE = /audit\s+anchor\s+#(\d+)\s+of\s+(\S+)\s+at\s+(\S+)\s+head\s+([0-9a-f]{64})\s+\((hmac-sha256|sha256)\s+sig\s+([0-9a-f]{64})\)/g;

/**
 * The exact bytes signed. A JSON array can't be made ambiguous by a key containing a
 * separator, and the leading tag keeps an anchor signature from ever equalling an entry
 * hash made with the same key (entries hash a JSON object).
 */
export function anchorSigningString(a: Pick<AuditAnchor, 'key' | 'seq' | 'head' | 'at' | 'alg'>): string {
  return JSON.stringify(['etcd-medic.audit-anchor.v1', a.alg, a.key, a.seq, a.head, a.at]);
}

function digest(a: Pick<AuditAnchor, 'key' | 'seq' | 'head' | 'at' | 'alg'>, hmacKey?: Buffer): string {
  const h = a.alg === 'hmac-sha256' ? createHmac('sha256', hmacKey!) : createHash('sha256');
  return h.update(anchorSigningString(a), 'utf8').digest('hex');
}

/** An anchor for `seq`/`head` of log `key`, signed with `hmacKey` when given. */
export function signAnchor(fields: { key: string; seq: number; head: string; at: string }, hmacKey?: Buffer): AuditAnchor {
  const unsigned = { ...fields, alg: (hmacKey ? 'hmac-sha256' : 'sha256') as AnchorAlg };
  return { ...unsigned, sig: digest(unsigned, hmacKey) };
}

const short = (h: string) => h.slice(0, 12);

/** `anchor #1234 of 2024-05-01T03:04:05.000Z`: how messages name an anchor. */
export const anchorName = (a: AuditAnchor) => `anchor #${a.seq} of ${a.at}`;

/**
 * Why this anchor can't be trusted for log `logKey` under `hmacKey`, or undefined when its
 * signature holds. Under a key an unkeyed anchor is refused: anyone could have made it.
 */
export function anchorSigProblem(a: AuditAnchor, opts: { logKey: string; hmacKey?: Buffer }): string | undefined {
  if (a.key !== opts.logKey) return `${anchorName(a)} is for log ${a.key}, not ${opts.logKey}: pass --key ${a.key}, or use that log's anchors`;
  if (a.alg === 'hmac-sha256' && !opts.hmacKey) return `${anchorName(a)} is signed with HMAC: set MEDIC_AUDIT_HMAC_KEY_FILE to the bot's key to check it`;
  if (a.alg === 'sha256' && opts.hmacKey) {
    return `${anchorName(a)} is unkeyed (sha256) but this log is checked with an HMAC key: anyone could have made it; use an anchor the bot signed`;
  }
  const expected = Buffer.from(digest(a, opts.hmacKey), 'hex');
  const given = Buffer.from(a.sig, 'hex');
  if (given.length === expected.length && timingSafeEqual(given, expected)) return undefined;
  return a.alg === 'hmac-sha256'
    ? `${anchorName(a)} has a bad signature (sig ${short(a.sig)}…): it was forged or altered, or MEDIC_AUDIT_HMAC_KEY_FILE is not the key the bot signs with`
    : `${anchorName(a)} does not match its own digest (sig ${short(a.sig)}…): the anchor was damaged or edited`;
}

/**
 * One line for a chat message, with everything needed to verify (full hashes):
 * `audit anchor #1234 of etcd-medic:audit at 2024-05-01T03:04:05.000Z head <64 hex> (hmac-sha256 sig <64 hex>)`.
 * Post it inside backticks, so chat markup (`:emoji:` in a key) leaves it alone.
 */
export function formatAnchor(a: AuditAnchor): string {
  if (!PLAIN_KEY.test(a.key)) return anchorJson(a);
  return `audit anchor #${a.seq} of ${a.key} at ${a.at} head ${a.head} (${a.alg} sig ${a.sig})`;
}

/** The anchor as one JSON line, fields in a fixed order (the anchor file's format). */
export function anchorJson(a: AuditAnchor): string {
  return JSON.stringify({ key: a.key, seq: a.seq, head: a.head, at: a.at, alg: a.alg, sig: a.sig });
}

/** The anchor in a parsed JSON value, or why it isn't one. */
function anchorFromValue(v: unknown): AuditAnchor | string {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not a JSON object';
  const o = v as Record<string, unknown>;
  if (typeof o.key !== 'string' || !o.key) return 'field "key" is missing';
  if (!Number.isSafeInteger(o.seq) || (o.seq as number) < 0) return 'field "seq" is missing or not a whole number';
  if (typeof o.head !== 'string' || !HEX64.test(o.head)) return 'field "head" is missing or not 64 hex digits';
  if (typeof o.at !== 'string' || Number.isNaN(Date.parse(o.at))) return 'field "at" is missing or not a time';
  if (o.alg !== 'hmac-sha256' && o.alg !== 'sha256') return 'field "alg" is not hmac-sha256 or sha256';
  if (typeof o.sig !== 'string' || !HEX64.test(o.sig)) return 'field "sig" is missing or not 64 hex digits';
  return { key: o.key, seq: o.seq as number, head: o.head, at: o.at, alg: o.alg, sig: o.sig };
}

/** A JSON anchor line, or why it isn't one. */
export function parseAnchorJson(line: string): AuditAnchor | string {
  try {
    return anchorFromValue(JSON.parse(line));
  } catch (e) {
    return `not valid JSON (${(e as Error).message})`;
  }
}

interface Found { at: number; anchor: AuditAnchor }

/** JSON anchors on lines of their own, quoted or in a code block as chat shows them. */
function jsonAnchorsIn(text: string): Found[] {
  const out: Found[] = [];
  let offset = 0;
  for (const raw of text.split('\n')) {
    const line = raw.trim().replace(/^[`'"]+|[`'"]+$/g, '');
    const a = line.startsWith('{') ? parseAnchorJson(line) : undefined;
    if (a !== undefined && typeof a !== 'string') out.push({ at: offset, anchor: a });
    offset += raw.length + 1;
  }
  return out;
}

/** `audit anchor …` lines anywhere in the text. */
function lineAnchorsIn(text: string): Found[] {
  return [...text.matchAll(LINE)]
    .filter((m) => Number.isSafeInteger(Number(m[1])) && !Number.isNaN(Date.parse(m[3])))
    .map((m) => ({ at: m.index!, anchor: { key: m[2], seq: Number(m[1]), head: m[4], at: m[3], alg: m[5] as AnchorAlg, sig: m[6] } }));
}

/**
 * The anchor in pasted text (a chat message, a shell argument): the last `audit anchor …`
 * line or JSON anchor line in it, so a whole copied message works; undefined when none.
 */
export function parseAnchor(text: string): AuditAnchor | undefined {
  const found = [...lineAnchorsIn(text), ...jsonAnchorsIn(text)];
  return found.sort((x, y) => x.at - y.at).pop()?.anchor;
}

// ------------------------------------------------------------------ the anchor file

export interface AnchorSink {
  readonly path: string;
  /** Appends the anchor as one JSON line and fsyncs; rejects if the line was not written whole. */
  append(anchor: AuditAnchor): Promise<void>;
}

/**
 * An append-only file of anchors (MEDIC_AUDIT_ANCHOR_FILE), one JSON line each. Every
 * append opens the file with O_APPEND (created 0600), writes the line with a single
 * write() and fsyncs it: with O_APPEND the kernel places each write at the end, so bot
 * processes sharing the file never interleave or overwrite each other's lines, and a
 * rotated or replaced file is picked up at the next anchor. Nothing ever rewrites it.
 */
export function createAnchorSink(path: string): AnchorSink {
  return {
    path,
    async append(anchor) {
      const line = Buffer.from(`${anchorJson(anchor)}\n`, 'utf8');
      let fh;
      try {
        fh = await open(path, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o600);
        const { bytesWritten } = await fh.write(line, 0, line.length);
        // Finishing a short write with a second write() could land after another process's line.
        if (bytesWritten !== line.length) throw new Error(`short write (${bytesWritten} of ${line.length} bytes)`);
        await fh.sync();
      } catch (e) {
        throw new MedicError('INTERNAL', `audit anchor file ${path}: ${(e as Error).message}; the anchor is ${formatAnchor(anchor)}`, true, { cause: e });
      } finally {
        await fh?.close();
      }
    },
  };
}

/**
 * Every line of an anchor file: the anchors, and a problem for each line that isn't one
 * (a line someone edited, or a torn write). Blank lines are skipped.
 */
export async function readAnchorFile(path: string): Promise<{ anchors: PlacedAnchor[]; problems: AnchorProblem[] }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new MedicError('BAD_INPUT', `cannot read anchor file ${path}: ${(e as Error).message}`);
  }
  const anchors: PlacedAnchor[] = [];
  const problems: AnchorProblem[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (!line.trim()) return;
    const source = `${path} line ${i + 1}`;
    const a = parseAnchorJson(line);
    if (typeof a === 'string') problems.push({ source, reason: `not an anchor: ${a}` });
    else anchors.push({ anchor: a, source });
  });
  return { anchors, problems };
}
