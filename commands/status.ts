import { arg, defineCommand } from '../src/engine/command';
import { bytesText, type Report } from '../src/engine/report';
import { summarize, StatusSummary, MemberView } from '../src/engine/status-summary';
import type { ClusterSnapshot } from '../src/exec/types';
import { dataLossNext } from '../src/engine/cluster-memory';
import { newestVerified } from '../src/snapshot/retention';
import type { SnapshotRecord, SnapshotStore } from '../src/snapshot/store';

export default defineCommand({
  id: 'status',
  summary: 'Members, endpoint status, health, alarms and quorum of a cluster, with what to do next',
  args: [arg.cluster()],
  risk: 'read',
  async execute(ctx) {
    const snap = await ctx.probe(ctx.cluster);
    const report = statusReport(snap, summarize(ctx.cluster, snap), ctx.jobId);
    return snap.memory?.findings.length ? withDataLoss(report, snap, await newestOf(ctx.snapshots, ctx.cluster.name)) : report;
  },
});

/** The newest verified snapshot of a cluster in the bot's store, if any (never throws). */
async function newestOf(store: SnapshotStore | undefined, cluster: string): Promise<SnapshotRecord | undefined> {
  const all = await store?.list(cluster).catch(() => undefined);
  return all ? newestVerified(all) : undefined;
}

/**
 * The cluster contradicts what the bot saw before (engine/cluster-memory): whatever its
 * members say of their health, the verdict is data loss, with the restore to run.
 */
export function withDataLoss(report: Report, snap: ClusterSnapshot, newest?: SnapshotRecord): Report {
  const findings = snap.memory!.findings;
  const what = findings.map((f) => f.kind === 'came-back-empty' ? 'the cluster came back empty' : f.kind === 'revision-backwards' ? 'the revision went backwards'
    : f.kind === 'cluster-id-changed' ? 'the cluster id changed' : 'members answer for different clusters');
  return {
    ...report,
    verdict: { level: 'critical', text: `data lost: ${what.join(', ')} (the members' own health: ${report.verdict?.text ?? 'unknown'})` },
    notes: [...findings.map((f) => f.text), ...(report.notes ?? [])],
    next: [...dataLossNext(snap.cluster, newest), ...(report.next ?? []).filter((n) => !/healthy|nothing to do/i.test(n))],
  };
}

const VERDICT_TEXT: Record<StatusSummary['verdict'], string> = {
  healthy: 'healthy',
  degraded: 'degraded',
  'quorum-lost': 'quorum lost',
  unknown: 'unknown',
};

export function statusReport(snap: ClusterSnapshot, s: StatusSummary, jobId?: string): Report {
  const level = s.verdict === 'healthy' ? 'ok' : s.verdict === 'degraded' ? 'warn' : 'critical';
  const tolerable = `${s.tolerable} failure${s.tolerable === 1 ? '' : 's'} tolerable`;
  const quorum = s.verdict === 'unknown' ? 'unknown' : s.verdict === 'quorum-lost' ? 'lost' : 'holds';
  return {
    title: `etcd status — ${snap.cluster}`,
    verdict: {
      level,
      text: s.verdict === 'unknown'
        ? `unknown: no member could be reached (${s.voters} voting members expected)`
        : `${VERDICT_TEXT[s.verdict]}: ${s.healthyVoters}/${s.voters} voting members healthy, quorum ${quorum} (needs ${s.quorum}), ${tolerable}`,
    },
    fields: [
      { label: 'Voting members', value: String(s.voters) },
      { label: 'Healthy', value: `${s.healthyVoters}/${s.voters}` },
      { label: 'Quorum size', value: String(s.quorum) },
      { label: 'Failures tolerable', value: String(s.tolerable) },
      { label: 'Leader', value: s.leader ? `${s.leader.name} (${s.leader.id})` : 'none' },
      { label: 'Alarms', value: s.alarms.length ? s.alarms.map((a) => `${a.alarm} on ${a.member}`).join(', ') : 'none' },
      { label: 'Versions', value: versionsText(s) },
    ],
    tables: [{
      title: 'Members',
      columns: ['NODE', 'MEMBER ID', 'ROLE', 'HEALTH', 'VERSION', 'DB SIZE (IN USE) / QUOTA', 'TERM', 'INDEX', 'APPLIED', 'ERRORS'],
      rows: s.members.map(row),
    }],
    notes: [...s.reasons, ...s.members.filter((m) => m.probe?.status?.errors.length)
      .map((m) => `${m.name} reports: ${m.probe!.status!.errors.join('; ')}`), ...versionNotes(s), ...quotaNotes(s)],
    next: s.next,
    context: [`collected ${snap.collectedAt}${jobId ? ` · job ${jobId}` : ''}`],
  };
}

