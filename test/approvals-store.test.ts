/**
 * The plan store's scripts against a real Redis: cancel and the step-boundary stop decided
 * in one step each, and the per-cluster index bounded by age and count.
 */
import IORedis, { Redis } from 'ioredis';
import { ApprovalStore, createApprovalStore, PlanRecord } from '../src/engine/approvals';
import { TEST_REDIS_URL } from './support/harness';

let n = 0;
const freshPrefix = () => `as-${process.pid}-${Date.now()}-${n++}`;

function record(id: string, over: Partial<PlanRecord> = {}): PlanRecord {
  const createdAt = new Date();
  return {
    id, cluster: 'lab', command: 'defrag', risk: 'mutating', hash: 'h', requester: 'U0ALICE',
    origin: { adapter: 'slack', channel: 'C0LAB', user: 'U0ALICE' }, required: 0,
    createdAt: createdAt.toISOString(), expiresAt: new Date(createdAt.getTime() + 15 * 60000).toISOString(),
    plan: { command: 'defrag', cluster: 'lab', args: { cluster: 'lab' }, steps: [], facts: [], warnings: [], basis: { members: [], leader: 'x' } },
    ...over,
  } as PlanRecord;
}

describe('approval store', () => {
  let redis: Redis;
  let other: Redis;
  let store: ApprovalStore;
  let prefix: string;
  beforeAll(() => {
    redis = new IORedis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    other = new IORedis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  });
  afterAll(() => { redis.disconnect(); other.disconnect(); });
  beforeEach(() => { prefix = freshPrefix(); store = createApprovalStore(redis, prefix); });

  async function planIn(status: 'pending' | 'approved' | 'running' | 'succeeded', id = String(++n)) {
    expect(await store.create(record(id))).toBe(true);
    if (status === 'approved' || status === 'running') await store.transition(id, ['pending'], 'approved');
    if (status === 'running') await store.transition(id, ['approved'], 'running');
    if (status === 'succeeded') await store.transition(id, ['pending'], 'succeeded');
    return id;
  }

  describe('cancel', () => {
    it('cancels a pending or approved plan so it never runs', async () => {
      const p = await planIn('pending');
      const a = await planIn('approved');
      expect(await store.cancel(p)).toEqual({ kind: 'cancelled', was: 'pending' });
      expect(await store.cancel(a)).toEqual({ kind: 'cancelled', was: 'approved' });
      expect((await store.get(a))?.status).toBe('cancelled');
      // The worker that picks it up now finds it is not approved.
      expect(await store.transition(a, ['approved'], 'running')).toBeUndefined();
      expect((await store.get(a))?.cancelRequested).toBe(false);
    });

    it('flags a running plan, with the flag get() reads and requestCancel sets', async () => {
      const r = await planIn('running');
      expect((await store.get(r))?.cancelRequested).toBe(false);
      expect(await store.cancel(r)).toEqual({ kind: 'requested' });
      expect(await store.get(r)).toMatchObject({ status: 'running', cancelRequested: true });
      expect(await store.cancel(r)).toEqual({ kind: 'requested' });
      // The flag expires with the record.
      expect(await redis.pttl(`${prefix}:plan:${r}:extra`)).toBeGreaterThan(29 * 24 * 3600 * 1000);
    });

    it('reports a finished plan as it is and a missing one as missing', async () => {
      const s = await planIn('succeeded');
      expect(await store.cancel(s)).toEqual({ kind: 'status', status: 'succeeded' });
      expect((await store.get(s))?.status).toBe('succeeded');
      expect(await store.cancel('nope')).toEqual({ kind: 'missing' });
    });

    it('never loses a cancel to a worker moving the plan approved -> running at the same moment', async () => {
      // The worker's store on its own connection, as in production (another process).
      const worker = createApprovalStore(other, prefix);
      const outcomes = new Map<string, number>();
      for (let i = 0; i < 200; i++) {
        const id = await planIn('approved', `race${i}`);
        const cancel = () => store.cancel(id);
        const start = () => worker.transition(id, ['approved'], 'running');
        // Both in flight at once, sent in either order.
        let c: Awaited<ReturnType<typeof cancel>>;
        let started: string | undefined;
        if (i % 2) [c, started] = await Promise.all([cancel(), start()]);
        else [started, c] = await Promise.all([start(), cancel()]);
        const view = (await store.get(id))!;
        if (c.kind === 'cancelled') {
          // Cancelled first: the worker must not have started it.
          expect(started).toBeUndefined();
          expect(view.status).toBe('cancelled');
        } else {
          // Started first: the cancel is recorded and the first step boundary stops it.
          expect(c).toEqual({ kind: 'requested' });
          expect(started).toBe('approved');
          expect(view).toMatchObject({ status: 'running', cancelRequested: true });
          expect(await worker.stopIfCancelled(id)).toBe(true);
        }
        outcomes.set(c.kind, (outcomes.get(c.kind) ?? 0) + 1);
      }
      expect([...outcomes.keys()].sort()).toEqual(['cancelled', 'requested']);
    });
  });

  describe('stopIfCancelled', () => {
    it('stops a running plan whose cancel was requested, once', async () => {
      const r = await planIn('running');
      await store.requestCancel(r);
      expect(await store.stopIfCancelled(r)).toBe(true);
      expect((await store.get(r))?.status).toBe('stopped');
      expect(await store.stopIfCancelled(r)).toBe(false);
    });

    it('leaves a running plan without a cancel, and plans that are not running, as they are', async () => {
      const r = await planIn('running');
      expect(await store.stopIfCancelled(r)).toBe(false);
      expect((await store.get(r))?.status).toBe('running');
      const a = await planIn('approved');
      await store.requestCancel(a);
      expect(await store.stopIfCancelled(a)).toBe(false);
      expect((await store.get(a))?.status).toBe('approved');
      expect(await store.stopIfCancelled('nope')).toBe(false);
    });
  });

  describe('cluster index', () => {
    it('keeps the newest indexKeep plan ids', async () => {
      const small = createApprovalStore(redis, prefix, { indexKeep: 5 });
      const t0 = Date.now() - 60000;
      for (let i = 1; i <= 8; i++) await small.create(record(`k${i}`, { createdAt: new Date(t0 + i * 1000).toISOString() }));
      expect(await redis.zrevrange(`${prefix}:plans:lab`, 0, -1)).toEqual(['k8', 'k7', 'k6', 'k5', 'k4']);
      expect((await small.recent('lab', 100)).map((p) => p.id)).toEqual(['k8', 'k7', 'k6', 'k5', 'k4']);
    });

    it('drops ids older than the records (30 days) and expires the index with them', async () => {
      const day = 24 * 3600 * 1000;
      await store.create(record('old', { createdAt: new Date(Date.now() - 31 * day).toISOString() }));
      await store.create(record('recent', { createdAt: new Date(Date.now() - 29 * day).toISOString() }));
      await store.create(record('new'));
      expect(await redis.zrevrange(`${prefix}:plans:lab`, 0, -1)).toEqual(['new', 'recent']);
      expect(await redis.pttl(`${prefix}:plans:lab`)).toBeGreaterThan(29 * day);
    });

    it('keeps the default index bounded at 1000', async () => {
      const key = `${prefix}:plans:lab`;
      // 1000 ids already indexed (cheaper than 1000 records), then one plan more.
      const now = Date.now();
      const args: Array<string | number> = [];
      for (let i = 0; i < 1000; i++) args.push(now - 100000 + i, `seed${i}`);
      await redis.zadd(key, ...args);
      await store.create(record('latest'));
      expect(await redis.zcard(key)).toBe(1000);
      expect(await redis.zscore(key, 'seed0')).toBeNull();
      expect((await redis.zrevrange(key, 0, 0))[0]).toBe('latest');
    });

    it('recentPlans says how many older plans it left out', async () => {
      const t0 = Date.now() - 60000;
      for (let i = 1; i <= 13; i++) await store.create(record(`r${i}`, { createdAt: new Date(t0 + i * 1000).toISOString() }));
      const r = await store.recentPlans('lab', 10);
      expect(r.plans.map((p) => p.id)).toEqual(['r13', 'r12', 'r11', 'r10', 'r9', 'r8', 'r7', 'r6', 'r5', 'r4']);
      expect(r.more).toBe(3);
      expect(await store.recentPlans('lab', 20)).toMatchObject({ more: 0 });
      expect(await store.recent('lab', 0)).toEqual([]);
    });
  });
});
