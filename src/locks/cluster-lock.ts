import type { Redis } from 'ioredis';
import { MedicError } from '../engine/errors';

/**
 * One mutating job per cluster (issue 3): a Redis lease with a fencing token. The token
 * grows with every acquisition (and is never below the clock in ms, so it keeps growing
 * across a Redis that lost its data), so a step can refuse to act for a holder whose lease
 * was taken over (a paused worker waking up late).
 */
export interface LockHolder {
  /** Job id holding the lock. */
  jobId: string;
  /** Who asked for the job (Slack user id or console:<name>). */
  requester: string;
  /** Human description of where the job is, e.g. "step 3/7". */
  progress: string;
}

export interface Lease {
  cluster: string;
  token: number;
  holder: LockHolder;
  /** Extends the lease; false when it was lost (expired and taken, or released). */
  renew(): Promise<boolean>;
  /** Records progress shown to whoever finds the cluster busy; false when the lease was lost. */
  update(progress: string): Promise<boolean>;
  /** True while this lease is the cluster's current one (the fencing check before an etcd change). */
  isCurrent(): Promise<boolean>;
  release(): Promise<void>;
}

const key = (cluster: string) => `etcd-medic:lock:${cluster}`;
const fenceKey = (cluster: string) => `etcd-medic:fence:${cluster}`;

// Compare-and-act on the stored token: only the current holder may renew, update or release.
const RENEW = `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if cjson.decode(v).token ~= tonumber(ARGV[1]) then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;
const UPDATE = `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local h = cjson.decode(v)
if h.token ~= tonumber(ARGV[1]) then return 0 end
h.progress = ARGV[3]
redis.call('SET', KEYS[1], cjson.encode(h), 'PX', ARGV[2])
return 1`;
const RELEASE = `
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v).token == tonumber(ARGV[1]) then return redis.call('DEL', KEYS[1]) end
return 0`;
const ACQUIRE = `
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
-- Never below the clock (ms): tokens stay monotonic when Redis loses its data or is
-- replaced, so nodes that recorded a token (fence files) don't refuse the bot forever.
local t = redis.call('TIME')
local clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token = redis.call('INCR', KEYS[2])
if token < clock then
  token = clock
  redis.call('SET', KEYS[2], token)
end
local h = cjson.decode(ARGV[1])
h.token = token
redis.call('SET', KEYS[1], cjson.encode(h), 'PX', ARGV[2])
return token`;

export interface ClusterLocks {
  /** How long a lease lives without renewal. */
  readonly leaseMs: number;
  /**
   * Takes the cluster's lock or throws CLUSTER_BUSY naming the job, requester and progress
   * of the holder. Nothing runs for the caller when it throws.
   */
  acquire(cluster: string, holder: LockHolder): Promise<Lease>;
  /** Who holds the lock now, if anyone (for /etcd jobs and busy messages). */
  holder(cluster: string): Promise<(LockHolder & { token: number }) | undefined>;
}

/**
 * @param leaseMs how long a lease lives without renewal; a crashed worker's lock frees
 *   itself after this. @defaultValue 60000
 */
export function createClusterLocks(redis: Redis, leaseMs = 60000): ClusterLocks {
  const parse = (v: string) => JSON.parse(v) as LockHolder & { token: number };
  return {
    leaseMs,
    // A job resumed after its worker died waits for that worker's lease to lapse rather
    // than taking it over: the worker may only be cut off, still running its step.
    async acquire(cluster, holder) {
      const res = await redis.eval(ACQUIRE, 2, key(cluster), fenceKey(cluster), JSON.stringify(holder), String(leaseMs)) as number | string;
      if (typeof res === 'string') {
        const h = parse(res);
        throw new MedicError('CLUSTER_BUSY', `cluster busy: job ${h.jobId} by ${h.requester}, ${h.progress}. Nothing of your request ran; try again when it has finished (/etcd jobs)`);
      }
      const token = Number(res);
      const lease: Lease = {
        cluster,
        token,
        holder,
        renew: async () => (await redis.eval(RENEW, 1, key(cluster), String(token), String(leaseMs))) === 1,
        update: async (progress) => {
          const ok = (await redis.eval(UPDATE, 1, key(cluster), String(token), String(leaseMs), progress)) === 1;
          if (ok) lease.holder = { ...lease.holder, progress };
          return ok;
        },
        isCurrent: async () => {
          const v = await redis.get(key(cluster));
          return !!v && parse(v).token === token;
        },
        release: async () => { await redis.eval(RELEASE, 1, key(cluster), String(token)); },
      };
      return lease;
    },
    async holder(cluster) {
      const v = await redis.get(key(cluster));
      return v ? parse(v) : undefined;
    },
  };
}