function row(m: MemberView): string[] {
  const st = m.probe?.status;
  const role = m.isLearner ? 'learner' : m.isLeader ? 'leader' : st ? 'follower' : 'unknown';
  let health: string;
  if (!m.probe) health = m.unknownToConfig ? 'not in config' : 'not probed';
  else if (!m.probe.reachable) health = `unreachable: ${m.probe.unreachableReason ?? 'unknown'}`;
  else if (m.probe.health?.healthy) health = `ok (${Math.round(m.probe.health.latencyMs)} ms)`;
  else health = `unhealthy: ${m.probe.health?.error ?? 'no answer'}`;
  return [
    m.name,
    m.id ?? '-',
    role,
    health,
    st?.version ?? '-',
    st ? `${bytesText(st.dbSize)} (${st.dbSizeInUse ? bytesText(st.dbSizeInUse) : '-'})${st.quotaBytes ? ` / ${bytesText(st.quotaBytes)} ${Math.round((100 * st.dbSize) / st.quotaBytes)}%` : ''}` : '-',
    st?.raftTerm ?? '-',
    st?.raftIndex ?? '-',
    st?.raftAppliedIndex ?? '-',
    st?.errors.length ? st.errors.join('; ') : '-',
  ];
}

/** The share of its quota a DB file may fill before status warns (NOSPACE stops every write at 100%). */
export const QUOTA_WARN = 0.8;

function quotaNotes(s: StatusSummary): string[] {
  return s.members.flatMap((m) => {
    const st = m.probe?.status;
    if (!st?.quotaBytes || st.dbSize < QUOTA_WARN * st.quotaBytes) return [];
    return [`${m.name}'s database is ${bytesText(st.dbSize)}, ${Math.round((100 * st.dbSize) / st.quotaBytes)}% of its ${bytesText(st.quotaBytes)} quota: at 100% etcd raises NOSPACE and refuses every write. `
      + `Compact and defragment (/etcd defrag), or raise --quota-backend-bytes`];
  });
}

/**
 * Server, cluster and storage versions as the members report them: `server 3.5.30 · cluster
 * 3.5.0 · storage 3.6.0`; a value members disagree on lists who says what.
 */
export function versionsText(s: StatusSummary): string {
  const part = (label: string, pick: (m: MemberView) => string | undefined, none: string) => {
    const by = new Map<string, string[]>();
    for (const m of s.members) {
      const v = pick(m);
      if (v) by.set(v, [...(by.get(v) ?? []), m.name]);
    }
    if (!by.size) return `${label} ${none}`;
    if (by.size === 1) return `${label} ${[...by.keys()][0]}`;
    return `${label} ${[...by].map(([v, who]) => `${v} (${who.join(', ')})`).join(', ')}`;
  };
  return [
    part('server', (m) => m.probe?.status?.version, 'unknown'),
    part('cluster', (m) => m.probe?.status?.clusterVersion, 'unknown'),
    part('storage', (m) => m.probe?.status?.storageVersion, 'not reported (etcd 3.6 and later report it)'),
  ].join(' · ');
}

/** Members on different etcd minor versions (an upgrade or rollback under way, or one left behind). */
function versionNotes(s: StatusSummary): string[] {
  const seen = s.members.filter((m) => m.probe?.status?.version).map((m) => ({ name: m.name, version: m.probe!.status!.version }));
  const minors = new Set(seen.map((x) => x.version.split('.').slice(0, 2).join('.')));
  if (minors.size < 2) return [];
  return [`members run different etcd minor versions (${seen.map((x) => `${x.name} ${x.version}`).join(', ')}): finish the upgrade or roll it back before any membership change or restore; `
    + 'a cluster runs at the lowest member\'s version until every member is upgraded'];
}
