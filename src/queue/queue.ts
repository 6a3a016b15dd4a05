import { Job, Queue, QueueEvents } from 'bullmq';
import IORedis, { Redis, RedisOptions } from 'ioredis';
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

export interface JobQueueOptions {
  redisUrl: string;
  /** @defaultValue DEFAULT_QUEUE */
  name?: string;
  /** How long adding a job may take before the user is told Redis is unreachable. @defaultValue 2000 */
  addTimeoutMs?: number;
}

export interface JobQueue extends JobSink {
  /** The BullMQ queue in use now (replaced after a connection that would not recover). */
  readonly queue: Queue;
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
            attempts: 1,
            removeOnComplete: { age: 7 * 24 * 3600, count: 1000 },
            removeOnFail: { age: 30 * 24 * 3600 },
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
