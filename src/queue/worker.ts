import { WaitingError, Worker } from 'bullmq';
import type { JobRunner } from '../engine/runner';
import type { Workflow } from '../engine/workflow';
import type { Notifier, JobRequest, Origin } from '../engine/types';
import { errorReport, type Report } from '../engine/report';
import { describeError } from '../engine/errors';
import { DEFAULT_QUEUE, workerConnection } from './queue';
import type { MedicMetrics } from '../metrics/metrics';

export interface JobWorkerOptions {
  redisUrl: string;
  runner: JobRunner;
  /** Plans and executions of mutating commands. */
  workflow?: Workflow;
  /** Delivers reports per adapter; the console adapter reads job results itself. */
  notifiers: Partial<Record<Origin['adapter'], Notifier>>;
  /** @defaultValue DEFAULT_QUEUE */
  name?: string;
  /** @defaultValue 4 */
  concurrency?: number;
  /**
   * Every worker of a queue must use the same lock and stalled-check timing: the stalled
   * check is gated queue-wide by whichever worker set it.
   * @defaultValue 30000
   */
  lockDurationMs?: number;
  log?: (msg: string, extra?: Record<string, unknown>) => void;
  /** Where read-only jobs are counted by their verdict's level (plans count themselves). @defaultValue not counted */
  metrics?: MedicMetrics;
}

export interface JobWorker {
  worker: Worker<JobRequest, Report>;
  /** Waits for running jobs, then closes the worker and its Redis connection. */
  close(): Promise<void>;
}

export function createJobWorker(opts: JobWorkerOptions): JobWorker {
  const lockDuration = opts.lockDurationMs ?? 30000;
  // BullMQ leaves a connection it was handed open on close(): we own it, we close it.
  const connection = workerConnection(opts.redisUrl);
  const worker = new Worker<JobRequest, Report>(
    opts.name ?? DEFAULT_QUEUE,
    async (job, token) => {
      const jobId = job.id ?? '?';
      const phase = job.data.phase ?? 'run';
      if (phase !== 'run') {
        if (!opts.workflow) throw new Error(`this worker can't run ${phase} jobs (no workflow configured)`);
        // The workflow posts to chat itself (plan message, thread); the result is for the console.
        try {
          if (phase === 'plan') return await opts.workflow.planJob(job.data, jobId);
          return await opts.workflow.executeJob(job.data, jobId, {
            checkpoint: async (exec) => { await job.updateData({ ...job.data, exec }); },
            progress: async (text) => { await job.updateProgress({ text, at: Date.now() }).catch(() => undefined); },
          });
        } catch (e) {
          if ((e as { handOver?: boolean }).handOver) {
            // Shutdown or a lost lease: the plan is checkpointed and still 'running'. Put the
            // job back at once for another worker (after a lost lease it waits for the lease
            // to lapse). If Redis can't take it now, the stalled check returns it later.
            opts.log?.('job handed over', { jobId, reason: describeError(e) });
            await job.moveToWait(token);
            throw new WaitingError();
          }
          // The workflow could not post (bot not in the channel, Slack down): tell the
          // requester the ordinary way, which falls back to the command's response_url.
          const report = errorReport(`etcd ${job.data.command} — ${job.data.cluster ?? '?'}`, `${phase} failed: ${describeError(e)}`);
          await opts.notifiers[job.data.origin.adapter]?.deliver(job.data.origin, report, { jobId }).catch(() => undefined);
          throw e;
        }
      }
      const report = await opts.runner.run(job.data, jobId);
      // A read's outcome is its verdict's level: ok, warn, critical (also its errors), info.
      opts.metrics?.job(job.data.command, report.verdict?.level ?? 'info');
      const notifier = opts.notifiers[job.data.origin.adapter];
      if (notifier) await notifier.deliver(job.data.origin, report, { jobId });
      // Console requesters read the job's result themselves; anyone else would hear nothing.
      else if (job.data.origin.adapter !== 'console') {
        throw new Error(`this worker can't deliver to ${job.data.origin.adapter} (set SLACK_BOT_TOKEN on workers)`);
      }
      return report;
    },
    {
      connection,
      concurrency: opts.concurrency ?? 4,
      lockDuration,
      stalledInterval: lockDuration,
    },
  );
  worker.on('failed', (job, err) => opts.log?.('job failed', { jobId: job?.id, error: err.message }));
  worker.on('error', (err) => opts.log?.('worker error', { error: err.message }));
  return {
    worker,
    async close() {
      await worker.close();
      connection.disconnect();
    },
  };
}
