/**
 * snapshot save <cluster> [node]: a verified snapshot of one healthy member into the bot's
 * store (streamed through the SSH tunnel, checked with etcd's checksum and `snapshot
 * status`, live keys counted at its revision), then the cluster's retention, and when the
 * config asks for it a copy on the member's node as the runbook keeps one. Changes nothing
 * on the cluster, so it is a read command.
 */
import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import type { JobResources } from '../src/actions/context';
import type { ClusterConfig } from '../src/config/schema';
import { arg, defineCommand } from '../src/engine/command';
import { describeError, isMedicError, MedicError } from '../src/engine/errors';
import type { Report } from '../src/engine/report';
import type { EtcdMemberClient } from '../src/exec/etcd-client';
import { sh } from '../src/exec/shell';
import { SCHEDULER_USER } from '../src/queue/scheduler';
import { applyRetention, describeRetention, RetentionResult } from '../src/snapshot/retention';
import { saveSnapshot } from '../src/snapshot/save';
import type { SnapshotRecord } from '../src/snapshot/store';
import { keysText, sizeText, verifiedText } from './snapshot-list';

export default defineCommand({
  id: 'snapshot save',
  summary: 'Take a verified snapshot of a healthy member into the bot\'s snapshot store (any healthy member, or the node given)',
  args: [arg.cluster(), { ...arg.node(), optional: true }],
  risk: 'read',
  async execute(ctx) {
    const { cluster } = ctx;
    const title = `etcd snapshot save — ${cluster.name}`;
    if (!ctx.snapshots || !ctx.openResources) {
      return { title, verdict: { level: 'warn', text: 'this worker can\'t take snapshots: it was started without a snapshot store or SSH key' }, next: [`/etcd status ${cluster.name}`] };
    }
    const scheduled = ctx.origin.user === SCHEDULER_USER;
    const res = ctx.openResources(cluster);
    try {
      let source: { node: string; client: EtcdMemberClient };
      try {
        source = await snapshotSource(res, cluster.name, ctx.args.node);
      } catch (e) {
        if (isMedicError(e) && e.code === 'UNSAFE') return refusalReport(cluster.name, e.message, ctx.jobId);
        throw e;
      }
      const record = await saveSnapshot({
        client: source.client, store: ctx.snapshots, cluster: cluster.name, node: source.node, requester: ctx.origin.user,
        reason: !scheduled ? 'manual snapshot' : cluster.snapshots.scheduleMinutes ? `scheduled snapshot (every ${cluster.snapshots.scheduleMinutes} min)` : 'scheduled snapshot',
        kind: scheduled ? 'scheduled' : 'manual', jobId: ctx.jobId,
      });
      const copy = cluster.snapshots.copyOnNode ? await copyToNode(res, cluster, record, ctx.snapshots.path(record)) : undefined;
      const retention = await applyRetention(ctx.snapshots, cluster.name, cluster.snapshots);
      const cleanup = cluster.snapshots.copyOnNode ? await removeNodeCopies(res, cluster, retention.removed) : [];
      return saveReport({ cluster, record, copy, retention, cleanup, jobId: ctx.jobId });
    } finally {
      await res.close();
    }
  },
});

/**
 * The member to snapshot: the node asked for, only when it is a healthy voting member (a
 * learner or a member failing its linearizable read may be behind the cluster), or else
 * the first healthy member.
 */
export async function snapshotSource(
  res: Pick<JobResources, 'etcd' | 'healthyEtcd'>, cluster: string, node?: string,
): Promise<{ node: string; client: EtcdMemberClient }> {
  if (!node) return res.healthyEtcd();
  const refuse = (why: string) => new MedicError('UNSAFE', `${node} can't be snapshotted: ${why}. A snapshot must come from a healthy voting member: leave the node out to use any healthy member (/etcd snapshot save ${cluster}), or check /etcd status ${cluster}`);
  let client: EtcdMemberClient;
  try {
    client = await res.etcd(node);
  } catch (e) {
    throw refuse(`its member can't be reached (${describeError(e)})`);
  }
  const health = await client.health();
  if (!health.healthy) throw refuse(`its member is unhealthy (${health.error ?? 'no answer'})`);
  const status = await client.status().catch((e: unknown) => { throw refuse(`its member did not answer status (${describeError(e)})`); });
  if (status.isLearner) throw refuse('its member is a learner, not yet caught up and promoted');
  return { node, client };
}

