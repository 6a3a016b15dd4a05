/**
 * /etcd jobs stays bounded however many plans and jobs an incident piles up: the feeder
 * reads bounded ranges (real Redis, real BullMQ queue), the report shows at most
 * JOBS_REPORT_PLANS plans and JOBS_REPORT_QUEUED jobs and says how many it left out.
 */
import IORedis, { Redis } from 'ioredis';
import { collectJobsView, JOBS_REPORT_PLANS, JOBS_REPORT_QUEUED, jobsReport } from '../commands/jobs';
import { createApprovalStore, PlanRecord, PlanView } from '../src/engine/approvals';
import type { JobsView } from '../src/engine/command';
import type { JobRequest } from '../src/engine/types';
import { createClusterLocks } from '../src/locks/cluster-lock';
import { createJobQueue } from '../src/queue/queue';
import { TEST_REDIS_URL } from './support/harness';

const plan = (i: number, at: Date): PlanRecord => ({
  id: `p${i}`, cluster: 'lab', command: 'defrag', risk: 'mutating', hash: 'h', requester: 'U0ALICE',
  origin: { adapter: 'slack', channel: 'C0LAB', user: 'U0ALICE' }, required: 0,
  createdAt: at.toISOString(), expiresAt: new Date(at.getTime() + 15 * 60000).toISOString(),
  plan: { command: 'defrag', cluster: 'lab', args: { cluster: 'lab' }, steps: [], facts: [], warnings: [], basis: { members: [], leader: 'x' } },
} as PlanRecord);
const job = (cluster: string, i: number): JobRequest => ({
  command: 'status', args: { cluster, n: String(i) }, cluster, phase: 'run',
  origin: { adapter: 'slack', channel: 'C0LAB', user: 'U0ALICE' }, requestedAt: new Date().toISOString(),
});

describe('jobs report bounds', () => {
  it('shows at most 10 plans and 20 queued jobs, and counts what it left out', () => {
    const t0 = Date.parse('2024-05-01T03:00:00.000Z');
    const plans = Array.from({ length: 12 }, (_, i) => ({ ...plan(i, new Date(t0 + i * 1000)), status: 'succeeded', approvals: [] } as PlanView));
    const queued = Array.from({ length: 25 }, (_, i) => ({ id: String(i), command: 'status', phase: 'run', state: 'waiting', requester: 'U0ALICE', at: new Date(t0).toISOString() }));
    const view: JobsView = { queued, plans };
    const r = jobsReport('lab', { ...view, plansMore: 5, queuedMore: 7, queuedUnscanned: 40 });
    expect([JOBS_REPORT_PLANS, JOBS_REPORT_QUEUED]).toEqual([10, 20]);
    expect(r.tables?.[0].rows).toHaveLength(10);
    expect(r.tables?.[1].rows).toHaveLength(20);
    expect(r.notes).toEqual([
      'plans: 7 more not shown (older; the audit trail has them all: /etcd audit lab)',
      'queued and active jobs: 12 more not shown',
      '40 more unfinished jobs in the queue (any cluster) were not looked at',
    ]);
  });

  it('reads a bounded view from the plan store, the queue and the lock', async () => {
    const redis: Redis = new IORedis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    const name = `jobs-${process.pid}-${Date.now()}`;
    const queue = createJobQueue({ redisUrl: TEST_REDIS_URL, name });
    const approvals = createApprovalStore(redis, name);
    const locks = createClusterLocks(redis, 5000);
    try {
      const t0 = Date.now() - 60000;
      for (let i = 0; i < 14; i++) await approvals.create(plan(i, new Date(t0 + i * 1000)));
      for (let i = 0; i < 26; i++) await queue.add(job('lab', i));
      for (let i = 0; i < 5; i++) await queue.add(job('other', i));
      const getJobs = jest.spyOn(queue.queue, 'getJobs');
      // The callback the worker's RunContext.jobs is given (src/app.ts).
      const jobs = (cluster: string) => collectJobsView({
        lockHolder: (c) => locks.holder(c), queued: (c, n) => queue.jobsForCluster(c, n), plans: (c, n) => approvals.recentPlans(c, n),
      }, cluster);
      const view = await jobs('lab');
      expect(view.plans.map((p) => p.id)).toEqual(['p13', 'p12', 'p11', 'p10', 'p9', 'p8', 'p7', 'p6', 'p5', 'p4']);
      expect(view).toMatchObject({ plansMore: 4, queuedMore: 6, queuedUnscanned: 0, lock: undefined });
      expect(view.queued).toHaveLength(20);
      for (const [, start, end] of getJobs.mock.calls) expect([start, end]).toEqual([expect.any(Number), expect.any(Number)]);
      const r = jobsReport('lab', view);
      expect(r.notes).toEqual(['plans: 4 more not shown (older; the audit trail has them all: /etcd audit lab)', 'queued and active jobs: 6 more not shown']);
    } finally {
      await queue.queue.obliterate({ force: true });
      await queue.close();
      redis.disconnect();
    }
  });
});
