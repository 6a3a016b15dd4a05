/**
 * What the queue keeps and what /etcd jobs reads of it stay bounded, however many jobs an
 * incident produces: against a real Redis and BullMQ worker.
 */
import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { JobRequest } from '../src/engine/types';
import { createJobQueue, DEFAULT_KEEP_COMPLETED, DEFAULT_KEEP_FAILED, JobQueue, workerConnection } from '../src/queue/queue';
import { TEST_REDIS_URL } from './support/harness';

let n = 0;
const fresh = () => `bounds-${process.pid}-${Date.now()}-${n++}`;
const job = (cluster: string, phase: JobRequest['phase'], i = 0, user = 'U0ALICE'): JobRequest => ({
  command: phase === 'run' ? 'status' : 'defrag', args: { cluster, n: String(i) }, cluster, phase,
  origin: { adapter: 'slack', channel: 'C0LAB', user }, requestedAt: new Date().toISOString(),
});

describe('failed and completed jobs are capped', () => {
  const queues: JobQueue[] = [];
  afterAll(async () => {
    for (const q of queues) { await q.queue.obliterate({ force: true }); await q.close(); }
  });

  it('keeps at most keepFailed.count failed jobs', async () => {
    const name = fresh();
    const queue = createJobQueue({ redisUrl: TEST_REDIS_URL, name, keepFailed: { count: 3, age: 3600 }, keepCompleted: { count: 2, age: 3600 } });
    queues.push(queue);
    for (let i = 0; i < 8; i++) await queue.add(job('lab', 'run', i));
    for (let i = 8; i < 13; i++) await queue.add(job('lab', 'plan', i));
    const conn: Redis = workerConnection(TEST_REDIS_URL);
    let finished = 0;
    const worker = new Worker(name, async (j) => { if (j.data.phase === 'run') throw new Error('boom'); }, { connection: conn, concurrency: 4 });
    await new Promise<void>((resolve) => {
      const one = () => { if (++finished === 13) resolve(); };
      worker.on('failed', one);
      worker.on('completed', one);
    });
    await worker.close();
    conn.disconnect();
    expect(await queue.queue.getJobCounts('failed', 'completed')).toEqual({ failed: 3, completed: 2 });
  });

  it('gives every job a count and an age limit by default', async () => {
    const queue = createJobQueue({ redisUrl: TEST_REDIS_URL, name: fresh() });
    queues.push(queue);
    const id = await queue.add(job('lab', 'run'));
    const opts = (await queue.queue.getJob(id))!.opts;
    expect(opts.removeOnFail).toEqual({ count: 1000, age: 30 * 24 * 3600 });
    expect(opts.removeOnComplete).toEqual({ count: 1000, age: 7 * 24 * 3600 });
    expect([DEFAULT_KEEP_FAILED, DEFAULT_KEEP_COMPLETED]).toEqual([opts.removeOnFail, opts.removeOnComplete]);
  });
});

describe('jobsForCluster', () => {
  let queue: JobQueue;
  beforeEach(() => { queue = createJobQueue({ redisUrl: TEST_REDIS_URL, name: fresh() }); });
  afterEach(async () => { await queue.queue.obliterate({ force: true }); await queue.close(); });

  it('returns at most limit jobs of the cluster, in the order workers take them, and counts the rest', async () => {
    for (let i = 0; i < 30; i++) await queue.add(job('lab', 'run', i));
    for (let i = 0; i < 40; i++) await queue.add(job('other', 'run', i));
    await queue.add(job('lab', 'execute', 100, 'U0BOB'), { jobId: 'x5' });
    await queue.add(job('lab', 'plan', 101), { jobId: 'p6' });
    const r = await queue.jobsForCluster('lab', 20);
    expect(r.jobs).toHaveLength(20);
    expect(r.jobs.slice(0, 3).map((j) => [j.id, j.phase, j.state])).toEqual([['x5', 'execute', 'waiting'], ['p6', 'plan', 'waiting'], ['1', 'run', 'waiting']]);
    expect(r.jobs[0]).toMatchObject({ command: 'defrag', requester: 'U0BOB', at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
    expect(r.more).toBe(12);
    expect(r.unscanned).toBe(0);
  });

  it('reads at most `scan` jobs and says how many it did not look at', async () => {
    for (let i = 0; i < 150; i++) await queue.add(job(i % 2 ? 'lab' : 'other', 'run', i));
    const getJobs = jest.spyOn(queue.queue, 'getJobs');
    const r = await queue.jobsForCluster('lab', 10, { scan: 120 });
    expect(r.jobs).toHaveLength(10);
    expect(r.more).toBe(50);
    expect(r.unscanned).toBe(30);
    // Every read is a bounded range, never the whole list.
    for (const [, start, end] of getJobs.mock.calls) {
      expect(typeof start).toBe('number');
      expect((end as number) - (start as number)).toBeLessThan(100);
    }
  });
});
