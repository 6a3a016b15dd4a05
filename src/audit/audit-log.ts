import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { MedicError } from '../engine/errors';
import type { Report } from '../engine/report';
import { AuditAnchor, PlacedAnchor, signAnchor } from './anchor';
import { redact, redactDeep } from './redact';
import { canonicalJson, GENESIS, hashEntry, verifyChain, VerifyResult } from './verify';

/**
 * The audit trail outside Slack: every request, plan, approval, step and outcome, in the
 * Redis that web and worker processes already share (so it works when they run on
 * different hosts). One Redis list holds the entries as JSON lines, append-only and
 * hash-chained (see verify.ts); `<key>:head` holds "seq hash" of the last entry.
 * Anchors (anchor.ts) are that head, signed and kept outside Redis, so a cut tail shows.
 *
 * Order is `seq`, not `ts`: timestamps come from each writer's clock and hosts disagree.
 */

/** @defaultValue 'etcd-medic:audit' */
export const DEFAULT_AUDIT_KEY = 'etcd-medic:audit';

/** Event names: lower-case dot names such as `job.planned`, `approval.granted`, `step.failed`. */
export const AUDIT_EVENT_TYPE = /^[a-z]+(\.[a-z-]+)+$/;
const CLUSTER_NAME = /^[A-Za-z0-9._-]{1,63}$/;

export interface AuditEvent {
  /**
   * e.g. job.requested, job.planned, job.replanned, approval.granted, approval.refused,
   * approval.rejected, approval.expired, job.started, job.resumed, step.started,
   * step.succeeded, step.skipped, step.failed, job.succeeded, job.failed, job.cancelled,
   * job.busy. Free, but must match AUDIT_EVENT_TYPE.
   */
  type: string;
  cluster: string;
  jobId?: string;
  /** Slack user id (`U…`), `console:<name>`, or `bot`. */
  actor?: string;
  /** Event details; every string in it is redacted on append. See StepEventData and friends. */
  data?: Record<string, unknown>;
}

export interface AuditEntry extends AuditEvent {
  /** 1, 2, 3… across the whole log (all clusters). */
  seq: number;
  /** ISO time on the writer's clock. */
  ts: string;
  /** `hash` of the entry before, GENESIS (64 zeros) for seq 1. */
  prev: string;
  hash: string;
}

/** The fields `formatAuditReport` reads from step.* events. All optional; more may be added. */
export interface StepEventData {
  /** Executor action or step name, e.g. `etcd.memberRemove`. */
  step?: string;
  /** 1-based position in the plan, and the plan's length. */
  index?: number;
  total?: number;
  node?: string;
  /** The command template (not the expanded command line). */
  command?: string;
  exitCode?: number;
  durationMs?: number;
  /** Output excerpt; redacted and bounded on append. */
  output?: string;
  error?: string;
}

export interface AuditHead {
  seq: number;
  hash: string;
}

export interface AuditLogOptions {
  /** Redis list key; the head lives at `<key>:head`. @defaultValue DEFAULT_AUDIT_KEY ('etcd-medic:audit') */
  key?: string;
  /** Clock for `ts` (tests). @defaultValue () => new Date() */
  now?: () => Date;
  /**
   * Chain with HMAC-SHA256 under this key instead of plain SHA-256. Plain SHA-256 detects
   * edits by someone who does not recompute the hashes after them; with a key the chain
   * can't be rewritten consistently by anyone without the key. Every writer and the verify
   * command must use the same key (MEDIC_AUDIT_HMAC_KEY_FILE, see readAuditHmacKey).
   * @defaultValue none (plain SHA-256)
   */
  hmacKey?: Buffer;
  /** Tries when other processes append at the same moment. @defaultValue 20 */
  maxAttempts?: number;
  /** ...and tries for at least this long while they keep winning the head. @defaultValue 5000 */
  retryForMs?: number;
}

