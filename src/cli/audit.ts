/**
 * The audit trail from a shell, for post-mortems and auditors:
 *
 *   node dist/src/cli/audit.js verify [--file log.jsonl] [--anchor "<line>"]… [--anchor-file anchors.jsonl]
 *   node dist/src/cli/audit.js anchor [--anchor-file anchors.jsonl]
 *   node dist/src/cli/audit.js export --out log.jsonl
 *   node dist/src/cli/audit.js tail [--cluster c] [--job id] [-n 20]
 *
 * Reads Redis at REDIS_URL (the one the bot uses), key MEDIC_AUDIT_KEY, HMAC key from
 * MEDIC_AUDIT_HMAC_KEY_FILE. Exit status: 0 chain verifies (or the command worked),
 * 1 chain broken or an anchor not held (each problem printed), 2 usage, configuration or
 * connection error.
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream, renameSync, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import IORedis, { Redis } from 'ioredis';
import { renderTable } from '../adapters/console/render-text';
import { auditOptionsFromEnv, AuditLog, createAuditLog, describeAuditEvent } from '../audit/audit-log';
import { AnchorProblem, createAnchorSink, formatAnchor, parseAnchor, PlacedAnchor, readAnchorFile } from '../audit/anchor';
import { verifyChain, VerifyResult } from '../audit/verify';
import { describeError, isMedicError, MedicError } from '../engine/errors';
import { safeRedisUrl } from '../queue/queue';

export const USAGE = `usage: node dist/src/cli/audit.js <command> [options]
  verify [--file log.jsonl]              check the hash chain (Redis, or an exported file)
    [--anchor "<line>"]…                 …and that it still holds this anchor (the line the bot posted to chat)
    [--anchor-file anchors.jsonl]        …and every anchor in the bot's anchor file (MEDIC_AUDIT_ANCHOR_FILE)
  anchor [--anchor-file anchors.jsonl]   sign the current head: print the anchor line (and append it to the file)
  export --out log.jsonl                 copy every line verbatim, to keep outside Redis
  tail [--cluster c] [--job id] [-n 20]  the newest entries
  --key k                                the Redis list (overrides MEDIC_AUDIT_KEY)
environment: REDIS_URL (default redis://127.0.0.1:6379), MEDIC_AUDIT_KEY (default etcd-medic:audit),
  MEDIC_AUDIT_HMAC_KEY_FILE (when the bot writes with an HMAC key)
exit status: 0 ok, 1 chain broken or an anchor not held, 2 usage or connection error`;

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}

const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
/** Bound on reaching Redis: the CLI answers within seconds, never retries forever. */
const CONNECT_TIMEOUT_MS = 3000;

const usageError = (msg: string) => new MedicError('BAD_INPUT', `${msg}\n${USAGE}`);

/** A connection that gives up: two tries, then the caller hears why. */
async function connect(url: string): Promise<Redis> {
  let lastError = '';
  const redis = new IORedis(url, {
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: 1,
    retryStrategy: (times) => (times >= 2 ? null : 200),
    // ioredis waits this long for a socket that never connected to close, keeping the CLI alive.
    disconnectTimeout: 200,
  });
  redis.on('error', (e) => { lastError = describeError(e); });
  try {
    await redis.connect();
    return redis;
  } catch (e) {
    redis.disconnect();
    throw new MedicError('QUEUE_UNAVAILABLE', `Redis at ${safeRedisUrl(url)} unreachable: ${lastError || describeError(e)}. Check REDIS_URL and that Redis is up`, true, { cause: e });
  }
}

async function* fileLines(path: string): AsyncGenerator<string> {
  const stream = createReadStream(path, 'utf8');
  // Open errors (missing file) would otherwise surface as an unhandled stream error.
  await Promise.race([once(stream, 'open'), once(stream, 'error').then(([e]) => { throw e; })]).catch((e) => {
    throw new MedicError('BAD_INPUT', `cannot read ${path}: ${describeError(e)}`);
  });
  yield* createInterface({ input: stream, crlfDelay: Infinity });
}

