import { arg, defineCommand, JobsView } from '../src/engine/command';
import type { PlanView } from '../src/engine/approvals';
import type { Report } from '../src/engine/report';

/** Plans shown in the table, newest first: one incident's worth. */
export const JOBS_REPORT_PLANS = 10;
/** Queued and active jobs shown, in the order workers take them. */
export const JOBS_REPORT_QUEUED = 20;

/**
 * What the feeder left out: it fetches at most JOBS_REPORT_PLANS plans and
 * JOBS_REPORT_QUEUED jobs, and counts the rest instead of reading them.
 */
export interface JobsViewBounds {
  /** Older plans of the cluster not fetched. */
  plansMore?: number;
  /** Unfinished jobs of the cluster not fetched. */
  queuedMore?: number;
  /** Unfinished jobs of any cluster beyond the feeder's scan bound, not looked at. */
  queuedUnscanned?: number;
}

export default defineCommand({
  id: 'jobs',
  summary: 'Who holds the cluster\'s lock and at which step, recent plans with their approvals, and queued jobs',
  args: [arg.cluster()],
  risk: 'read',
  async execute(ctx) {
    const title = `etcd jobs — ${ctx.cluster.name}`;
    if (!ctx.jobs) {
      return { title, verdict: { level: 'warn', text: 'this worker can\'t list jobs: it was started without access to the plan store' }, next: [`/etcd status ${ctx.cluster.name}`] };
    }
    return jobsReport(ctx.cluster.name, await ctx.jobs(ctx.cluster.name), ctx.jobId);
  },
});

/** Where /etcd jobs reads from (the worker wires the lock, the queue and the plan store in). */
export interface JobsSources {
  lockHolder(cluster: string): Promise<JobsView['lock']>;
  /** At most `limit` unfinished jobs of the cluster, and how many it left out. */
  queued(cluster: string, limit: number): Promise<{ jobs: JobsView['queued']; more: number; unscanned: number }>;
  /** The newest `limit` plans, and how many older ones it left out. */
  plans(cluster: string, limit: number): Promise<{ plans: JobsView['plans']; more: number }>;
}

/** The view /etcd jobs renders, read with bounds: never the whole queue or plan index. */
export async function collectJobsView(src: JobsSources, cluster: string): Promise<JobsView & JobsViewBounds> {
  const [lock, queued, plans] = await Promise.all([
    src.lockHolder(cluster), src.queued(cluster, JOBS_REPORT_QUEUED), src.plans(cluster, JOBS_REPORT_PLANS),
  ]);
  return {
    lock: lock && { jobId: lock.jobId, requester: lock.requester, progress: lock.progress },
    queued: queued.jobs, queuedMore: queued.more, queuedUnscanned: queued.unscanned,
    plans: plans.plans, plansMore: plans.more,
  };
}

/** Plans that can still be stopped: a waiting one never runs, a running one stops between steps. */
const CANCELLABLE: ReadonlyArray<PlanView['status']> = ['pending', 'approved', 'running'];

export function jobsReport(cluster: string, view: JobsView & JobsViewBounds, jobId?: string): Report {
  const plans = view.plans.slice(0, JOBS_REPORT_PLANS);
  const queued = view.queued.slice(0, JOBS_REPORT_QUEUED);
  const times = timeCells(plans.map((p) => p.createdAt));
  const open = view.plans.filter((p) => CANCELLABLE.includes(p.status));
  const notes: string[] = [];
  const plansMore = view.plans.length - plans.length + (view.plansMore ?? 0);
  const queuedMore = view.queued.length - queued.length + (view.queuedMore ?? 0);
  if (plansMore > 0) notes.push(`plans: ${plansMore} more not shown (older; the audit trail has them all: /etcd audit ${cluster})`);
  if (queuedMore > 0) notes.push(`queued and active jobs: ${queuedMore} more not shown`);
  if (view.queuedUnscanned) notes.push(`${view.queuedUnscanned} more unfinished jobs in the queue (any cluster) were not looked at`);
  if (!view.plans.length && !view.queued.length) notes.push(`no plans or jobs recorded for ${cluster} in the last 30 days`);
  return {
    title: `etcd jobs — ${cluster}`,
    verdict: view.lock
      ? { level: 'info', text: `locked by job ${view.lock.jobId} (${view.lock.requester}): ${view.lock.progress}` }
      : { level: 'ok', text: `no job holds the lock on ${cluster}${open.length ? `; ${open.length} plan${open.length === 1 ? '' : 's'} open` : ''}` },
    tables: [
      ...(plans.length ? [{
        title: 'Plans (newest first)',
        columns: ['JOB', 'COMMAND', 'STATUS', 'REQUESTER', 'APPROVALS', 'CREATED (UTC)', 'PROGRESS'],
        rows: plans.map((p, i) => [
          p.id,
          [p.command, ...Object.entries(p.plan.args).filter(([k]) => k !== 'cluster').map(([, v]) => v)].join(' '),
          p.status === 'running' && p.cancelRequested ? 'running (cancel requested)' : p.status,
          p.requester,
          `${p.approvals.length}/${Math.max(p.required, 1)}${p.approvals.length ? ` ${p.approvals.map((a) => a.user).join(',')}` : ''}`,
          times[i],
          p.progress ?? (p.status === 'pending' ? `open until ${p.expiresAt.slice(11, 16)}` : '-'),
        ]),
      }] : []),
      ...(queued.length ? [{
        title: 'Queued and active jobs',
        columns: ['JOB', 'COMMAND', 'PHASE', 'STATE', 'REQUESTER', 'SINCE (UTC)'],
        rows: queued.map((q) => [q.id, q.command, q.phase, q.state, q.requester, q.at.slice(11, 19) || q.at]),
      }] : []),
    ],
    notes,
    next: open.slice(0, 5).map((p) => `/etcd cancel ${p.id}`),
    context: [jobId ? `job ${jobId}` : `cluster ${cluster}`],
  };
}

/** HH:MM:SS, with the date too when the rows span more than one day. */
function timeCells(isoTimes: string[]): string[] {
  const days = new Set(isoTimes.map((t) => t.slice(0, 10)));
  return isoTimes.map((t) => (days.size > 1 ? `${t.slice(5, 10)} ${t.slice(11, 19)}` : t.slice(11, 19)));
}
