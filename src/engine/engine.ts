import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { MedicConfig } from '../config/schema';
import type { CommandDef } from './command';
import { describeError, ErrorCode, isMedicError, MedicError } from './errors';
import { parseInvocation } from './parse';
import { checkRequest, readableClusters } from './policy';
import type { Decision, DecisionResult, EngineApi, Invocation, JobRequest, Origin, Prepared, Submitted } from './types';
import type { MedicMetrics } from '../metrics/metrics';

/** Whatever carries jobs to workers (BullMQ in production). */
export interface JobSink {
  /** jobId: a custom id, so adding the same job twice queues it once. */
  add(job: JobRequest, opts?: { jobId?: string }): Promise<string>;
}

/** Whether one more request of a user may be queued now. */
export type LimitVerdict =
  | { ok: true }
  /** `sent`: requests in the window counting this one (refused ones too); `retryInMs`: until one slot frees. */
  | { ok: false; sent: number; limit: number; windowMs: number; retryInMs: number };

/** Counts requests per user, shared by every web process. */
export interface RequestLimiter {
  /** Counts the request when it may go ahead. Never throws: a limiter that can't count lets it through. */
  take(origin: Origin): Promise<LimitVerdict>;
}

export interface RequestLimitOptions {
  /** Requests one user may have queued within `windowMs`. @defaultValue 20 */
  limit?: number;
  /** The sliding window. @defaultValue 60000 */
  windowMs?: number;
  /**
   * Users never limited. The scheduler's snapshots are the bot's own work; console users
   * are limited like Slack users (a script piped into the console floods Redis the same way).
   * @defaultValue ['console:scheduler']
   */
  exempt?: readonly string[];
  /** Key prefix; the processes of one bot must agree (the queue name does). @defaultValue 'etcd-medic' */
  prefix?: string;
  /**
   * How long to wait for Redis before letting the request through: if Redis is down the
   * queue says so ("nothing was queued"), and a slow counter must not block a repair.
   * @defaultValue 1000
   */
  timeoutMs?: number;
  /** Clock in ms. @defaultValue Redis's own TIME, the same for every process */
  now?: () => number;
}

/** The code of a request refused by the limit. */
export const RATE_LIMITED: ErrorCode = 'RATE_LIMITED';

/** Refused requests remembered per user (only for the count in the message). */
const REFUSED_KEPT = 1000;

// Sliding window: KEYS[1] the user's accepted requests, KEYS[2] refused ones (scores: ms).
// Only accepted requests use up the limit; refused ones are counted for the message.
const TAKE = `
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1}
end
redis.call('ZADD', KEYS[2], now, ARGV[4])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -1 - tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[2], window)
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, n + redis.call('ZCARD', KEYS[2]), math.max(0, tonumber(oldest[2]) + window - now)}`;

