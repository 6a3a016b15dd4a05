/**
 * Plans waiting for approval, and what became of them, in the Redis every process shares.
 * The plan itself is written once and never edited (its hash is what approvers approved);
 * status and approvals change only through Lua scripts, so two clicks at once can't both
 * count, and a click after expiry can't slip in.
 */
import type { Redis } from 'ioredis';
import type { Risk } from './command';
import type { Plan } from './plan';
import type { Origin } from './types';

export type PlanStatus =
  | 'pending' | 'approved' | 'rejected' | 'cancelled' | 'expired' | 'superseded'
  | 'running' | 'succeeded' | 'failed' | 'stopped';

export const FINAL_STATUSES: readonly PlanStatus[] = ['rejected', 'cancelled', 'expired', 'superseded', 'succeeded', 'failed', 'stopped'];

/** Where the plan was posted (Slack: the channel message whose buttons act on it). */
export interface MessageRef { channel: string; ts: string }

export interface PlanRecord {
  /** The planning job's id; what users type in /etcd cancel and see as "job N". */
  id: string;
  cluster: string;
  command: string;
  risk: Exclude<Risk, 'read'>;
  plan: Plan;
  hash: string;
  requester: string;
  origin: Origin;
  required: number;
  createdAt: string;
  expiresAt: string;
  /** The plan this one replaces (the cluster changed after approval). */
  supersedes?: string;
}

export interface Approval { user: string; at: string }

export interface PlanView extends PlanRecord {
  status: PlanStatus;
  approvals: Approval[];
  message?: MessageRef;
  executeJobId?: string;
  /** "step 3/9: etcd.memberAddLearner node3", while running. */
  progress?: string;
  /** One entry per finished step ("done (1.2 s)"), as the executing worker last saved them. */
  states?: string[];
  cancelRequested?: boolean;
}

export type ApproveResult =
  | { kind: 'granted'; count: number }
  | { kind: 'approved'; count: number }
  | { kind: 'self' }
  | { kind: 'again' }
  | { kind: 'expired' }
  | { kind: 'missing' }
  | { kind: 'status'; status: PlanStatus };

const APPROVE = `
local st = redis.call('GET', KEYS[1])
if not st then return {'missing'} end
if st ~= 'pending' then return {'status', st} end
if tonumber(ARGV[2]) > tonumber(ARGV[5]) then
  redis.call('SET', KEYS[1], 'expired', 'KEEPTTL')
  return {'expired'}
end
if ARGV[1] == ARGV[6] then return {'self'} end
local list = redis.call('LRANGE', KEYS[2], 0, -1)
local prefix = ARGV[1] .. '|'
for _, a in ipairs(list) do
  if string.sub(a, 1, #prefix) == prefix then return {'again'} end
end
redis.call('RPUSH', KEYS[2], prefix .. ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
local n = #list + 1
if n >= tonumber(ARGV[4]) then
  redis.call('SET', KEYS[1], 'approved', 'KEEPTTL')
  return {'approved', tostring(n)}
end
return {'granted', tostring(n)}`;

const TRANSITION = `
local st = redis.call('GET', KEYS[1])
if not st then return false end
for i = 2, #ARGV do
  if st == ARGV[i] then
    redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
    return st
  end
end
return false`;

// Keeps the larger of the stored and the given revision (compared by length, then text:
// exact for uint64 decimal strings, which Lua's doubles are not).
const MAX_REVISION = `
local cur = redis.call('GET', KEYS[1])
local new = ARGV[1]
if (not cur) or #new > #cur or (#new == #cur and new > cur) then redis.call('SET', KEYS[1], new) end
return 1`;

const ALLOCATE = `
local v = redis.call('GET', KEYS[1])
if v then return v end
local id = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], id, 'PX', ARGV[1])
return id`;

// Record, status and index together, or nothing: an existing id is never overwritten.
// The cluster's index drops ids older than the records' TTL (their records are gone) and
// keeps the newest ARGV[5], so a cluster asked about for years does not grow it forever.
const CREATE = `
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], 'pending', 'PX', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (tonumber(ARGV[3]) - tonumber(ARGV[2])))
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -1 - tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return 1`;

