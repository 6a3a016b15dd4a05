/** snapshot list <cluster>: the bot's snapshots of a cluster, newest first, with what restores rely on. */
import type { ClusterConfig } from '../src/config/schema';
import { arg, defineCommand } from '../src/engine/command';
import { bytesText as sizeText, type Report } from '../src/engine/report';
import { describeRetention, isVerified, newestVerified } from '../src/snapshot/retention';
import type { SnapshotRecord } from '../src/snapshot/store';

/** Rows shown: Block Kit tables hold at most 100, and a long list helps nobody mid-incident. */
export const SNAPSHOT_LIST_ROWS = 30;

export default defineCommand({
  id: 'snapshot list',
  summary: 'The bot\'s snapshots of a cluster, newest first: revision, live keys, size, checksum, how each was verified',
  args: [arg.cluster()],
  risk: 'read',
  async execute(ctx) {
    if (!ctx.snapshots) {
      return { title: `etcd snapshot list — ${ctx.cluster.name}`, verdict: { level: 'warn', text: 'this worker can\'t list snapshots: it was started without a snapshot store' } };
    }
    return listReport(ctx.cluster, await ctx.snapshots.list(ctx.cluster.name), new Date(), ctx.jobId);
  },
});

/** Records come newest first (as the store lists them). */
export function listReport(cluster: ClusterConfig, records: readonly SnapshotRecord[], now: Date, jobId?: string): Report {
  const name = cluster.name;
  const title = `etcd snapshot list — ${name}`;
  const s = cluster.snapshots;
  const settings = [
    describeRetention(s),
    s.scheduleMinutes ? `a scheduled snapshot is taken every ${s.scheduleMinutes} minutes` : 'no scheduled snapshots (set snapshots.scheduleMinutes)',
    ...(s.copyOnNode ? [`each saved snapshot is also copied to its member's node, in ${cluster.paths.dataDir}/snapshots`] : []),
    ...(records.some((r) => r.offsiteOnly) ? ['"offsite only": not on this bot\'s host; a restore fetches it from the offsite store and checks its SHA-256 first'] : []),
  ];
  if (!records.length) {
    return {
      title,
      verdict: { level: 'warn', text: `no snapshots of ${name} in the bot's store: take one now` },
      notes: settings,
      next: [`/etcd snapshot save ${name}`],
      context: [jobId ? `job ${jobId}` : `cluster ${name}`],
    };
  }
  const shown = records.slice(0, SNAPSHOT_LIST_ROWS);
  const withOffsite = records.some((r) => r.offsite || r.offsiteError);
  const best = newestVerified(records);
  return {
    title,
    verdict: best
      ? { level: 'ok', text: `${records.length} snapshot${records.length === 1 ? '' : 's'}; newest verified: ${best.id}, revision ${best.revision}, ${keysText(best)} live keys, ${ageText(best.createdAt, now)} old` }
      : { level: 'warn', text: `${records.length} snapshot${records.length === 1 ? '' : 's'}, none verified by etcd's checksum: take a new one` },
    tables: [{
      title: 'Snapshots (newest first)',
      columns: ['ID', 'NODE', 'REVISION', 'KEYS', 'SIZE', 'SHA256', 'VERIFIED', 'AGE', 'KIND', 'REQUESTER', ...(withOffsite ? ['OFFSITE'] : [])],
      rows: shown.map((r) => [r.id, r.node, r.revision, keysText(r), sizeText(r.sizeBytes), r.sha256.slice(0, 12), verifiedText(r), ageText(r.createdAt, now), r.kind, r.requester,
        ...(withOffsite ? [offsiteText(r)] : [])]),
    }],
    notes: [
      ...(records.length > shown.length ? [`${records.length - shown.length} older snapshots not shown`] : []),
      'KEYS: live keys at the snapshot\'s revision, what a restore must serve again ("?" when it could not be counted)',
      ...settings,
    ],
    next: best ? [`/etcd restore ${name} ${best.id} --mode all`, `/etcd snapshot save ${name}`] : [`/etcd snapshot save ${name}`],
    context: [`times in UTC, now ${now.toISOString()}${jobId ? ` · job ${jobId}` : ''}`],
  };
}

/** Where the offsite copy is: "checked", "checked, encrypted", "offsite only" (fetched on restore), "failed", "-". */
function offsiteText(r: SnapshotRecord): string {
  if (r.offsiteOnly) return `offsite only${r.offsite?.encrypted ? ', encrypted' : ''}`;
  if (r.offsite) return `checked${r.offsite.encrypted ? ', encrypted' : ''}`;
  return r.offsiteError ? 'failed' : '-';
}

/** Live keys, or "?" when they could not be counted. */
export function keysText(r: SnapshotRecord): string {
  return r.liveKeys === undefined ? '?' : String(r.liveKeys);
}

/** "etcdctl + sha256": the tool that read the file and whether etcd's checksum matched. */
export function verifiedText(r: SnapshotRecord): string {
  if (r.verified.by === 'none') return isVerified(r) ? 'sha256 only' : 'not verified';
  return `${r.verified.by} + ${isVerified(r) ? 'sha256' : 'no checksum'}`;
}

export { sizeText };

/** "45s", "12m", "3h", "5d": the age a reader compares at a glance. */
export function ageText(iso: string, now: Date): string {
  const s = Math.max(0, Math.floor((now.getTime() - Date.parse(iso)) / 1000));
  if (s < 90) return `${s}s`;
  if (s < 90 * 60) return `${Math.round(s / 60)}m`;
  if (s < 36 * 3600) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}