export interface RecentQuery {
  cluster?: string;
  jobId?: string;
  /** How many matching entries to return (1–1000). */
  limit: number;
  /** How many of the newest lines to look through at most, so a filter can't read the whole log. @defaultValue 10000 */
  maxScan?: number;
}

export interface AuditLog {
  readonly key: string;
  /**
   * Redacts, chains and stores the event; resolves with the entry as stored. `once`: an
   * idempotency key (kept a day): an append tried again after a timeout, which Redis may
   * have carried out anyway, is stored once; that call resolves with the first call's
   * entry unknown: `undefined`.
   */
  append(event: AuditEvent): Promise<AuditEntry>;
  append(event: AuditEvent, opts: { once: string }): Promise<AuditEntry | undefined>;
  /** The newest matching entries, oldest first. Unparsable lines are skipped (verify reports them). */
  recent(query: RecentQuery): Promise<AuditEntry[]>;
  /** Entries from `fromSeq` (default 1) on, read page by page. Assumes no lines were removed; use verify() to know. */
  entries(fromSeq?: number): AsyncIterable<AuditEntry>;
  /** The stored lines verbatim, page by page (export, verification). */
  lines(): AsyncIterable<string>;
  /** The last entry's seq and hash as the writers recorded them; undefined for an empty log. */
  head(): Promise<AuditHead | undefined>;
  /**
   * Checks the whole chain, including that its end matches the head, and that the log still
   * holds every anchor's entry with the anchor's hash (see anchor.ts).
   */
  verify(opts?: { anchors?: PlacedAnchor[] }): Promise<VerifyResult>;
  /**
   * The head as the writers recorded it, signed (HMAC with the audit key, else SHA-256):
   * post `formatAnchor()` of it to chat and append it to the anchor file, so a later cut
   * tail or wiped log can be proven. One Redis round trip.
   */
  anchor(): Promise<AuditAnchor>;
}

const PAGE = 500;

// Compare-and-append: only when the head is still the one the entry was chained to.
// A missing head with a non-empty list means someone deleted it: refuse to start a
// second chain inside the first.
const APPEND = `
if ARGV[4] ~= '' and redis.call('EXISTS', ARGV[4]) == 1 then return 2 end
local h = redis.call('GET', KEYS[2])
if (h or '') ~= ARGV[1] then return 0 end
if not h and redis.call('LLEN', KEYS[1]) > 0 then return -1 end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
if ARGV[4] ~= '' then redis.call('SET', ARGV[4], '1', 'EX', 86400) end
return 1`;

function parseHead(raw: string | null): AuditHead {
  if (!raw) return { seq: 0, hash: GENESIS };
  const [seq, hash] = raw.split(' ');
  return { seq: Number(seq), hash };
}

