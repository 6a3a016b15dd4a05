import { createHash, createHmac } from 'node:crypto';
import { AnchorProblem, anchorName, anchorSigProblem, AuditAnchor, PlacedAnchor } from './anchor';
import type { AuditEntry } from './audit-log';

/**
 * The chain's rules, shared by the writer (audit-log.ts) and every checker: how an entry
 * is serialised, how it is hashed, and what a valid sequence of lines looks like.
 *
 * Each entry carries `prev`, the hash of the entry before it, and `hash`, computed over
 * all its other fields. Editing a line changes its content but not its stored hash;
 * removing one leaves a gap in `seq` and a `prev` that points at nothing. With plain
 * SHA-256 someone who rewrites a line *and* recomputes every hash after it goes unnoticed
 * by this check alone (keep exports elsewhere to compare heads); with an HMAC key the
 * hashes can't be recomputed without the key, so the chain itself is unforgeable.
 */

/** `prev` of the first entry. */
export const GENESIS = '0'.repeat(64);

/**
 * JSON with object keys sorted at every level and no whitespace, so the same entry always
 * gives the same bytes (JSON.stringify keeps insertion order, which a reader may not).
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const parts = Object.keys(obj).sort()
    .filter((k) => obj[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`);
  return `{${parts.join(',')}}`;
}

/** Hex SHA-256 (or HMAC-SHA256 with `hmacKey`) of the entry's canonical form without `hash`. */
export function hashEntry(entry: Omit<AuditEntry, 'hash'> & { hash?: string }, hmacKey?: Buffer): string {
  const { hash: _ignored, ...rest } = entry;
  const h = hmacKey ? createHmac('sha256', hmacKey) : createHash('sha256');
  return h.update(canonicalJson(rest), 'utf8').digest('hex');
}

export interface VerifyOptions {
  /** The key the log was written with; without it an HMAC chain fails on every line. @defaultValue none (plain SHA-256) */
  hmacKey?: Buffer;
  /**
   * What the writer recorded as the last entry (Redis `<key>:head`). Lines removed from the
   * end leave a chain that is valid as far as it goes; only the head shows they existed.
   * @defaultValue none (the end of the lines is not checked)
   */
  expectHead?: { seq: number; hash: string };
  /**
   * Anchors taken earlier (see anchor.ts): each must be signed for `logKey`, and the log
   * must still hold its entry with its hash. Unlike the head these live outside Redis, so
   * a tail cut together with a rewritten head, or a wiped log, still shows.
   * `copy`: the lines are an exported copy, which may simply predate the newer anchors.
   * @defaultValue none (no anchors checked); copy false
   */
  anchors?: { logKey: string; list: PlacedAnchor[]; copy?: boolean };
}

export interface ChainProblem {
  /** 1-based line number in the log (the Redis list index + 1, or the file's line). */
  line: number;
  seq?: number;
  reason: string;
}