/** The per-user request limit, counted in Redis (every web process shares it). */
export function createRequestLimiter(redis: Redis, opts: RequestLimitOptions = {}): RequestLimiter {
  const limit = opts.limit ?? 20;
  const windowMs = opts.windowMs ?? 60000;
  const exempt = new Set(opts.exempt ?? ['console:scheduler']);
  const prefix = opts.prefix ?? 'etcd-medic';
  const timeoutMs = opts.timeoutMs ?? 1000;
  return {
    async take(origin) {
      // Not connected: don't wait for it; the queue gives the "Redis is down" answer.
      if (exempt.has(origin.user) || redis.status !== 'ready') return { ok: true };
      const key = `${prefix}:rate:${origin.adapter}:${origin.user}`;
      let timer: NodeJS.Timeout | undefined;
      try {
        const r = await Promise.race([
          redis.eval(TAKE, 2, key, `${key}:refused`, opts.now ? String(opts.now()) : '', windowMs, limit, randomUUID(), REFUSED_KEPT) as Promise<number[]>,
          new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('timeout')), timeoutMs); }),
        ]);
        if (r[0] === 1) return { ok: true };
        return { ok: false, sent: Number(r[1]), limit, windowMs, retryInMs: Number(r[2]) };
      } catch {
        return { ok: true };
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** "the last minute", "the last 30 s", "the last 5 minutes". */
function windowText(ms: number): string {
  if (ms === 60000) return 'the last minute';
  if (ms % 60000 === 0) return `the last ${ms / 60000} minutes`;
  return `the last ${Math.round(ms / 1000)} s`;
}

export function rateLimitMessage(v: Extract<LimitVerdict, { ok: false }>): string {
  return `you sent ${v.sent} requests in ${windowText(v.windowMs)}; the limit is ${v.limit}. `
    + `Nothing was queued; try again in ${Math.max(1, Math.ceil(v.retryInMs / 1000))} s`;
}

export interface EngineOptions {
  config: MedicConfig;
  commands: readonly CommandDef[];
  queue: JobSink;
  /** @defaultValue () => new Date() */
  now?: () => Date;
  /** Approve/reject/cancel (the workflow); without it those commands say Redis is needed. */
  decide?: (d: Decision) => Promise<DecisionResult>;
  /**
   * Per-user limit on queued requests (createRequestLimiter). Decisions are never limited:
   * a cancel must always get through. @defaultValue no limit
   */
  limiter?: RequestLimiter;
  /** Where requests are counted by command and outcome. @defaultValue not counted */
  metrics?: MedicMetrics;
}

/**
 * The one entry point every adapter uses (and tests use without Slack): validate,
 * answer what configuration alone can answer, queue the rest.
 */
export class Engine implements EngineApi {
  constructor(private readonly opts: EngineOptions) {}

  prepare(inv: Invocation): Prepared {
    const prepared = this.prepareUncounted(inv);
    const m = this.opts.metrics;
    // Jobs are counted when queued (or refused by the limit), decisions when decided.
    if (m && prepared.kind === 'reply') m.request(this.commandOf(inv), 'replied');
    if (m && prepared.kind === 'rejected') m.request(this.commandOf(inv), 'refused');
    return prepared;
  }

  /** The command a request names, when it names one of ours (a bounded label), else '-'. */
  private commandOf(inv: Invocation): string {
    const word = inv.text.trim().split(/\s+/)[0] ?? '';
    return this.opts.commands.some((c) => c.id === word) ? word : '-';
  }

  private prepareUncounted(inv: Invocation): Prepared {
    try {
      const { command, args, cluster } = parseInvocation(inv.text, this.opts.commands, this.opts.config);
      if (command.reply) {
        const report = command.reply({ config: this.opts.config, commands: this.opts.commands, args, origin: inv.origin });
        return { kind: 'reply', report, visibility: 'ephemeral' };
      }
      if (command.decision) {
        return { kind: 'decision', decision: { action: command.decision, planId: args.job, origin: inv.origin } };
      }
      if (command.fleet) {
        const { clusters, hidden } = readableClusters(this.opts.config.clusters, inv.origin);
        if (!clusters.length) {
          throw new MedicError('CHANNEL_NOT_ALLOWED', `none of the ${hidden} configured cluster${hidden === 1 ? '' : 's'} may be read by you from this channel (${inv.origin.channel}): ask in a channel listed under a cluster's channels, or see /etcd clusters`);
        }
        const job: JobRequest = { command: command.id, args, origin: inv.origin, requestedAt: (this.opts.now ?? (() => new Date()))().toISOString(), phase: 'run' };
        return { kind: 'job', job, summary: `status of ${clusters.length} cluster${clusters.length === 1 ? '' : 's'}` };
      }
      if (!cluster) throw new Error(`command ${command.id} has no cluster`);
      checkRequest(cluster, command.risk, inv.origin);
      const job: JobRequest = {
        command: command.id,
        args,
        cluster: cluster.name,
        origin: inv.origin,
        requestedAt: (this.opts.now ?? (() => new Date()))().toISOString(),
        phase: command.plan ? 'plan' : 'run',
      };
      return { kind: 'job', job, summary: `${command.id} ${Object.values(args).join(' ')}` };
    } catch (e) {
      if (isMedicError(e)) return { kind: 'rejected', code: e.code, message: e.message };
      return { kind: 'rejected', code: 'INTERNAL', message: `internal error: ${describeError(e)}` };
    }
  }

  /** Throws MedicError('RATE_LIMITED') when the requester is over the limit; nothing is queued then. */
  async enqueue(job: JobRequest): Promise<string> {
    // Executions are the workflow's, queued after approval: never held back here.
    const count = (outcome: string) => { if (job.phase !== 'execute') this.opts.metrics?.request(job.command, outcome); };
    if (this.opts.limiter && job.phase !== 'execute') {
      const v = await this.opts.limiter.take(job.origin).catch((e: unknown) => { count('queue-unavailable'); throw e; });
      if (!v.ok) {
        count('rate-limited');
        throw new MedicError(RATE_LIMITED, rateLimitMessage(v), true);
      }
    }
    try {
      const id = await this.opts.queue.add(job);
      count('queued');
      return id;
    } catch (e) {
      count('queue-unavailable');
      if (isMedicError(e)) throw e;
      throw new MedicError('QUEUE_UNAVAILABLE', `could not queue ${job.command}: ${describeError(e)}`, true, { cause: e });
    }
  }

  async decide(d: Decision): Promise<DecisionResult> {
    if (!this.opts.decide) return { ok: false, text: 'this process can\'t record decisions (no Redis connection for approvals)' };
    try {
      const r = await this.opts.decide(d);
      this.opts.metrics?.request(d.action, r.ok ? 'decided' : 'refused');
      return r;
    } catch (e) {
      this.opts.metrics?.request(d.action, 'error');
      return { ok: false, text: `could not record your ${d.action} of plan ${d.planId}: ${describeError(e)}. Nothing changed; try again` };
    }
  }

  async submit(inv: Invocation): Promise<Submitted> {
    const prepared = this.prepare(inv);
    if (prepared.kind === 'decision') return { kind: 'decided', result: await this.decide(prepared.decision) };
    if (prepared.kind !== 'job') return prepared;
    try {
      const jobId = await this.enqueue(prepared.job);
      return { kind: 'queued', jobId, job: prepared.job, summary: prepared.summary };
    } catch (e) {
      // Over the limit is an answer about the request, like bad input: told privately.
      if (isMedicError(e) && e.code === RATE_LIMITED) return { kind: 'rejected', code: e.code, message: e.message };
      throw e;
    }
  }
}
