import { Job, Queue, QueueEvents } from 'bullmq';
import IORedis, { Redis, RedisOptions } from 'ioredis';
import type { JobsView } from '../engine/command';
import type { JobSink } from '../engine/engine';
import { describeError, MedicError } from '../engine/errors';
import type { Report } from '../engine/report';
import type { JobRequest } from '../engine/types';

/** @defaultValue 'etcd-medic' */
export const DEFAULT_QUEUE = 'etcd-medic';

/** Redis URL with any password hidden, for messages. */
export function safeRedisUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}

/** A connection for BullMQ workers and queue events: blocking commands, no per-request retry cap. */
export function workerConnection(url: string, extra: RedisOptions = {}): Redis {
  return new IORedis(url, { maxRetriesPerRequest: null, ...extra });
}

/** How many finished jobs BullMQ keeps, and for how long (seconds): whichever is less. */
export interface KeepFinished { count: number; age: number }

/** Completed jobs keep their report for the console and /etcd jobs. @defaultValue { count: 1000, age: 7 days } */
export const DEFAULT_KEEP_COMPLETED: KeepFinished = { count: 1000, age: 7 * 24 * 3600 };
/**
 * Failed jobs, for post-mortems. Capped by count too: during an incident jobs fail in
 * bursts, and Redis runs with noeviction, so a full Redis would stop the bot itself.
 * @defaultValue { count: 1000, age: 30 days }
 */
export const DEFAULT_KEEP_FAILED: KeepFinished = { count: 1000, age: 30 * 24 * 3600 };

/**
 * BullMQ priority of each phase. BullMQ serves jobs without a priority (0) before every
 * prioritized one, and lower numbers first among those: approved executions go first,
 * then plans (someone waits to approve them), then read commands. A burst of status
 * requests during an incident must not hold back the repair that was just approved.
 */
export const PHASE_PRIORITY: Readonly<Record<NonNullable<JobRequest['phase']>, number>> = { execute: 0, plan: 1, run: 2 };

/** The options every job gets (the snapshot scheduler's template should use them too). */
export function jobOptions(phase: JobRequest['phase'], keep: { completed?: KeepFinished; failed?: KeepFinished } = {}) {
  return {
    attempts: 1,
    priority: PHASE_PRIORITY[phase ?? 'run'],
    removeOnComplete: keep.completed ?? DEFAULT_KEEP_COMPLETED,
    removeOnFail: keep.failed ?? DEFAULT_KEEP_FAILED,
  };
}

export interface JobQueueOptions {
  redisUrl: string;
  /** @defaultValue DEFAULT_QUEUE */
  name?: string;
  /** How long adding a job may take before the user is told Redis is unreachable. @defaultValue 2000 */
  addTimeoutMs?: number;
  /** @defaultValue DEFAULT_KEEP_COMPLETED */
  keepCompleted?: KeepFinished;
  /** @defaultValue DEFAULT_KEEP_FAILED */
  keepFailed?: KeepFinished;
}

/** One cluster's unfinished jobs, as /etcd jobs shows them: bounded, and saying what it left out. */
export interface ClusterJobs {
  /** At most `limit`: active first, then in the order workers will take them, then delayed. */
  jobs: JobsView['queued'];
  /** Jobs of this cluster found beyond `limit`. */
  more: number;
  /** Unfinished jobs (of any cluster) beyond the scan bound, not looked at. */
  unscanned: number;
}

/** States /etcd jobs lists, in the order shown (BullMQ's names). */
const UNFINISHED = ['active', 'wait', 'prioritized', 'delayed'] as const;

export interface JobQueue extends JobSink {
  /** The BullMQ queue in use now (replaced after a connection that would not recover). */
  readonly queue: Queue;
  /**
   * The cluster's unfinished jobs, at most `limit` of them. Jobs carry their cluster only in
   * their data, so this reads jobs page by page, at most `scan` in all (@defaultValue 1000),
   * instead of the whole queue.
   */
  jobsForCluster(cluster: string, limit: number, opts?: { scan?: number }): Promise<ClusterJobs>;
  /** Wait for a job's report (console adapter). Rejects after timeoutMs. */
  waitForReport(jobId: string, timeoutMs: number, onProgress?: (text: string) => void): Promise<Report>;
  close(): Promise<void>;
}

/**
 * The producer side. Fails fast when Redis is down instead of buffering commands
 * offline: the requester must hear "not queued" within Slack's window, not silence.
 */
