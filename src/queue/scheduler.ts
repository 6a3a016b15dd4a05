/**
 * Scheduled snapshots: one BullMQ job scheduler per cluster whose config sets
 * `snapshots.scheduleMinutes`. Each produces an ordinary `snapshot save` job, run by any
 * worker like a typed command, as the console user `console:scheduler` (reports go to the
 * job's result; nobody is notified in chat).
 */
import { jobOptions } from './queue';
import type { Queue } from 'bullmq';
import type { MedicConfig } from '../config/schema';
import type { JobRequest } from '../engine/types';

/** Who asks for scheduled snapshots, in records and the audit trail. */
export const SCHEDULER_USER = 'console:scheduler';
/** Scheduler ids are this plus the cluster name (BullMQ ids can't contain ':'). */
export const SNAPSHOT_SCHEDULER_PREFIX = 'medic-snapshot-';

export interface ScheduleResult {
  /** Clusters with a scheduler now, and their period in minutes. */
  scheduled: Array<{ cluster: string; everyMinutes: number }>;
  /** Scheduler ids removed because their cluster no longer asks for one. */
  removed: string[];
}

/** The job a cluster's scheduler produces each period. */
export function scheduledSnapshotJob(cluster: string, at: Date = new Date()): JobRequest {
  return {
    command: 'snapshot save',
    args: { cluster },
    cluster,
    origin: { adapter: 'console', channel: 'console', user: SCHEDULER_USER },
    // When the schedule was set: every run carries the same template.
    requestedAt: at.toISOString(),
    phase: 'run',
  };
}

/**
 * Makes the queue's snapshot schedulers match the config: upserts one per cluster with
 * `snapshots.scheduleMinutes` (an unchanged one keeps its next run), removes ours for
 * clusters without. Safe to call from every process at start.
 */
export async function scheduleSnapshots(queue: Queue, config: MedicConfig): Promise<ScheduleResult> {
  const wanted = new Map<string, number>();
  for (const c of config.clusters) if (c.snapshots.scheduleMinutes) wanted.set(SNAPSHOT_SCHEDULER_PREFIX + c.name, c.snapshots.scheduleMinutes);

  const scheduled: ScheduleResult['scheduled'] = [];
  for (const c of config.clusters) {
    const minutes = c.snapshots.scheduleMinutes;
    if (!minutes) continue;
    await queue.upsertJobScheduler(SNAPSHOT_SCHEDULER_PREFIX + c.name, { every: minutes * 60_000 }, {
      name: 'snapshot save',
      data: scheduledSnapshotJob(c.name),
      // A read like any other: queued behind executions and plans, capped like every job.
      opts: jobOptions('run'),
    });
    scheduled.push({ cluster: c.name, everyMinutes: minutes });
  }

  const removed: string[] = [];
  for (const s of await queue.getJobSchedulers(0, -1)) {
    const id = s.id ?? s.key;
    if (!id.startsWith(SNAPSHOT_SCHEDULER_PREFIX) || wanted.has(id)) continue;
    if (await queue.removeJobScheduler(id)) removed.push(id);
  }
  return { scheduled, removed };
}