/** The copy kept on the member's node, as checked there. */
export type NodeCopy =
  | { ok: true; node: string; path: string }
  | { ok: false; node: string; path: string; error: string };

/** Largest snapshot copied to a node: the SFTP write takes the whole file in memory. */
export const MAX_NODE_COPY_BYTES = 2 * 1024 ** 3;
/** Free space the copy must leave on the node's data dir filesystem: etcd shares it. */
const NODE_SPACE_MARGIN_BYTES = 256 * 1024 ** 2;

export const nodeCopyDir = (cluster: ClusterConfig) => posix.join(cluster.paths.dataDir, 'snapshots');

/**
 * Copies a stored snapshot to `<dataDir>/snapshots/<id>.db` on the node it came from and
 * checks its SHA-256 there. Never throws: the snapshot is safe in the store either way.
 */
export async function copyToNode(res: Pick<JobResources, 'session'>, cluster: ClusterConfig, record: SnapshotRecord, localPath: string): Promise<NodeCopy> {
  const dir = nodeCopyDir(cluster);
  const path = posix.join(dir, `${record.id}.db`);
  const failed = (error: string): NodeCopy => ({ ok: false, node: record.node, path, error });
  if (record.sizeBytes > MAX_NODE_COPY_BYTES) return failed(`not copied: ${sizeText(record.sizeBytes)} is more than the ${sizeText(MAX_NODE_COPY_BYTES)} the bot copies`);
  try {
    const session = await res.session(record.node);
    const prep = await session.exec(sh`umask 077 && mkdir -p -- ${dir} && chmod 700 -- ${dir} && df -Pk -- ${dir}`);
    if (prep.code !== 0) return failed(`could not create ${dir}: ${(prep.stderr || prep.stdout).trim() || `exit ${prep.code ?? prep.signal}`}`);
    const free = freeBytes(prep.stdout);
    if (free !== undefined && free < record.sizeBytes + NODE_SPACE_MARGIN_BYTES) {
      return failed(`not copied: ${sizeText(free)} free on ${record.node}'s data dir filesystem, and etcd needs room there`);
    }
    // Bounded by the node's speed, not the usual command deadline: at least 2 MiB/s.
    const timeoutMs = cluster.ssh.commandTimeoutMs + Math.ceil(record.sizeBytes / (2 * 1024 ** 2)) * 1000;
    await session.writeFile(path, await readFile(localPath), { mode: 0o600, timeoutMs });
    const sum = await session.exec(sh`sha256sum -- ${path}`, { timeoutMs });
    const got = /^([0-9a-f]{64})\s/.exec(sum.stdout)?.[1];
    if (got === record.sha256) return { ok: true, node: record.node, path };
    // A copy that does not match is worse than none: a restore from it would fail later.
    await session.exec(sh`rm -f -- ${path}`).catch(() => undefined);
    return failed(got ? `removed: its SHA-256 on the node is ${got.slice(0, 12)}, not ${record.sha256.slice(0, 12)}` : `could not check it: ${(sum.stderr || sum.stdout).trim() || `exit ${sum.code}`}`);
  } catch (e) {
    return failed(describeError(e));
  }
}

/** Available bytes from `df -Pk` (the last line's 4th column). */
function freeBytes(dfOutput: string): number | undefined {
  const last = dfOutput.trim().split('\n').pop() ?? '';
  const kb = last.trim().split(/\s+/)[3];
  return kb && /^\d+$/.test(kb) ? Number(kb) * 1024 : undefined;
}

/**
 * Removes the node copies of snapshots retention just removed from the store, so copies
 * don't fill the nodes' data dir filesystems. Best effort: returns one line per failure.
 */