export function createJobQueue(opts: JobQueueOptions): JobQueue {
  const name = opts.name ?? DEFAULT_QUEUE;
  const addTimeoutMs = opts.addTimeoutMs ?? 2000;
  let lastError = 'not connected yet';

  /** A producer connection and its queue. Replaced whole when it stops recovering by itself. */
  const open = () => {
    const connection = new IORedis(opts.redisUrl, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: addTimeoutMs,
      // Keep trying in the background so the bot recovers by itself when Redis returns.
      retryStrategy: (times) => Math.min(200 * times, 2000),
    });
    connection.on('error', (e) => { lastError = describeError(e); });
    const queue = new Queue(name, { connection });
    queue.on('error', (e) => { lastError = describeError(e); });
    return { connection, queue };
  };
  const discard = (p: ReturnType<typeof open>) => {
    void p.queue.close().catch(() => undefined).finally(() => p.connection.disconnect());
  };
  let producer = open();
  let events: QueueEvents | undefined;
  let eventsConnection: Redis | undefined;

  const unavailable = (why: string) => new MedicError(
    'QUEUE_UNAVAILABLE',
    `the job queue (Redis at ${safeRedisUrl(opts.redisUrl)}) is unreachable: ${why}. Nothing was queued and nothing ran. `
      + 'Check that Redis is up (REDIS_URL), then try again; /etcd help and /etcd clusters still work without it.',
    true,
  );

  async function ready(): Promise<void> {
    const { connection } = producer;
    if (connection.status === 'ready') return;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        cleanup();
        // ioredis sometimes stays down after Redis comes back (seen with BullMQ's
        // commands in flight when it died): start the next request on a fresh connection.
        if (producer.connection === connection) {
          discard(producer);
          producer = open();
        }
        reject(unavailable(lastError));
      }, addTimeoutMs);
      const onReady = () => { cleanup(); resolve(); };
      const cleanup = () => { clearTimeout(t); connection.off('ready', onReady); };
      connection.on('ready', onReady);
    });
  }

  return {
    get queue() { return producer.queue; },
    async add(job: JobRequest, addOpts: { jobId?: string } = {}): Promise<string> {
      await ready();
      let timer: NodeJS.Timeout | undefined;
      try {
        const added = await Promise.race([
          producer.queue.add(job.command, job, {
            jobId: addOpts.jobId,
            ...jobOptions(job.phase, { completed: opts.keepCompleted, failed: opts.keepFailed }),
          }),
          new Promise<never>((_, reject) => { timer = setTimeout(() => reject(unavailable(`no answer within ${addTimeoutMs} ms`)), addTimeoutMs); }),
        ]);
        if (!added.id) throw unavailable('Redis gave no job id');
        return added.id;
      } catch (e) {
        if (e instanceof MedicError) throw e;
        throw unavailable(describeError(e));
      } finally {
        clearTimeout(timer);
      }
    },
    async jobsForCluster(cluster: string, limit: number, scanOpts: { scan?: number } = {}): Promise<ClusterJobs> {
      const queue = producer.queue;
      const scan = scanOpts.scan ?? 1000;
      const page = Math.min(100, scan);
      const seen = new Set<string>();
      const jobs: ClusterJobs['jobs'] = [];
      let more = 0;
      let scanned = 0;
      const counts = await queue.getJobCounts(...UNFINISHED);
      const total = UNFINISHED.reduce((n, s) => n + (counts[s] ?? 0), 0);
      for (const state of UNFINISHED) {
        for (let start = 0; start < (counts[state] ?? 0) && scanned < scan; start += page) {
          const end = start + Math.min(page, scan - scanned) - 1;
          // asc: the wait list and the prioritized set in the order workers take them.
          const batch = await queue.getJobs([state], start, end, true);
          scanned += batch.length;
          for (const j of batch) {
            if (!j?.id || seen.has(j.id) || j.data?.cluster !== cluster) continue;
            seen.add(j.id);
            if (jobs.length >= limit) { more++; continue; }
            jobs.push({
              id: j.id, command: j.data.command, phase: j.data.phase ?? 'run',
              state: state === 'active' ? 'active' : state === 'delayed' ? 'delayed' : 'waiting',
              requester: j.data.origin?.user ?? '?', at: new Date(j.timestamp).toISOString(),
            });
          }
        }
      }
      return { jobs, more, unscanned: Math.max(0, total - scanned) };
    },
    async waitForReport(jobId: string, timeoutMs: number, onProgress?: (text: string) => void): Promise<Report> {
      const listener = (e: { jobId: string; data: unknown }) => {
        const text = (e.data as { text?: unknown } | undefined)?.text;
        if (e.jobId === jobId && typeof text === 'string') onProgress?.(text);
      };
      // Every step shares one deadline: a Redis blip must not leave the prompt hanging.
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new MedicError('TIMEOUT', `job ${jobId}: no result within ${Math.round(timeoutMs / 1000)} s; it may still run (see the worker's logs)`)), timeoutMs);
      });
      try {
        return await Promise.race([deadline, (async () => {
          if (!events) {
            eventsConnection = workerConnection(opts.redisUrl);
            events = new QueueEvents(name, { connection: eventsConnection });
          }
          await events.waitUntilReady();
          if (onProgress) events.on('progress', listener);
          const job = await Job.fromId(producer.queue, jobId);
          if (!job) throw new MedicError('INTERNAL', `job ${jobId} is gone from the queue`);
          return (await job.waitUntilFinished(events, timeoutMs)) as Report;
        })()]);
      } finally {
        clearTimeout(timer);
        events?.off('progress', listener);
      }
    },
    async close(): Promise<void> {
      await events?.close();
      eventsConnection?.disconnect();
      await producer.queue.close();
      producer.connection.disconnect();
    },
  };
}