function printVerdict(res: VerifyResult, where: string, hmac: boolean, io: CliIo): number {
  const anchorProblems = res.anchors?.problems ?? [];
  if (res.ok) {
    io.out(res.count
      ? `audit chain ok: ${res.count} entries in ${where}, head seq ${res.lastSeq} hash ${res.lastHash}`
      : `audit chain ok: ${where} is empty (is MEDIC_AUDIT_KEY / --file the right one?)`);
    const last = res.anchors?.last;
    if (last) io.out(`anchors ok: ${res.anchors!.checked} checked, the last is #${last.seq} of ${last.at} (${last.alg})`);
    return 0;
  }
  const total = res.problems.length + anchorProblems.length;
  io.out(`audit chain BROKEN: ${total} problem${total === 1 ? '' : 's'} in ${res.count} lines of ${where}`);
  for (const p of res.problems) io.out(`  line ${p.line}${p.seq !== undefined ? ` (seq ${p.seq})` : ''}: ${p.reason}`);
  for (const p of anchorProblems) io.out(`  ${p.source}: ${p.reason}`);
  if (!hmac && res.count > 0 && res.problems.length >= res.count) {
    io.out('  every line fails: if the bot writes with an HMAC key, set MEDIC_AUDIT_HMAC_KEY_FILE to the same key');
  }
  return 1;
}

async function exportLines(log: AuditLog, out: string, io: CliIo): Promise<number> {
  // Written aside and renamed, so a failed export never leaves a truncated file that looks complete.
  const tmp = `${out}.partial-${process.pid}`;
  const file = createWriteStream(tmp, { flags: 'wx' });
  let n = 0;
  try {
    await once(file, 'open');
    for await (const line of log.lines()) {
      n += 1;
      if (!file.write(`${line}\n`)) await once(file, 'drain');
    }
    file.end();
    await once(file, 'finish');
    renameSync(tmp, out);
  } catch (e) {
    file.destroy();
    rmSync(tmp, { force: true });
    throw new MedicError('BAD_INPUT', `export to ${out} failed: ${describeError(e)}`, false, { cause: e });
  }
  const head = await log.head();
  io.out(`exported ${n} lines of ${log.key} to ${out}${head ? ` (head at export: seq ${head.seq} hash ${head.hash})` : ''}`);
  return 0;
}

async function tail(log: AuditLog, q: { cluster?: string; jobId?: string; limit: number }, io: CliIo): Promise<number> {
  const entries = await log.recent(q);
  if (!entries.length) {
    io.out(`no audit entries${q.cluster ? ` for ${q.cluster}` : ''}${q.jobId ? ` of job ${q.jobId}` : ''} in ${log.key}`);
    return 0;
  }
  const rows = entries.map((e) => [String(e.seq), e.ts, e.cluster, e.jobId ?? '-', e.type, e.actor ?? '-', describeAuditEvent(e)]);
  for (const line of renderTable({ columns: ['SEQ', 'TIME (UTC)', 'CLUSTER', 'JOB', 'EVENT', 'ACTOR', 'DETAIL'], rows })) io.out(line);
  return 0;
}

/** The anchors `verify` was given, and problems with anchor-file lines that aren't anchors. */
interface GivenAnchors {
  list: PlacedAnchor[];
  problems: AnchorProblem[];
}

async function givenAnchors(texts: string[] | undefined, file: string | undefined): Promise<GivenAnchors | undefined> {
  if (!texts?.length && !file) return undefined;
  const list: PlacedAnchor[] = (texts ?? []).map((text, i) => {
    const anchor = parseAnchor(text);
    if (!anchor) {
      throw usageError(`--anchor ${JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text)}: no audit anchor in it; `
        + 'paste the whole "audit anchor #… head … (… sig …)" line the bot posted, or a line of the anchor file');
    }
    return { anchor, source: texts!.length > 1 ? `--anchor ${i + 1}` : '--anchor' };
  });
  const problems: AnchorProblem[] = [];
  if (file) {
    const read = await readAnchorFile(file);
    // An empty file proves nothing either way: say so rather than report "ok".
    if (!read.anchors.length && !read.problems.length) throw new MedicError('BAD_INPUT', `anchor file ${file} has no anchors: nothing to check the log against`);
    list.push(...read.anchors);
    problems.push(...read.problems);
  }
  return { list, problems };
}