// Cancel in one step: a plan approved a moment ago and picked up by a worker meanwhile is
// either cancelled before it runs or flagged while it runs; never neither.
const CANCEL = `
local st = redis.call('GET', KEYS[1])
if not st then return {'missing'} end
if st == 'pending' or st == 'approved' then
  redis.call('SET', KEYS[1], 'cancelled', 'KEEPTTL')
  return {'cancelled', st}
end
if st == 'running' then
  redis.call('HSET', KEYS[2], 'cancel', '1')
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
  return {'requested'}
end
return {'status', st}`;

// The step boundary's check and the stop in one step, so a cancel can't land in between.
const STOP_IF_CANCELLED = `
if redis.call('GET', KEYS[1]) == 'running' and redis.call('HGET', KEYS[2], 'cancel') == '1' then
  redis.call('SET', KEYS[1], 'stopped', 'KEEPTTL')
  return 1
end
return 0`;

/** How long records are kept after creation (the audit log keeps the history for longer). */
const RECORD_TTL_MS = 30 * 24 * 3600 * 1000;

export interface ApprovalStoreOptions {
  /** Plan ids kept in each cluster's index (what /etcd jobs lists); older ones drop out. @defaultValue 1000 */
  indexKeep?: number;
}

export type CancelResult =
  /** It had not started and now never will. */
  | { kind: 'cancelled'; was: 'pending' | 'approved' }
  /** It is running: the cancel flag is set, and it stops at its next step boundary. */
  | { kind: 'requested' }
  /** Already decided or finished: nothing to cancel. */
  | { kind: 'status'; status: PlanStatus }
  | { kind: 'missing' };

export interface ApprovalStore {
  /**
   * A short plan id, unique in this Redis whatever queue the planning job came from; the
   * same job asking again (its worker stalled and it ran twice) gets the same id.
   */
  allocateId(scope: string): Promise<string>;
  /** Stores a new plan; false when the id is taken (nothing is overwritten). */
  create(rec: PlanRecord): Promise<boolean>;
  get(id: string): Promise<PlanView | undefined>;
  /** Counts one approval by `user`; refuses the requester, repeats, expired or decided plans. */
  approve(rec: PlanRecord, user: string, now: Date): Promise<ApproveResult>;
  /** Moves status from one of `from` to `to`; returns the previous status, or undefined when it was not in `from`. */
  transition(id: string, from: readonly PlanStatus[], to: PlanStatus): Promise<PlanStatus | undefined>;
  setMessage(id: string, ref: MessageRef): Promise<void>;
  setExtra(id: string, extra: { executeJobId?: string; progress?: string; states?: string }): Promise<void>;
  requestCancel(id: string): Promise<void>;
  /**
   * One script: pending/approved -> cancelled; running -> cancel flag set (the one
   * `requestCancel` sets); anything else is reported as it is.
   */
  cancel(id: string): Promise<CancelResult>;
  /** At a step boundary: running with the cancel flag set -> stopped (true); otherwise nothing changes (false). */
  stopIfCancelled(id: string): Promise<boolean>;
  /** Newest first. */
  recent(cluster: string, limit: number): Promise<PlanView[]>;
  /** The newest `limit` plans, and how many older ones the cluster's index holds beyond them. */
  recentPlans(cluster: string, limit: number): Promise<{ plans: PlanView[]; more: number }>;
  /** Remembers the highest store revision seen on the cluster (restores bump past it). */
  noteRevision(cluster: string, revision: string): Promise<void>;
  /** The highest store revision ever noted for the cluster, '0' when none. */
  observedRevision(cluster: string): Promise<string>;
}

