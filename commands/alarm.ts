import { arg, defineCommand } from '../src/engine/command';
import type { PlanState } from '../src/engine/plan';
import type { Report } from '../src/engine/report';
import { summarize } from '../src/engine/status-summary';
import { approxSize } from './defrag';

/**
 * Read only: `alarm <cluster> [list]`. Disarming is a change and needs a plan and an
 * approval, so it is its own command (alarm-disarm); `list` stays the one action here.
 */
export default defineCommand({
  id: 'alarm',
  summary: 'Alarms raised in a cluster (NOSPACE, CORRUPT) with each member\'s DB size; disarm with /etcd alarm-disarm',
  args: [arg.cluster(), arg.choice('action', ['list'], 'list')],
  risk: 'read',
  async execute(ctx) {
    const snapshot = await ctx.probe(ctx.cluster);
    return alarmReport({ cluster: ctx.cluster, snapshot, summary: summarize(ctx.cluster, snapshot) }, ctx.jobId);
  },
});

/**
 * etcd's default --quota-backend-bytes. The bot can't see the configured quota, so "near
 * the quota" is judged against the default; a cluster with a larger quota only gets a
 * warning it may not need.
 */
export const DEFAULT_QUOTA_BYTES = 2 * 1024 ** 3;
/** A DB at this share of the quota or more will raise NOSPACE again soon after a disarm. */
const NEAR_QUOTA = 0.9;
/** Share of a DB a defrag would give back above which it is worth doing first. */
const WORTH_DEFRAG = 0.2;

export interface RaisedAlarm {
  alarm: string;
  memberId: string;
  /** The member's name (node name when configured); undefined when it is no longer a member. */
  member?: string;
  node?: string;
}

/** Alarms are cluster-wide: every member returns the same list. Merged, NONE left out. */
export function raisedAlarms(state: PlanState): RaisedAlarm[] {
  const seen = new Map<string, RaisedAlarm>();
  for (const a of state.snapshot.probes.flatMap((p) => p.alarms ?? [])) {
    if (a.alarm === 'NONE' || seen.has(`${a.memberId}/${a.alarm}`)) continue;
    const m = state.summary.members.find((x) => x.id === a.memberId);
    seen.set(`${a.memberId}/${a.alarm}`, { alarm: a.alarm, memberId: a.memberId, member: m?.name, node: m?.node });
  }
  return [...seen.values()];
}

/** Did any member answer the alarm list at all? */
export function alarmsKnown(state: PlanState): boolean {
  return state.snapshot.probes.some((p) => p.alarms !== undefined);
}

/** Why disarming NOSPACE now would not last (and whether a defrag helps), or undefined when the DBs have room. */
export function noSpaceConcern(state: PlanState): { text: string; defragHelps: boolean } | undefined {
  const dbs = state.summary.members.filter((m) => m.probe?.status).map((m) => ({ name: m.name, ...m.probe!.status! }));
  const big = dbs.filter((d) => d.dbSize >= NEAR_QUOTA * DEFAULT_QUOTA_BYTES);
  if (!big.length) return undefined;
  const list = big.map((d) => `${d.name} ${approxSize(d.dbSize)}${d.dbSizeInUse ? ` (${approxSize(d.dbSizeInUse)} in use)` : ''}`).join(', ');
  const defragHelps = big.some((d) => reclaimable(d) >= WORTH_DEFRAG);
  const text = `the database is still near etcd's default quota of ${approxSize(DEFAULT_QUOTA_BYTES)} (--quota-backend-bytes): ${list}. `
    + 'Disarmed now, NOSPACE comes back with the next writes. '
    + (defragHelps
      ? `Defragment first (/etcd defrag ${state.cluster.name}), then disarm`
      : 'Defragmenting gives back little (most of it is in use): compact the keyspace or delete data (or raise the quota) first');
  return { text, defragHelps };
}

/** Share of the DB file a defrag would give back (0 when the version doesn't report in-use size). */
function reclaimable(st: { dbSize: number; dbSizeInUse: number }): number {
  return st.dbSize > 0 && st.dbSizeInUse > 0 ? (st.dbSize - st.dbSizeInUse) / st.dbSize : 0;
}

const MEANING: Record<string, string> = {
  NOSPACE: 'the database reached its quota: the cluster accepts only reads and deletes until the alarm is disarmed',
  CORRUPT: 'this member\'s data no longer matches the others\'',
};

export function alarmReport(state: PlanState, jobId?: string): Report {
  const c = state.cluster.name;
  const alarms = raisedAlarms(state);
  const known = alarmsKnown(state);
  const notes: string[] = [];
  const next: string[] = [];
  if (alarms.some((a) => a.alarm === 'NOSPACE')) {
    const concern = noSpaceConcern(state);
    if (concern) notes.push(concern.text);
    const worthIt = state.summary.members.some((m) => m.probe?.status && reclaimable(m.probe.status) >= WORTH_DEFRAG);
    if (concern ? concern.defragHelps : worthIt) next.push(`/etcd defrag ${c}`);
    next.push(`/etcd alarm-disarm ${c}`);
  }
  for (const a of alarms.filter((x) => x.alarm === 'CORRUPT')) {
    if (a.node) {
      notes.push(`CORRUPT on ${a.member}: disarming would hide it; replace the member so its data is rebuilt from the others, then disarm`);
      next.push(`/etcd replace-member ${c} ${a.node}`);
    } else {
      notes.push(`CORRUPT on ${a.member ?? `former member ${a.memberId}`}, ${a.member ? 'which no configured node stands for' : 'which is no longer a member'}: the alarm can be disarmed`);
      next.push(`/etcd alarm-disarm ${c}`);
    }
  }
  if (!known) next.push(`/etcd status ${c}`);
  const answeredBy = state.snapshot.probes.filter((p) => p.alarms !== undefined).map((p) => p.node);
  return {
    title: `etcd alarms — ${c}`,
    verdict: !known
      ? { level: 'warn', text: 'unknown: no member answered the alarm list' }
      : alarms.length
        ? { level: 'critical', text: `${alarms.length} alarm${alarms.length === 1 ? '' : 's'} raised: ${alarms.map((a) => `${a.alarm} on ${a.member ?? a.memberId}`).join(', ')}` }
        : { level: 'ok', text: 'no alarm raised' },
    tables: [
      ...(alarms.length ? [{
        title: 'Alarms',
        columns: ['MEMBER', 'MEMBER ID', 'ALARM', 'MEANING'],
        rows: alarms.map((a) => [a.member ?? '(not a member)', a.memberId, a.alarm, MEANING[a.alarm] ?? '-']),
      }] : []),
      {
        title: 'Database',
        columns: ['NODE', 'DB SIZE', 'IN USE', 'RECLAIMABLE'],
        rows: state.summary.members.map((m) => {
          const st = m.probe?.status;
          if (!st) return [m.name, '-', '-', '-'];
          const free = st.dbSizeInUse ? `${Math.round(reclaimable(st) * 100)}%` : '-';
          return [m.name, approxSize(st.dbSize), st.dbSizeInUse ? approxSize(st.dbSizeInUse) : '-', free];
        }),
      },
    ],
    notes,
    next: [...new Set(next)],
    context: [`alarm list from ${answeredBy.join(', ') || 'no member'} · collected ${state.snapshot.collectedAt}${jobId ? ` · job ${jobId}` : ''}`],
  };
}
