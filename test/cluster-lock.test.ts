import IORedis from 'ioredis';
import { createClusterLocks } from '../src/locks/cluster-lock';
import { TEST_REDIS_URL } from './support/harness';

describe('cluster lock with fencing token (real Redis)', () => {
  const redis = new IORedis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  const cluster = `lock-test-${process.pid}-${Date.now()}`;
  afterAll(async () => { redis.disconnect(); });

  it('lets one job in and tells the second who is busy, where it is, and that nothing ran', async () => {
    const locks = createClusterLocks(redis);
    const lease = await locks.acquire(cluster, { jobId: '17', requester: '<@U0ALICE>', progress: 'step 1/7' });
    await lease.update('step 3/7');
    await expect(locks.acquire(cluster, { jobId: '18', requester: '<@U0BOB>', progress: 'queued' })).rejects.toMatchObject({
      code: 'CLUSTER_BUSY',
      message: expect.stringMatching(/^cluster busy: job 17 by <@U0ALICE>, step 3\/7\. Nothing of your request ran/),
    });
    expect(await locks.holder(cluster)).toMatchObject({ jobId: '17', progress: 'step 3/7', token: lease.token });
    await lease.release();
    expect(await locks.holder(cluster)).toBeUndefined();
    const next = await locks.acquire(cluster, { jobId: '18', requester: '<@U0BOB>', progress: 'step 1/2' });
    expect(next.token).toBeGreaterThan(lease.token);
    await next.release();
  });

  it('frees itself when a crashed holder stops renewing, and the old holder is fenced off', async () => {
    const locks = createClusterLocks(redis, 300);
    const crashed = await locks.acquire(cluster, { jobId: '20', requester: 'console:ops', progress: 'step 2/5' });
    // No renewals (the worker died): the lease expires by itself.
    const until = Date.now() + 10000;
    while (await locks.holder(cluster) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    const taker = await locks.acquire(cluster, { jobId: '21', requester: 'console:ops', progress: 'step 1/5' });
    expect(taker.token).toBeGreaterThan(crashed.token);
    // The late holder can neither extend, annotate nor release the new lease.
    expect(await crashed.renew()).toBe(false);
    expect(await crashed.update('step 3/5')).toBe(false);
    await crashed.release();
    expect(await locks.holder(cluster)).toMatchObject({ jobId: '21', token: taker.token });
    expect(await taker.renew()).toBe(true);
    await taker.release();
  });
});