/** Validates the event and redacts everything free-form in it, before it is hashed. */
function prepare(event: AuditEvent): AuditEvent {
  if (typeof event.type !== 'string' || !AUDIT_EVENT_TYPE.test(event.type)) {
    throw new MedicError('BAD_INPUT', `audit event type ${JSON.stringify(event.type)}: expected a dot name such as "step.started"`);
  }
  if (typeof event.cluster !== 'string' || !CLUSTER_NAME.test(event.cluster)) {
    throw new MedicError('BAD_INPUT', `audit event ${event.type}: cluster ${JSON.stringify(event.cluster)} is not a cluster name`);
  }
  const out: AuditEvent = { type: event.type, cluster: event.cluster };
  if (event.jobId !== undefined) out.jobId = redact(String(event.jobId), { maxChars: 100 });
  if (event.actor !== undefined) out.actor = redact(String(event.actor), { maxChars: 200 });
  if (event.data !== undefined) out.data = redactDeep(event.data) as Record<string, unknown>;
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Random backoff growing with the attempt, so colliding writers spread out instead of colliding again. */
const backoffMs = (attempt: number) => Math.random() * Math.min(2 ** attempt, 100);

function parseEntry(line: string): AuditEntry | undefined {
  try {
    const v = JSON.parse(line) as AuditEntry;
    return typeof v === 'object' && v !== null && typeof v.seq === 'number' ? v : undefined;
  } catch {
    return undefined;
  }
}

export function createAuditLog(redis: Redis, opts: AuditLogOptions = {}): AuditLog {
  const key = opts.key ?? DEFAULT_AUDIT_KEY;
  const headKey = `${key}:head`;
  const now = opts.now ?? (() => new Date());
  const maxAttempts = opts.maxAttempts ?? 20;
  const retryForMs = opts.retryForMs ?? 5000;

  async function* pages(from: number): AsyncGenerator<string[]> {
    // Appends only add at the tail, so absolute indexes stay valid while paging.
    for (let start = from; ; start += PAGE) {
      const page = await redis.lrange(key, start, start + PAGE - 1);
      if (page.length) yield page;
      if (page.length < PAGE) return;
    }
  }

  const log: AuditLog = {
    key,
    async append(event: AuditEvent, o: { once?: string } = {}): Promise<AuditEntry> {
      const base = prepare(event);
      const once = o.once ? `${key}:once:${o.once}` : '';
      const start = Date.now();
      // Other writers may win the head many times in a row (many appends at once): go on while
      // they make progress, for maxAttempts tries and at least retryForMs.
      for (let attempt = 1; attempt <= maxAttempts || Date.now() - start < retryForMs; attempt++) {
        const raw = await redis.get(headKey);
        const head = parseHead(raw);
        const unhashed = { ...base, seq: head.seq + 1, ts: now().toISOString(), prev: head.hash };
        const entry: AuditEntry = { ...unhashed, hash: hashEntry(unhashed, opts.hmacKey) };
        const res = await redis.eval(APPEND, 2, key, headKey, raw ?? '', canonicalJson(entry), `${entry.seq} ${entry.hash}`, once);
        if (res === 1) return entry;
        if (res === 2) return undefined as unknown as AuditEntry;
        if (res === -1) {
          throw new MedicError('INTERNAL', `audit log ${key} has entries but ${headKey} is missing: not appending, it would start a second chain. `
            + `Restore ${headKey} as "<seq> <hash>" of the last line (node dist/src/cli/audit.js tail -n 1 shows it)`);
        }
        await sleep(backoffMs(attempt));
      }
      throw new MedicError('INTERNAL', `audit log ${key}: other processes kept appending; gave up after ${Math.round((Date.now() - start) / 1000)} s of tries`, true);
    },

    async recent(q) {
      if (!Number.isInteger(q.limit) || q.limit < 1 || q.limit > 1000) throw new MedicError('BAD_INPUT', `audit limit ${q.limit}: expected 1–1000`);
      const maxScan = q.maxScan ?? 10000;
      const out: AuditEntry[] = [];
      let end = (await redis.llen(key)) - 1;
      let scanned = 0;
      while (end >= 0 && out.length < q.limit && scanned < maxScan) {
        const start = Math.max(0, end - PAGE + 1, end - (maxScan - scanned) + 1);
        const page = await redis.lrange(key, start, end);
        for (let i = page.length - 1; i >= 0 && out.length < q.limit; i--) {
          const e = parseEntry(page[i]);
          if (e && (!q.cluster || e.cluster === q.cluster) && (!q.jobId || e.jobId === q.jobId)) out.push(e);
        }
        scanned += page.length;
        end = start - 1;
      }
      return out.reverse();
    },

    async *entries(fromSeq = 1) {
      for await (const page of pages(Math.max(0, fromSeq - 1))) {
        for (const line of page) {
          const e = parseEntry(line);
          if (e) yield e;
        }
      }
    },

    async *lines() {
      for await (const page of pages(0)) yield* page;
    },

    async head() {
      const raw = await redis.get(headKey);
      return raw ? parseHead(raw) : undefined;
    },

    async verify(vopts = {}) {
      // Head first: lines appended meanwhile then only extend past it (see verifyChain).
      const head = await log.head();
      const anchors = vopts.anchors ? { logKey: key, list: vopts.anchors } : undefined;
      return verifyChain(log.lines(), { hmacKey: opts.hmacKey, expectHead: head, anchors });
    },

    async anchor() {
      // The head, not the list's last line: if the tail was already cut, the anchor keeps the
      // writers' record of it, and verifying against it says so.
      const res = await redis.multi().get(headKey).llen(key).exec();
      const [[headErr, raw], [lenErr, len]] = res as [[Error | null, string | null], [Error | null, number]];
      if (headErr || lenErr) throw headErr ?? lenErr;
      if (!raw && len > 0) {
        throw new MedicError('INTERNAL', `audit log ${key} has entries but ${headKey} is missing: not signing an anchor for it. `
          + 'Run `node dist/src/cli/audit.js verify` and restore the head');
      }
      const head = parseHead(raw);
      return signAnchor({ key, seq: head.seq, head: head.hash, at: now().toISOString() }, opts.hmacKey);
    },
  };
  return log;
}

/**
 * The HMAC key from a file (MEDIC_AUDIT_HMAC_KEY_FILE). Trailing whitespace is dropped so
 * `openssl rand -hex 32 > key` and an editor's final newline give the same key.
 */
export function readAuditHmacKey(path: string): Buffer {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new MedicError('CONFIG_INVALID', `MEDIC_AUDIT_HMAC_KEY_FILE=${path}: ${(e as Error).message}`);
  }
  const key = Buffer.from(text.replace(/\s+$/, ''), 'utf8');
  if (key.length < 16) {
    throw new MedicError('CONFIG_INVALID', `MEDIC_AUDIT_HMAC_KEY_FILE=${path}: key too short (${key.length} bytes); use e.g. \`openssl rand -hex 32\``);
  }
  return key;
}