export function createApprovalStore(redis: Redis, prefix = 'etcd-medic', opts: ApprovalStoreOptions = {}): ApprovalStore {
  const k = (id: string, part: string) => `${prefix}:plan:${id}:${part}`;
  const index = (cluster: string) => `${prefix}:plans:${cluster}`;
  const ttl = String(RECORD_TTL_MS);
  const indexKeep = String(opts.indexKeep ?? 1000);
  const store: ApprovalStore = {
    async allocateId(scope) {
      const id = await redis.eval(ALLOCATE, 2, `${prefix}:plan-of:${scope}`, `${prefix}:plan-seq`, ttl) as number | string;
      return String(id);
    },
    async create(rec) {
      const created = await redis.eval(CREATE, 3, k(rec.id, 'record'), k(rec.id, 'status'), index(rec.cluster),
        JSON.stringify(rec), ttl, String(Date.parse(rec.createdAt)), rec.id, indexKeep) as number;
      return created === 1;
    },
    async get(id) {
      const [record, status, approvals, message, extra] = await Promise.all([
        redis.get(k(id, 'record')), redis.get(k(id, 'status')), redis.lrange(k(id, 'approvals'), 0, -1),
        redis.get(k(id, 'message')), redis.hgetall(k(id, 'extra')),
      ]);
      if (!record || !status) return undefined;
      const rec = JSON.parse(record) as PlanRecord;
      return {
        ...rec,
        // Nobody clicked before it ran out: it is expired, whether or not a click has said so.
        status: status === 'pending' && Date.now() > Date.parse(rec.expiresAt) ? 'expired' : status as PlanStatus,
        approvals: approvals.map((a) => { const i = a.indexOf('|'); return { user: a.slice(0, i), at: a.slice(i + 1) }; }),
        message: message ? JSON.parse(message) as MessageRef : undefined,
        executeJobId: extra.executeJobId || undefined,
        progress: extra.progress || undefined,
        states: extra.states ? JSON.parse(extra.states) as string[] : undefined,
        cancelRequested: extra.cancel === '1',
      };
    },
    async approve(rec, user, now) {
      const r = await redis.eval(
        APPROVE, 2, k(rec.id, 'status'), k(rec.id, 'approvals'),
        user, String(now.getTime()), now.toISOString(), String(rec.required), String(Date.parse(rec.expiresAt)), rec.requester, ttl,
      ) as string[];
      switch (r[0]) {
        case 'granted': return { kind: 'granted', count: Number(r[1]) };
        case 'approved': return { kind: 'approved', count: Number(r[1]) };
        case 'status': return { kind: 'status', status: r[1] as PlanStatus };
        default: return { kind: r[0] as 'self' | 'again' | 'expired' | 'missing' };
      }
    },
    async transition(id, from, to) {
      const r = await redis.eval(TRANSITION, 1, k(id, 'status'), to, ...from) as string | null;
      return r ? r as PlanStatus : undefined;
    },
    async setMessage(id, ref) {
      await redis.set(k(id, 'message'), JSON.stringify(ref), 'PX', RECORD_TTL_MS);
    },
    async setExtra(id, extra) {
      const fields = Object.entries(extra).filter(([, v]) => v !== undefined) as [string, string][];
      if (!fields.length) return;
      await redis.multi().hset(k(id, 'extra'), Object.fromEntries(fields)).pexpire(k(id, 'extra'), RECORD_TTL_MS).exec();
    },
    async requestCancel(id) {
      await redis.multi().hset(k(id, 'extra'), { cancel: '1' }).pexpire(k(id, 'extra'), RECORD_TTL_MS).exec();
    },
    async cancel(id) {
      const r = await redis.eval(CANCEL, 2, k(id, 'status'), k(id, 'extra'), ttl) as string[];
      switch (r[0]) {
        case 'cancelled': return { kind: 'cancelled', was: r[1] as 'pending' | 'approved' };
        case 'requested': return { kind: 'requested' };
        case 'status': return { kind: 'status', status: r[1] as PlanStatus };
        default: return { kind: 'missing' };
      }
    },
    async stopIfCancelled(id) {
      return (await redis.eval(STOP_IF_CANCELLED, 2, k(id, 'status'), k(id, 'extra')) as number) === 1;
    },
    async noteRevision(cluster, revision) {
      if (!/^\d{1,19}$/.test(revision)) return;
      await redis.eval(MAX_REVISION, 1, `${prefix}:max-revision:${cluster}`, revision);
    },
    async observedRevision(cluster) {
      return (await redis.get(`${prefix}:max-revision:${cluster}`)) ?? '0';
    },
    async recent(cluster, limit) {
      if (limit <= 0) return [];
      const ids = await redis.zrevrange(index(cluster), 0, limit - 1);
      const views = await Promise.all(ids.map((id) => store.get(id)));
      return views.filter((v): v is PlanView => !!v);
    },
    async recentPlans(cluster, limit) {
      const [plans, total] = await Promise.all([store.recent(cluster, limit), redis.zcard(index(cluster))]);
      return { plans, more: Math.max(0, total - Math.max(0, limit)) };
    },
  };
  return store;
}
