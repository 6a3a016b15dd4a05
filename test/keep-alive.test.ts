/**
 * The lease keep-alive (src/locks/keep-alive.ts) against a real Redis: the lease counts as
 * lost when no renewal succeeded for the lease time minus the margin (Redis SIGSTOPped, so
 * its connections stay open and simply never answer), or at once when Redis says the
 * lease is someone else's.
 */
import IORedis, { Redis } from 'ioredis';
import { createClusterLocks } from '../src/locks/cluster-lock';
import { keepAlive } from '../src/locks/keep-alive';
import { startRedis, RedisServer } from './support/redis';

const PORT = 6433;

describe('lease keep-alive', () => {
  let server: RedisServer;
  let redis: Redis;
  beforeAll(async () => {
    server = await startRedis(PORT);
    redis = new IORedis(server.url, { maxRetriesPerRequest: 1, commandTimeout: 1000, retryStrategy: () => 100 });
    redis.on('error', () => undefined);
  });
  afterAll(async () => {
    redis.disconnect();
    try { process.kill(server.pid, 'SIGCONT'); } catch { /* gone */ }
    await server.stop();
  });

  it('keeps a healthy lease alive well past its lease time', async () => {
    const locks = createClusterLocks(redis, 1500);
    const lease = await locks.acquire('ka1', { jobId: '1', requester: 'U0A', progress: 'step 1/1' });
    const lost: string[] = [];
    const k = keepAlive(lease, { leaseMs: 1500, onLost: (r) => lost.push(r) });
    await new Promise((r) => setTimeout(r, 4000));
    expect(lost).toEqual([]);
    expect(k.lost).toBeUndefined();
    expect((await locks.holder('ka1'))?.token).toBe(lease.token);
    k.stop();
    await lease.release();
  });

  it('gives up before the lease can lapse when Redis stops answering', async () => {
    const leaseMs = 3000;
    const locks = createClusterLocks(redis, leaseMs);
    const lease = await locks.acquire('ka2', { jobId: '2', requester: 'U0A', progress: 'step 1/1' });
    const pttl = await redis.pttl('etcd-medic:lock:ka2');
    const stoppedAt = Date.now();
    process.kill(server.pid, 'SIGSTOP');
    let lostAt = 0;
    let reason = '';
    const k = keepAlive(lease, { leaseMs, onLost: (r) => { lostAt = Date.now(); reason = r; } });
    await new Promise((r) => setTimeout(r, leaseMs + 500));
    process.kill(server.pid, 'SIGCONT');
    expect(lostAt).toBeGreaterThan(0);
    // Before the lease could lapse in Redis (acquired with pttl left at the stop).
    expect(lostAt).toBeLessThan(stoppedAt + pttl);
    expect(reason).toMatch(/no renewal .* succeeded .* Redis unreachable or too slow/);
    expect(k.lost).toBe(reason);
    expect(k.remainingMs()).toBe(0);
    k.stop();
  });

  it('is lost at once when Redis says the lease is someone else\'s', async () => {
    const locks = createClusterLocks(redis, 3000);
    const lease = await locks.acquire('ka3', { jobId: '3', requester: 'U0A', progress: 'step 1/1' });
    const lost: string[] = [];
    const k = keepAlive(lease, { leaseMs: 3000, everyMs: 200, onLost: (r) => lost.push(r) });
    await redis.del('etcd-medic:lock:ka3');
    const other = await locks.acquire('ka3', { jobId: '4', requester: 'U0B', progress: 'step 1/1' });
    const start = Date.now();
    while (!lost.length && Date.now() - start < 2000) await new Promise((r) => setTimeout(r, 20));
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatch(/held by someone else/);
    expect(Date.now() - start).toBeLessThan(1000);
    expect(await lease.isCurrent()).toBe(false);
    expect(await other.isCurrent()).toBe(true);
    k.stop();
    await other.release();
  });

  it('fencing tokens keep growing when Redis loses its data, so fenced nodes do not refuse the bot forever', async () => {
    const locks = createClusterLocks(redis, 3000);
    const a = await locks.acquire('ka4', { jobId: '5', requester: 'U0A', progress: 'step 1/1' });
    await a.release();
    await redis.flushall();
    await new Promise((r) => setTimeout(r, 5)); // a Redis that lost its data takes longer than 1 ms to come back
    const b = await locks.acquire('ka4', { jobId: '6', requester: 'U0A', progress: 'step 1/1' });
    expect(b.token).toBeGreaterThan(a.token);
    expect(Number.isSafeInteger(b.token)).toBe(true);
    await b.release();
  });
});
