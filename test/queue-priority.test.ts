/**
 * Executions are served before reads: against a real Redis and a real BullMQ worker,
 * with jobs already waiting when the worker starts.
 */
import { Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { JobRequest } from '../src/engine/types';
import { createJobQueue, JobQueue, workerConnection } from '../src/queue/queue';
import { TEST_REDIS_URL } from './support/harness';

let n = 0;
const fresh = () => `prio-${process.pid}-${Date.now()}-${n++}`;
const job = (command: string, phase: JobRequest['phase'], i = 0): JobRequest => ({
  command, args: { cluster: 'lab', n: String(i) }, cluster: 'lab', phase,
  origin: { adapter: 'slack', channel: 'C0LAB', user: 'U0ALICE' }, requestedAt: new Date().toISOString(),
});

describe('queue priority', () => {
  let queue: JobQueue;
  let worker: Worker | undefined;
  let conn: Redis | undefined;
  let name: string;
  beforeEach(() => { name = fresh(); queue = createJobQueue({ redisUrl: TEST_REDIS_URL, name }); });
  afterEach(async () => {
    await worker?.close();
    conn?.disconnect();
    worker = undefined;
    conn = undefined;
    await queue.queue.obliterate({ force: true });
    await queue.close();
  });

  /** Starts a worker with concurrency 1 and returns the order it took the first `count` jobs in. */
  async function served(count: number): Promise<string[]> {
    const order: string[] = [];
    conn = workerConnection(TEST_REDIS_URL);
    await new Promise<void>((resolve, reject) => {
      worker = new Worker(name, async (j: Job<JobRequest>) => {
        order.push(`${j.data.phase}:${j.data.args.n}`);
        if (order.length === count) resolve();
      }, { connection: conn!, concurrency: 1 });
      worker.on('error', reject);
    });
    return order;
  }

  it('takes an execute job queued behind 50 status jobs first', async () => {
    for (let i = 0; i < 50; i++) await queue.add(job('status', 'run', i));
    await queue.add(job('replace-member', 'execute', 99), { jobId: 'x7' });
    const order = await served(51);
    expect(order[0]).toBe('execute:99');
    // The reads keep their own order behind it.
    expect(order.slice(1)).toEqual(Array.from({ length: 50 }, (_, i) => `run:${i}`));
  });

  it('serves plans before reads and executions before plans', async () => {
    for (let i = 0; i < 5; i++) await queue.add(job('status', 'run', i));
    await queue.add(job('defrag', 'plan', 10));
    await queue.add(job('status', 'run', 5));
    await queue.add(job('defrag', 'execute', 20), { jobId: 'x3' });
    await queue.add(job('replace-member', 'plan', 11));
    expect(await served(9)).toEqual(['execute:20', 'plan:10', 'plan:11', 'run:0', 'run:1', 'run:2', 'run:3', 'run:4', 'run:5']);
  });

  it('keeps custom job ids deduplicating with priorities', async () => {
    expect(await queue.add(job('defrag', 'execute', 1), { jobId: 'x9' })).toBe('x9');
    expect(await queue.add(job('defrag', 'execute', 2), { jobId: 'x9' })).toBe('x9');
    expect(await queue.add(job('status', 'plan', 3), { jobId: 'p9' })).toBe('p9');
    expect(await queue.add(job('status', 'plan', 4), { jobId: 'p9' })).toBe('p9');
    const counts = await queue.queue.getJobCounts('wait', 'prioritized');
    expect(counts).toEqual({ wait: 1, prioritized: 1 });
    expect((await queue.queue.getJob('x9'))?.data.args.n).toBe('1');
  });
});
