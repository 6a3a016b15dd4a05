import { defineCommand } from '../src/engine/command';
import { bytesText, type Level, type Report } from '../src/engine/report';
import { summarize, type StatusSummary } from '../src/engine/status-summary';
import { describeError } from '../src/engine/errors';
import type { ClusterConfig } from '../src/config/schema';
import type { ClusterSnapshot } from '../src/exec/types';

/** Clusters probed at once; each probe is bounded by its cluster's statusTimeoutMs. */
export const FLEET_PARALLEL = 32;
/** Rows per table: a Slack section holds 3000 characters. */
const ROWS_PER_TABLE = 20;

export default defineCommand({
  id: 'fleet',
  aliases: ['status all'],
  summary: 'Every cluster you may read from this channel, one line each: verdict, healthy voters, leader, DB size, what to run next',
  args: [],
  risk: 'read',
  async fleet(ctx) {
    const started = Date.now();
    const rows = await mapBounded(ctx.clusters, FLEET_PARALLEL, async (cluster): Promise<FleetRow> => {
      try {
        const snap = await ctx.probe(cluster);
        return rowOf(cluster, snap, summarize(cluster, snap));
      } catch (e) {
        return { cluster: cluster.name, rank: 3, verdict: `unknown: ${describeError(e)}`, healthy: '-', leader: '-', db: '-', next: `/etcd status ${cluster.name}` };
      }
    });
    return fleetReport(rows, ctx.hidden, { jobId: ctx.jobId, ms: Date.now() - started, at: new Date().toISOString() });
  },
});

export interface FleetRow {
  cluster: string;
  /** 0 healthy, 1 degraded, 2 quorum lost or data lost, 3 unknown: the table lists the worst first. */
  rank: number;
  verdict: string;
  healthy: string;
  leader: string;
  db: string;
  next: string;
}

export function rowOf(cluster: ClusterConfig, snap: ClusterSnapshot, s: StatusSummary): FleetRow {
  const dataLost = !!snap.memory?.findings.length;
  const rank = dataLost || s.verdict === 'quorum-lost' ? 2 : s.verdict === 'degraded' ? 1 : s.verdict === 'unknown' ? 3 : 0;
  const verdict = dataLost ? 'data lost' : s.verdict === 'quorum-lost' ? 'quorum lost' : s.verdict;
  const largest = Math.max(0, ...s.members.map((m) => m.probe?.status?.dbSize ?? 0));
  const detail = `/etcd status ${cluster.name}`;
  return {
    cluster: cluster.name,
    rank,
    verdict,
    healthy: s.verdict === 'unknown' ? `?/${s.voters}` : `${s.healthyVoters}/${s.voters}`,
    leader: s.leader?.name ?? 'none',
    db: largest ? bytesText(largest) : '-',
    // A healthy cluster needs nothing; any other: its first next step, or its full status.
    next: rank === 0 ? '-' : dataLost ? detail : s.next.find((n) => n.startsWith('/etcd')) ?? detail,
  };
}

const LEVELS: Level[] = ['ok', 'warn', 'critical', 'critical'];

export function fleetReport(rows: FleetRow[], hidden: number, o: { jobId?: string; ms: number; at: string }): Report {
  const sorted = [...rows].sort((a, b) => b.rank - a.rank || a.cluster.localeCompare(b.cluster));
  const worst = Math.max(0, ...rows.map((r) => r.rank));
  const healthy = rows.filter((r) => r.rank === 0).length;
  const others = (rank: number, label: string) => {
    const names = sorted.filter((r) => r.rank === rank).map((r) => r.cluster);
    return names.length ? [`${label}: ${names.slice(0, 5).join(', ')}${names.length > 5 ? ` and ${names.length - 5} more` : ''}`] : [];
  };
  const text = [`${healthy} of ${rows.length} cluster${rows.length === 1 ? '' : 's'} healthy`,
    ...others(2, 'quorum or data lost'), ...others(1, 'degraded'), ...others(3, 'unknown')].join('; ');
  const tables = [];
  for (let i = 0; i < sorted.length; i += ROWS_PER_TABLE) {
    tables.push({
      title: sorted.length > ROWS_PER_TABLE ? `Clusters ${i + 1}–${Math.min(sorted.length, i + ROWS_PER_TABLE)} of ${sorted.length}` : undefined,
      columns: ['CLUSTER', 'VERDICT', 'HEALTHY', 'LEADER', 'DB', 'NEXT'],
      rows: sorted.slice(i, i + ROWS_PER_TABLE).map((r) => [r.cluster, r.verdict, r.healthy, r.leader, r.db, r.next]),
    });
  }
  const trouble = sorted.filter((r) => r.rank > 0);
  return {
    title: 'etcd status — every cluster',
    verdict: { level: LEVELS[worst], text },
    tables,
    notes: hidden ? [`${hidden} more cluster${hidden === 1 ? ' is' : 's are'} configured but not readable by you from this channel`] : [],
    // Details on demand: the full status of the ones in trouble, worst first.
    next: trouble.length ? trouble.slice(0, 5).map((r) => `/etcd status ${r.cluster}`) : sorted.slice(0, 1).map((r) => `/etcd status ${r.cluster}`),
    context: [`collected ${o.at} in ${(o.ms / 1000).toFixed(1)} s${o.jobId ? ` · job ${o.jobId}` : ''}`],
  };
}

/** fn over items, at most `limit` at a time, results in the items' order. */
export async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}