export interface VerifyResult {
  ok: boolean;
  /** Lines read, including any that were not valid entries. */
  count: number;
  problems: ChainProblem[];
  /** Stored hash of the last valid entry read: compare with a copy kept elsewhere. */
  lastHash?: string;
  lastSeq?: number;
  /** Present when anchors were given; their problems also make `ok` false. */
  anchors?: { checked: number; problems: AnchorProblem[]; last?: AuditAnchor };
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Why a parsed line is not an audit entry at all, or undefined when it is shaped like one. */
function shapeProblem(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not a JSON object';
  const e = v as Record<string, unknown>;
  if (!Number.isSafeInteger(e.seq) || (e.seq as number) < 1) return 'field "seq" is missing or not a positive integer';
  for (const f of ['ts', 'type', 'cluster'] as const) if (typeof e[f] !== 'string') return `field "${f}" is missing or not a string`;
  for (const f of ['prev', 'hash'] as const) if (typeof e[f] !== 'string' || !HEX64.test(e[f] as string)) return `field "${f}" is missing or not 64 hex digits`;
  return undefined;
}

const short = (h: string) => h.slice(0, 12);

/** Compares one well-formed entry with what the chain so far expects; a reason when it doesn't fit. */
function linkProblem(e: AuditEntry, expectSeq: number, prevHash: string, prevLine: number): string | undefined {
  if (e.seq > expectSeq) {
    const missing = e.seq - expectSeq;
    const which = missing === 1 ? `seq ${expectSeq} is` : `seq ${expectSeq}–${e.seq - 1} (${missing} entries) are`;
    return `${which} missing before this line: ${missing === 1 ? 'a line was' : 'lines were'} removed`
      + (prevLine ? ` between line ${prevLine} and this one` : ' from the start of the log');
  }
  if (e.seq < expectSeq) {
    return `seq ${e.seq} comes after seq ${expectSeq - 1}: this line was inserted, duplicated or moved out of order`;
  }
  if (e.prev !== prevHash) {
    return prevLine
      ? `does not link to line ${prevLine}: its prev ${short(e.prev)}… is not that line's hash ${short(prevHash)}…`
        + ' (line before was replaced, or rewritten with a recomputed hash)'
      : `first entry's prev is ${short(e.prev)}…, not the ${short(GENESIS)}… a new log starts with: earlier lines were removed`;
  }
  return undefined;
}

/**
 * Checks a log line by line: each line parses, is in canonical form, its hash matches its
 * content, its seq follows the previous line's and its prev is the previous line's hash.
 * After a problem the check picks up from the offending line, so one edited line is
 * reported once, not as every line after it.
 */
export async function verifyChain(lines: Iterable<string> | AsyncIterable<string>, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const problems: ChainProblem[] = [];
  let count = 0;
  let expectSeq = 1;
  let prevHash = GENESIS;
  let prevLine = 0;
  let last: AuditEntry | undefined;
  let atHeadSeq: { hash: string; line: number } | undefined;
  const wanted = new Set(opts.anchors?.list.map((p) => p.anchor.seq));
  const atAnchorSeq = new Map<number, string>();
  for await (const raw of lines) {
    count += 1;
    const line = count;
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      problems.push({ line, reason: `not valid JSON (${(e as Error).message}): the line was damaged or is not from this log` });
      continue;
    }
    const shape = shapeProblem(parsed);
    if (shape) {
      problems.push({ line, seq: typeof (parsed as { seq?: unknown })?.seq === 'number' ? (parsed as { seq: number }).seq : undefined, reason: `not an audit entry: ${shape}` });
      continue;
    }
    const e = parsed as AuditEntry;
    const reasons: string[] = [];
    const computed = hashEntry(e, opts.hmacKey);
    if (computed !== e.hash) {
      reasons.push(`content changed after it was written: stored hash ${short(e.hash)}… but the content hashes to ${short(computed)}…`
        + (opts.hmacKey ? ' (or the log was written with a different HMAC key)' : ''));
    } else if (canonicalJson(e) !== text) {
      reasons.push('reformatted after it was written (same content, different bytes)');
    }
    const link = linkProblem(e, expectSeq, prevHash, prevLine);
    if (link) reasons.push(link);
    if (reasons.length) problems.push({ line, seq: e.seq, reason: reasons.join('; ') });
    // Resynchronise on this line: the next one is judged against what this one claims.
    expectSeq = e.seq + 1;
    prevHash = e.hash;
    prevLine = line;
    last = e;
    if (e.seq === opts.expectHead?.seq) atHeadSeq = { hash: e.hash, line };
    if (wanted.has(e.seq) && !atAnchorSeq.has(e.seq)) atAnchorSeq.set(e.seq, e.hash);
  }
  checkHead(opts.expectHead, last, atHeadSeq, count, problems);
  const res: VerifyResult = { ok: problems.length === 0, count, problems, lastHash: last?.hash, lastSeq: last?.seq };
  if (opts.anchors) {
    const { list, logKey, copy } = opts.anchors;
    const anchorProblems = list.flatMap((p) => {
      const reason = anchorProblem(p.anchor, { logKey, hmacKey: opts.hmacKey, count, lastSeq: last?.seq ?? 0, atAnchorSeq, copy });
      return reason ? [{ source: p.source, anchor: p.anchor, reason }] : [];
    });
    res.anchors = { checked: list.length, problems: anchorProblems, last: list[list.length - 1]?.anchor };
    res.ok &&= anchorProblems.length === 0;
  }
  return res;
}

interface LogFacts {
  logKey: string;
  hmacKey?: Buffer;
  /** Lines read and the seq of the last valid entry. */
  count: number;
  lastSeq: number;
  /** Hash of the first entry read with each anchored seq. */
  atAnchorSeq: Map<number, string>;
  copy?: boolean;
}

/**
 * Why the log doesn't hold what the anchor recorded, or undefined when it does. The entry's
 * hash covers every entry before it (through `prev`), so a match pins the whole prefix.
 */
function anchorProblem(a: AuditAnchor, log: LogFacts): string | undefined {
  const sig = anchorSigProblem(a, { logKey: log.logKey, hmacKey: log.hmacKey });
  if (sig) return sig;
  if (a.seq === 0) return undefined;
  const n = a.seq - log.lastSeq;
  const entries = n === 1 ? '1 entry' : `${n} entries`;
  if (log.copy && n > 0) {
    return `the copy ends at #${log.lastSeq} but ${anchorName(a)} was signed: it lacks the last ${entries} (a copy older than the anchor, or its tail was cut)`;
  }
  if (log.count === 0) return `the log is empty but ${anchorName(a)} exists: the log was wiped`;
  if (n > 0) return `the log ends at #${log.lastSeq} but ${anchorName(a)} was signed: ${entries} ${n === 1 ? 'was' : 'were'} removed from the tail`;
  const hash = log.atAnchorSeq.get(a.seq);
  if (hash === undefined) return `entry #${a.seq} is missing from the log, but ${anchorName(a)} recorded it: it was removed`;
  if (hash !== a.head) {
    return `entry #${a.seq} has hash ${short(hash)}… but ${anchorName(a)} recorded ${short(a.head)}…: the log was rewritten at or before #${a.seq} (or cut and written again)`;
  }
  return undefined;
}

/**
 * Read the head before the lines: appends in between then only add lines past the head,
 * which is fine, while a log that stops short of the head lost its end.
 */
function checkHead(head: VerifyOptions['expectHead'], last: AuditEntry | undefined, atHeadSeq: { hash: string; line: number } | undefined, count: number, problems: ChainProblem[]): void {
  if (!head) return;
  const lastSeq = last?.seq ?? 0;
  if (head.seq > lastSeq) {
    const n = head.seq - lastSeq;
    problems.push({
      line: count + 1,
      seq: lastSeq + 1,
      reason: `the log ends at seq ${lastSeq} but the writer's head records seq ${head.seq}: the last ${n === 1 ? 'line was' : `${n} lines were`} removed`,
    });
  } else if (atHeadSeq && atHeadSeq.hash !== head.hash) {
    problems.push({ line: atHeadSeq.line, seq: head.seq, reason: `the entry with seq ${head.seq} has hash ${short(atHeadSeq.hash)}… but the writer's head records ${short(head.hash)}…: that line was replaced` });
  }
}