/** Folds anchor-file lines that aren't anchors into the verdict: someone edited the file, or a write was torn. */
function withFileProblems(res: VerifyResult, given: GivenAnchors | undefined): VerifyResult {
  if (!given?.problems.length) return res;
  const anchors = res.anchors ?? { checked: 0, problems: [] };
  return { ...res, ok: false, anchors: { ...anchors, problems: [...given.problems, ...anchors.problems] } };
}

async function signAnchorNow(log: AuditLog, file: string | undefined, io: CliIo): Promise<number> {
  const anchor = await log.anchor();
  io.out(formatAnchor(anchor));
  if (file) {
    await createAnchorSink(file).append(anchor);
    io.out(`appended to ${file}`);
  }
  return 0;
}

function parse(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        file: { type: 'string' },
        out: { type: 'string' },
        anchor: { type: 'string', multiple: true },
        'anchor-file': { type: 'string' },
        cluster: { type: 'string' },
        job: { type: 'string' },
        key: { type: 'string' },
        n: { type: 'string', short: 'n' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    throw usageError(describeError(e));
  }
}

/** Runs one command; resolves with the exit status. Exported for tests that drive it in-process. */
export async function runAuditCli(argv: string[], env: NodeJS.ProcessEnv = process.env, io: CliIo = defaultIo): Promise<number> {
  let redis: Redis | undefined;
  try {
    const { values, positionals } = parse(argv);
    const [command, ...extra] = positionals;
    if (values.help) { io.out(USAGE); return 0; }
    if (!command || extra.length) throw usageError(command ? `unexpected arguments: ${extra.join(' ')}` : 'no command given');
    if (!['verify', 'export', 'tail', 'anchor'].includes(command)) throw usageError(`unknown command "${command}"`);
    if (values.anchor && command !== 'verify') throw usageError('--anchor goes with verify');
    const settings = auditOptionsFromEnv(env);
    const hmacKey = settings.hmacKey;
    const key = values.key || settings.key;
    const anchors = command === 'verify' ? await givenAnchors(values.anchor, values['anchor-file']) : undefined;

    if (command === 'verify' && values.file) {
      const res = await verifyChain(fileLines(values.file), { hmacKey, anchors: anchors && { logKey: key, list: anchors.list, copy: true } });
      return printVerdict(withFileProblems(res, anchors), values.file, !!hmacKey, io);
    }
    if (command === 'export' && !values.out) throw usageError('export needs --out <file>');
    const limit = values.n === undefined ? 20 : Number(values.n);
    if (command === 'tail' && (!Number.isInteger(limit) || limit < 1 || limit > 1000)) throw usageError(`-n ${values.n}: a number from 1 to 1000`);

    const url = env.REDIS_URL || DEFAULT_REDIS_URL;
    redis = await connect(url);
    const log = createAuditLog(redis, { key, hmacKey });
    if (command === 'verify') {
      const res = await log.verify({ anchors: anchors?.list });
      return printVerdict(withFileProblems(res, anchors), `${log.key} at ${safeRedisUrl(url)}`, !!hmacKey, io);
    }
    if (command === 'anchor') return await signAnchorNow(log, values['anchor-file'], io);
    if (command === 'export') return await exportLines(log, values.out!, io);
    return await tail(log, { cluster: values.cluster, jobId: values.job, limit }, io);
  } catch (e) {
    io.err(isMedicError(e) ? e.message : `audit: ${describeError(e)}`);
    return 2;
  } finally {
    redis?.disconnect();
  }
}

const defaultIo: CliIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

if (require.main === module) {
  void runAuditCli(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
