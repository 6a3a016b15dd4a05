/**
 * The per-user request limit in the engine's entry, counted in a real Redis: over the
 * limit the user is told why and when to try again, and nothing is queued.
 */
import IORedis, { Redis } from 'ioredis';
import { commands } from '../commands';
import { parseConfig } from '../src/config/load';
import { createRequestLimiter, Engine, RequestLimitOptions } from '../src/engine/engine';
import type { JobRequest, Origin } from '../src/engine/types';
import { createJobQueue, JobQueue } from '../src/queue/queue';
import { TEST_REDIS_URL } from './support/harness';

const config = parseConfig(`
clusters:
  - name: lab
    channels: [C0LAB, console]
    access: { read: { requesters: ["*"] }, mutating: { requesters: ["*"] } }
    nodes:
      - { name: n1, ssh: { host: 10.0.0.11, hostKey: "SHA256:${'A'.repeat(43)}" }, clientUrl: "https://10.0.0.11:2379", peerUrl: "https://10.0.0.11:2380" }
`);
const slack = (user: string): Origin => ({ adapter: 'slack', channel: 'C0LAB', user });
const consoleUser = (user: string): Origin => ({ adapter: 'console', channel: 'console', user });

let n = 0;
describe('per-user request limit', () => {
  const redises: Redis[] = [];
  const queues: JobQueue[] = [];
  let name: string;
  let clock: number;
  beforeEach(() => { name = `rl-${process.pid}-${Date.now()}-${n++}`; clock = Date.parse('2024-05-01T03:00:00.000Z'); });
  afterAll(async () => {
    for (const q of queues) { await q.queue.obliterate({ force: true }).catch(() => undefined); await q.close(); }
    for (const r of redises) r.disconnect();
  });

  /** One web process: its own connections, the bot's shared Redis and queue name. */
  async function web(opts: RequestLimitOptions = {}, decided: string[] = []) {
    const redis = new IORedis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    redises.push(redis);
    await new Promise((r) => redis.once('ready', r));
    const queue = createJobQueue({ redisUrl: TEST_REDIS_URL, name });
    queues.push(queue);
    const limiter = createRequestLimiter(redis, { prefix: name, now: () => clock, ...opts });
    const engine = new Engine({
      config, commands, queue, limiter,
      decide: async (d) => { decided.push(`${d.action} ${d.planId}`); return { ok: true, text: 'ok' }; },
    });
    return { engine, queue };
  }
  const waiting = (q: JobQueue) => q.queue.getJobCounts('wait', 'prioritized').then((c) => c.wait + c.prioritized);

  it('refuses the 21st request in a minute, says when to try again, and queues nothing', async () => {
    const { engine, queue } = await web();
    for (let i = 0; i < 20; i++) {
      expect(await engine.submit({ text: 'status lab', origin: slack('U0BOB') })).toMatchObject({ kind: 'queued' });
      clock += 1000;
    }
    clock = Date.parse('2024-05-01T03:00:26.000Z');
    expect(await engine.submit({ text: 'status lab', origin: slack('U0BOB') })).toEqual({
      kind: 'rejected', code: 'RATE_LIMITED',
      message: 'you sent 21 requests in the last minute; the limit is 20. Nothing was queued; try again in 34 s',
    });
    expect(await engine.submit({ text: 'defrag lab', origin: slack('U0BOB') })).toMatchObject({ kind: 'rejected', message: expect.stringMatching(/^you sent 22 requests/) });
    expect(await waiting(queue)).toBe(20);
    // Someone else is not affected.
    expect(await engine.submit({ text: 'status lab', origin: slack('U0CAROL') })).toMatchObject({ kind: 'queued' });
    // A slot frees when the first request leaves the window.
    clock = Date.parse('2024-05-01T03:01:00.000Z');
    expect(await engine.submit({ text: 'status lab', origin: slack('U0BOB') })).toMatchObject({ kind: 'queued' });
    expect(await engine.submit({ text: 'status lab', origin: slack('U0BOB') })).toMatchObject({ kind: 'rejected', message: expect.stringContaining('try again in 1 s') });
    expect(await waiting(queue)).toBe(22);
  });

  it('is shared by every web process of the bot', async () => {
    const a = await web({ limit: 5 });
    const b = await web({ limit: 5 });
    for (let i = 0; i < 3; i++) expect((await a.engine.submit({ text: 'status lab', origin: slack('U0BOB') })).kind).toBe('queued');
    for (let i = 0; i < 2; i++) expect((await b.engine.submit({ text: 'status lab', origin: slack('U0BOB') })).kind).toBe('queued');
    expect(await b.engine.submit({ text: 'status lab', origin: slack('U0BOB') })).toMatchObject({ kind: 'rejected', code: 'RATE_LIMITED', message: expect.stringContaining('the limit is 5') });
    expect(await a.engine.submit({ text: 'status lab', origin: slack('U0BOB') })).toMatchObject({ kind: 'rejected', message: expect.stringMatching(/^you sent 7 requests/) });
    expect(await waiting(a.queue)).toBe(5);
  });

  it('throws RATE_LIMITED from enqueue (the Slack adapter\'s path after its ack)', async () => {
    const { engine, queue } = await web({ limit: 1, windowMs: 30000 });
    const prepared = engine.prepare({ text: 'status lab', origin: slack('U0BOB') });
    if (prepared.kind !== 'job') throw new Error(prepared.kind);
    await engine.enqueue(prepared.job);
    clock += 12000;
    await expect(engine.enqueue(prepared.job)).rejects.toMatchObject({
      code: 'RATE_LIMITED', message: 'you sent 2 requests in the last 30 s; the limit is 1. Nothing was queued; try again in 18 s',
    });
    expect(await waiting(queue)).toBe(1);
  });

  it('never limits decisions, executions or the scheduler; console users count like anyone', async () => {
    const decided: string[] = [];
    const { engine, queue } = await web({ limit: 2 }, decided);
    for (let i = 0; i < 5; i++) expect((await engine.submit({ text: 'cancel 7', origin: slack('U0BOB') })).kind).toBe('decided');
    expect(decided).toHaveLength(5);
    for (let i = 0; i < 5; i++) expect((await engine.submit({ text: 'status lab', origin: consoleUser('console:scheduler') })).kind).toBe('queued');
    const execute: JobRequest = { command: 'defrag', args: { cluster: 'lab' }, cluster: 'lab', origin: slack('U0BOB'), requestedAt: new Date(clock).toISOString(), phase: 'execute', planId: '7' };
    for (let i = 0; i < 3; i++) await engine.submit({ text: 'status lab', origin: slack('U0BOB') });
    expect(await engine.enqueue(execute)).toBeTruthy();
    for (let i = 0; i < 2; i++) expect((await engine.submit({ text: 'status lab', origin: consoleUser('console:alice') })).kind).toBe('queued');
    expect((await engine.submit({ text: 'status lab', origin: consoleUser('console:alice') })).kind).toBe('rejected');
    expect(await waiting(queue)).toBe(5 + 2 + 1 + 2);
  });

  it('uses Redis\'s clock when given none', async () => {
    const { engine } = await web({ limit: 1, now: undefined });
    expect((await engine.submit({ text: 'status lab', origin: slack('U0BOB') })).kind).toBe('queued');
    const r = await engine.submit({ text: 'status lab', origin: slack('U0BOB') });
    expect(r).toMatchObject({ kind: 'rejected', message: expect.stringMatching(/try again in (59|60) s$/) });
  });

  it('keeps the "Redis is unreachable: nothing was queued" answer when Redis is down', async () => {
    const redis = new IORedis('redis://127.0.0.1:1', { maxRetriesPerRequest: 1, retryStrategy: () => 500 });
    redis.on('error', () => undefined);
    const queue = createJobQueue({ redisUrl: 'redis://127.0.0.1:1', name: 'unreachable', addTimeoutMs: 500 });
    const engine = new Engine({ config, commands, queue, limiter: createRequestLimiter(redis) });
    try {
      const started = Date.now();
      await expect(engine.submit({ text: 'status lab', origin: slack('U0BOB') })).rejects.toMatchObject({
        code: 'QUEUE_UNAVAILABLE',
        message: expect.stringMatching(/redis:\/\/127\.0\.0\.1:1\) is unreachable.*Nothing was queued/),
      });
      expect(Date.now() - started).toBeLessThan(1500);
    } finally {
      redis.disconnect();
      await queue.close();
    }
  });
});