/**
 * Audit settings every process reads the same way: MEDIC_AUDIT_KEY, MEDIC_AUDIT_HMAC_KEY_FILE,
 * and MEDIC_AUDIT_ANCHOR_FILE (where the bot appends anchors; see createAnchorSink).
 */
export function auditOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): { key: string; hmacKey?: Buffer; anchorFile?: string } {
  const key = env.MEDIC_AUDIT_KEY || DEFAULT_AUDIT_KEY;
  const file = env.MEDIC_AUDIT_HMAC_KEY_FILE;
  return { key, hmacKey: file ? readAuditHmacKey(file) : undefined, anchorFile: env.MEDIC_AUDIT_ANCHOR_FILE || undefined };
}

// ---------------------------------------------------------------- the /etcd audit report

/** Rows in the /etcd audit table: the newest events, enough for one incident's job. */
export const AUDIT_REPORT_ROWS = 40;
const DETAIL_CHARS = 120;

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '') || typeof v === 'number' ? String(v) : undefined;

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function duration(ms: unknown): string | undefined {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return undefined;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60000)} min`;
}

function stepDetail(d: Record<string, unknown>): string[] {
  const name = str(d.step) ?? str(d.action) ?? str(d.name) ?? 'step';
  const pos = typeof d.index === 'number' ? `${d.index}${typeof d.total === 'number' ? `/${d.total}` : ''} ` : '';
  const exit = str(d.exitCode) ?? str(d.exit);
  return [
    `${pos}${name}`,
    str(d.node) ? `on ${d.node}` : '',
    exit !== undefined ? `exit ${exit}` : '',
    duration(d.durationMs) ?? '',
    str(d.error) ?? str(d.reason) ?? '',
  ];
}

/** A short summary of one event for the DETAIL column (and `audit tail`). */
export function describeAuditEvent(e: AuditEntry): string {
  const d = e.data ?? {};
  const [family, what] = [e.type.slice(0, e.type.indexOf('.')), e.type.slice(e.type.indexOf('.') + 1)];
  let parts: string[];
  if (family === 'step') parts = stepDetail(d);
  else if (family === 'approval') {
    parts = what === 'expired'
      ? ['approval window expired']
      : [`${what} by ${str(d.approver) ?? e.actor ?? 'unknown'}`, str(d.reason) ?? '', str(d.approvals) ? `(${d.approvals})` : ''];
  } else if (e.type === 'job.requested') parts = [str(d.command) ?? str(d.text) ?? ''];
  else if (e.type === 'job.planned' || e.type === 'job.replanned') {
    const n = Array.isArray(d.steps) ? d.steps.length : d.steps;
    parts = [typeof n === 'number' ? `${n} step${n === 1 ? '' : 's'}` : '', str(d.planHash) ? `plan ${String(d.planHash).slice(0, 12)}` : '', str(d.reason) ?? ''];
  } else if (e.type === 'job.resumed') {
    parts = [str(d.fromStep) ? `from step ${d.fromStep}${typeof d.total === 'number' ? `/${d.total}` : ''}` : '', str(d.worker) ? `on ${d.worker}` : '', str(d.reason) ?? ''];
  } else if (family === 'job') {
    parts = [str(d.verdict) ?? '', duration(d.durationMs) ?? '', str(d.error) ?? str(d.reason) ?? str(d.holder) ?? ''];
  } else parts = [];
  let text = parts.filter(Boolean).join(', ');
  if (!text) text = genericDetail(d);
  return oneLine(text, DETAIL_CHARS) || '-';
}

/** Unknown event types still show something: their scalar fields as k=v. */
function genericDetail(d: Record<string, unknown>): string {
  return Object.entries(d).filter(([, v]) => str(v) !== undefined || typeof v === 'boolean')
    .map(([k, v]) => `${k}=${String(v)}`).join(' ');
}

function timeCells(entries: AuditEntry[]): string[] {
  // HH:MM:SS UTC; the date too when the rows span more than one day.
  const days = new Set(entries.map((e) => e.ts.slice(0, 10)));
  return entries.map((e) => (days.size > 1 ? `${e.ts.slice(5, 10)} ${e.ts.slice(11, 19)}` : e.ts.slice(11, 19)));
}

/**
 * Pure: the report `/etcd audit <cluster>` shows. `entries` oldest first (as `recent`
 * returns them); only the newest AUDIT_REPORT_ROWS are shown. `head` is the chain's head
 * when known (it may be another cluster's entry); else the newest entry shown stands in.
 */
export function formatAuditReport(entries: AuditEntry[], cluster: string, opts: { head?: AuditHead } = {}): Report {
  const shown = entries.slice(-AUDIT_REPORT_ROWS);
  const times = timeCells(shown);
  const head = opts.head ?? (entries.length ? { seq: entries[entries.length - 1].seq, hash: entries[entries.length - 1].hash } : undefined);
  const notes: string[] = [];
  if (entries.length > shown.length) notes.push(`${entries.length - shown.length} older events not shown`);
  notes.push(head
    ? `chain head: seq ${head.seq}, hash ${head.hash.slice(0, 12)}; check the whole chain with \`node dist/src/cli/audit.js verify\` on a bot host`
    : 'the audit log is empty');
  return {
    title: `etcd audit — ${cluster}`,
    verdict: {
      level: 'info',
      text: shown.length ? `last ${shown.length} event${shown.length === 1 ? '' : 's'} for ${cluster}, oldest first (times UTC)` : `no audit events recorded for ${cluster}`,
    },
    tables: shown.length ? [{
      title: 'Recent events',
      columns: ['TIME (UTC)', 'JOB', 'EVENT', 'ACTOR', 'DETAIL'],
      rows: shown.map((e, i) => [times[i], e.jobId ?? '-', e.type, e.actor ?? '-', describeAuditEvent(e)]),
    }] : [],
    notes,
  };
}