export async function removeNodeCopies(res: Pick<JobResources, 'session'>, cluster: ClusterConfig, removed: readonly SnapshotRecord[]): Promise<string[]> {
  const byNode = new Map<string, string[]>();
  for (const r of removed) {
    if (!cluster.nodes.some((n) => n.name === r.node)) continue;
    byNode.set(r.node, [...(byNode.get(r.node) ?? []), posix.join(nodeCopyDir(cluster), `${r.id}.db`)]);
  }
  const problems: string[] = [];
  for (const [node, paths] of byNode) {
    try {
      const session = await res.session(node);
      const r = await session.exec(sh`rm -f -- ${paths}`);
      if (r.code !== 0) problems.push(`${node}: could not remove old copies: ${(r.stderr || r.stdout).trim() || `exit ${r.code}`}`);
    } catch (e) {
      problems.push(`${node}: could not remove old copies in ${nodeCopyDir(cluster)}: ${describeError(e)}`);
    }
  }
  return problems;
}

export interface SaveReportInput {
  cluster: ClusterConfig;
  record: SnapshotRecord;
  copy?: NodeCopy;
  retention: RetentionResult;
  /** Failures removing node copies of pruned snapshots. */
  cleanup?: string[];
  jobId?: string;
}

export function saveReport(i: SaveReportInput): Report {
  const { record: r, copy, retention } = i;
  const cluster = i.cluster.name;
  const keys = r.liveKeys === undefined ? 'live keys not counted' : `${r.liveKeys} live keys`;
  const removed = retention.removed.length;
  return {
    title: `etcd snapshot save — ${cluster}`,
    verdict: {
      level: (copy && !copy.ok) || r.offsiteError ? 'warn' : 'ok',
      text: `saved and verified snapshot ${r.id} of ${r.node} at revision ${r.revision} (${keys})${copy && !copy.ok ? '; the copy on the node failed' : ''}`
        + `${r.offsite ? '; offsite copy read back and checked' : ''}${r.offsiteError ? '; the offsite copy failed' : ''}`,
    },
    fields: [
      { label: 'Snapshot', value: r.id },
      { label: 'Member', value: `${r.node} (${r.memberId})` },
      { label: 'Revision', value: r.revision },
      { label: 'etcd version', value: r.etcdVersion },
      { label: 'Size', value: sizeText(r.sizeBytes) },
      { label: 'SHA-256', value: r.sha256.slice(0, 12) },
      { label: 'Live keys', value: keysText(r) },
      { label: 'Verified by', value: verifiedText(r) },
      { label: 'Taken', value: r.createdAt },
      { label: 'Requester', value: r.requester },
      ...(r.offsite ? [{ label: 'Offsite', value: `${r.offsite.url}${r.offsite.encrypted ? ' (encrypted, AES-256-GCM)' : ''}, SHA-256 checked after upload` }] : []),
      ...(r.offsiteError ? [{ label: 'Offsite', value: `failed: ${r.offsiteError}` }] : []),
      ...(copy ? [{ label: 'Copy on node', value: copy.ok ? `${copy.node}:${copy.path} (SHA-256 checked)` : `${copy.node}: ${copy.error}` }] : []),
      { label: 'Retention', value: removed ? `removed ${removed} older snapshot${removed === 1 ? '' : 's'}, ${retention.kept} kept` : `nothing removed, ${retention.kept} kept` },
    ],
    notes: [
      ...(r.liveKeysNote ? [`live keys ${r.liveKeysNote}: a restore from it can check the revision but not the key count`] : []),
      ...(r.verified.totalKeys !== undefined ? [`the file holds ${r.verified.totalKeys} key revisions (snapshot status counts every stored revision of every key, live or not)`] : []),
      ...(removed ? [`removed: ${retention.removed.map((x) => x.id).join(', ')}`] : []),
      ...(i.cleanup ?? []),
      describeRetention(i.cluster.snapshots),
    ],
    next: [`/etcd snapshot list ${cluster}`],
    context: [`stored in ${r.cluster}/${r.id}.db · ${r.kind}${i.jobId ? ` · job ${i.jobId}` : ''}`],
  };
}

function refusalReport(cluster: string, why: string, jobId?: string): Report {
  return {
    title: `etcd snapshot save — ${cluster}`,
    verdict: { level: 'critical', text: `refused: ${why}` },
    next: [`/etcd snapshot save ${cluster}`, `/etcd status ${cluster}`],
    context: [`nothing was saved${jobId ? ` · job ${jobId}` : ''}`],
  };
}
