/**
 * diagnose <cluster>: status, plus the tail of etcd's log on every node whose etcd is not
 * healthy (or raised an alarm), plus the newest verified snapshot; the pure diagnose()
 * names the runbook scenario each fact fits and the command that repairs it.
 */
import type { ClusterConfig } from '../src/config/schema';
import { arg, defineCommand, RunContext } from '../src/engine/command';
import { describeError, isMedicError } from '../src/engine/errors';
import { diagnose, DiagnoseInput, Finding, NodeCerts, NodeEvidence, nextCommands } from '../src/engine/diagnose';
import { inspectPki } from '../src/exec/pki';
import type { JobResources } from '../src/actions/context';
import type { Report } from '../src/engine/report';
import { summarize, StatusSummary } from '../src/engine/status-summary';
import type { ClusterSnapshot } from '../src/exec/types';
import { redact, redactLines } from '../src/audit/redact';
import { newestVerified } from '../src/snapshot/retention';

/** Lines of etcd's log read per node: enough to reach past a panic's goroutine dump. */
export const DIAGNOSE_LOG_LINES = 200;
/**
 * Characters of findings one report carries. Slack's section holds 3000 and the notes
 * block is cut at 2500 with its bullets and escaping.
 */
export const DIAGNOSE_NOTES_CHARS = 2300;

export default defineCommand({
  id: 'diagnose',
  summary: 'Which known failure a cluster is in (member down, data wiped, quorum lost, all lost, NOSPACE, stale member, cluster-ID mismatch), from status, etcd\'s logs and the snapshots, with the command that repairs each',
  args: [arg.cluster()],
  risk: 'read',
  async execute(ctx) {
    const { cluster } = ctx;
    const snap = await ctx.probe(cluster);
    const summary = summarize(cluster, snap);
    const alarmed = new Set(snap.probes.flatMap((p) => (p.alarms ?? []).filter((a) => a.alarm !== 'NONE').map((a) => a.memberId)));
    // Healthy nodes have nothing to tell; a node whose member raised an alarm logged why.
    const suspects = snap.probes.filter((p) => !p.health?.healthy || (p.status && alarmed.has(p.status.memberId))).map((p) => p.node);
    const res = ctx.openResources?.(cluster);
    try {
      const [nodes, backups, certs, hashes] = await Promise.all([
        Promise.all(suspects.map((n) => readNode(ctx, n))),
        listBackups(ctx),
        res ? readCerts(ctx, res) : undefined,
        res ? readHashes(ctx, res, summary) : undefined,
      ]);
      const input: DiagnoseInput = { cluster, snapshot: snap, summary, nodes, backups, certs, hashes };
      return diagnoseReport(cluster, snap, summary, diagnose(input), nodes, ctx.jobId, certs, hashes);
    } finally {
      await res?.close().catch(() => undefined);
    }
  },
});

/** Bound on everything read from one node: connect, log tail, runtime state. */
export function nodeReadTimeoutMs(cluster: ClusterConfig): number {
  return cluster.ssh.connectTimeoutMs + cluster.statusTimeoutMs;
}

/** What one node tells over SSH; never rejects: a failure is evidence too. */
async function readNode(ctx: RunContext, node: string): Promise<NodeEvidence> {
  const ev: NodeEvidence = { node };
  if (!ctx.withNode) {
    ev.sshError = { message: 'this worker can\'t open SSH sessions (no SSH key)' };
    return ev;
  }
  let entered = false;
  const work = ctx.withNode(ctx.cluster, node, async (rt) => {
    entered = true;
    try {
      // Redacted as one text as soon as it is read: a key block spans lines, and nothing
      // after this point (findings, quotes, the report) sees the raw log.
      const got = await rt.logs(DIAGNOSE_LOG_LINES);
      ev.logs = { ...got, lines: redactLines(got.lines) };
    } catch (e) {
      ev.logError = failure(e);
    }
    try {
      ev.runtime = await rt.state();
    } catch { /* the log says more; the state is a nicety */ }
  });
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), nodeReadTimeoutMs(ctx.cluster)); });
  try {
    const r = await Promise.race([work.then(() => 'done' as const), deadline]);
    if (r === 'timeout') {
      // withNode closes its session when fn ends; swallow what it says after we stopped listening.
      work.catch(() => undefined);
      const message = `no answer within ${nodeReadTimeoutMs(ctx.cluster)} ms`;
      if (entered) { if (!ev.logs && !ev.logError) ev.logError = { code: 'TIMEOUT', message }; } else ev.sshError = { code: 'TIMEOUT', message };
    }
  } catch (e) {
    if (entered) ev.logError ??= failure(e);
    else ev.sshError = failure(e);
  } finally {
    clearTimeout(timer);
  }
  return ev;
}

/**
 * The expiry of every etcd certificate on every node (ca, server, peer, healthcheck-client
 * in paths.pki), read over SSH, each node bounded like the other reads; a node that can't
 * be read says why. Undefined when this worker has no SSH key.
 */
async function readCerts(ctx: RunContext, res: JobResources): Promise<NodeCerts[]> {
  return Promise.all(ctx.cluster.nodes.map(async (n): Promise<NodeCerts> => {
    try {
      const pki = await within(ctx, res.session(n.name).then((s) => inspectPki(s, ctx.cluster.paths.pki)));
      const notAfter: NodeCerts['notAfter'] = {};
      for (const [name, c] of Object.entries(pki.certs)) if (c?.notAfter) notAfter[name as keyof typeof notAfter] = c.notAfter;
      return { node: n.name, notAfter };
    } catch (e) {
      return { node: n.name, error: failure(e).message };
    }
  }));
}

/**
 * `endpoint hashkv` of every healthy member at the lowest revision they all answered with
 * (each holds it: nothing below was compacted by then, or they could not agree on anything).
 */
async function readHashes(ctx: RunContext, res: JobResources, s: StatusSummary): Promise<DiagnoseInput['hashes']> {
  const healthy = s.members.filter((m) => m.healthy && m.node && !m.isLearner && m.probe?.status?.revision).map((m) => ({ node: m.node!, revision: m.probe!.status!.revision! }));
  if (healthy.length < 2) return undefined;
  const revision = healthy.map((m) => m.revision).reduce((a, b) => (BigInt(b) < BigInt(a) ? b : a));
  const byNode = await Promise.all(healthy.map(async ({ node }) => {
    try {
      const h = await within(ctx, res.etcd(node).then((c) => c.hashKV(revision)));
      return { node, hash: h.hash, compactRevision: h.compactRevision };
    } catch (e) {
      return { node, error: failure(e).message };
    }
  }));
  return { revision, byNode };
}

/** A read from one node, bounded like the others. */
async function within<T>(ctx: RunContext, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${nodeReadTimeoutMs(ctx.cluster)} ms`)), nodeReadTimeoutMs(ctx.cluster));
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
    p.catch(() => undefined);
  }
}

/** "certificates: 12 read on 3 nodes, the first to expire node1 peer.crt on 2027-11-30". */
function certsLine(certs: NodeCerts[] | undefined): string | undefined {
  if (!certs) return undefined;
  const all = certs.flatMap((n) => Object.entries(n.notAfter ?? {}).map(([cert, at]) => ({ node: n.node, cert, at: at! })));
  const failed = certs.filter((n) => n.error).map((n) => `${n.node} (${n.error})`);
  const first = all.sort((a, b) => a.at.localeCompare(b.at))[0];
  return `certificates: ${all.length} read on ${certs.length - failed.length} node${certs.length - failed.length === 1 ? '' : 's'}`
    + `${first ? `, the first to expire ${first.node} ${first.cert}.crt on ${first.at.slice(0, 10)}` : ''}${failed.length ? `; not read on ${failed.join(', ')}` : ''}`;
}

/** "hashkv at revision 1234: node1, node2, node3 agree" (or who differs, or who did not answer). */
function hashesLine(h: NonNullable<DiagnoseInput['hashes']>): string {
  const got = h.byNode.filter((b) => b.hash !== undefined);
  const failed = h.byNode.filter((b) => b.error).map((b) => `${b.node} (${b.error})`);
  const agree = new Set(got.map((b) => b.hash)).size === 1;
  return `hashkv at revision ${h.revision}: ${got.length ? (agree ? `${got.map((b) => b.node).join(', ')} agree` : 'members disagree (see the findings)') : 'no answer'}${failed.length ? `; not answered by ${failed.join(', ')}` : ''}`;
}

function failure(e: unknown): { code?: string; message: string } {
  return { code: isMedicError(e) ? e.code : undefined, message: redact(describeError(e), { maxChars: 300 }) };
}

async function listBackups(ctx: RunContext): Promise<DiagnoseInput['backups']> {
  if (!ctx.snapshots) return undefined;
  try {
    const records = await ctx.snapshots.list(ctx.cluster.name);
    return { newestVerified: newestVerified(records), total: records.length };
  } catch (e) {
    return { error: describeError(e) };
  }
}

/** Length once Slack's mrkdwn escaping has turned & < > into entities, plus "• " and the newline. */
function cost(s: string): number {
  return s.length + (s.match(/[&<>]/g)?.length ?? 0) * 4 + 3;
}

/**
 * One block of notes per finding: "*1. title* [scenario]", its evidence, "→ next". Evidence
 * lines are cut from the longest finding first until everything fits DIAGNOSE_NOTES_CHARS,
 * so every finding keeps its title and its command.
 */
export function findingNotes(findings: readonly Finding[]): string[] {
  const ev = findings.map((f) => f.evidence.map((l) => redact(l, { maxChars: 200 })));
  const head = (f: Finding, i: number) => `*${i + 1}. ${f.title.replace(/\*/g, '')}* [${f.scenario}]`;
  const tail = (f: Finding) => (f.next.length ? [`→ ${f.next.join('  then  ')}`] : []);
  const total = () => findings.reduce((n, f, i) => n + cost(head(f, i)) + ev[i].reduce((m, l) => m + cost(`   ${l}`), 0) + tail(f).reduce((m, l) => m + cost(l), 0), 0);
  let cut = 0;
  const cutNote = () => `(${cut} evidence line${cut === 1 ? '' : 's'} cut to fit the message: /etcd logs and /etcd status show more)`;
  while (total() + (cut ? cost(cutNote()) : 0) > DIAGNOSE_NOTES_CHARS) {
    const longest = ev.reduce((best, lines, i) => (lines.length > ev[best].length ? i : best), 0);
    if (!ev[longest].length) break;
    ev[longest].pop();
    cut += 1;
  }
  const notes = findings.flatMap((f, i) => [head(f, i), ...ev[i].map((l) => `   ${l}`), ...tail(f)]);
  if (cut) notes.push(cutNote());
  return notes;
}

export function diagnoseReport(
  cluster: ClusterConfig, snap: ClusterSnapshot, s: StatusSummary, findings: Finding[], nodes: NodeEvidence[], jobId?: string,
  certs?: NodeCerts[], hashes?: DiagnoseInput['hashes'],
): Report {
  const status = s.verdict === 'unknown'
    ? `unknown: no member could be reached (${s.voters} voting members expected)`
    : `${s.verdict === 'quorum-lost' ? 'quorum lost' : s.verdict}: ${s.healthyVoters}/${s.voters} voting members healthy`;
  const critical = findings.some((f) => f.scenario === 'data-lost' || f.scenario === 'all-members-lost' || f.scenario === 'quorum-lost' || f.scenario === 'nospace-alarm');
  const read = nodes.filter((n) => n.logs).map((n) => `${n.node}: ${n.logs!.source}`);
  return {
    title: `etcd diagnose — ${cluster.name}`,
    verdict: findings.length
      ? { level: critical ? 'critical' : 'warn', text: `${findings.length} finding${findings.length === 1 ? '' : 's'}: ${[...new Set(findings.map((f) => f.scenario))].join(', ')} — status ${status}` }
      : { level: s.verdict === 'healthy' ? 'ok' : 'warn', text: `no known failure scenario recognised — status ${status}` },
    notes: findings.length ? findingNotes(findings) : s.reasons,
    next: findings.length ? nextCommands(findings) : s.next,
    context: [
      `collected ${snap.collectedAt}`,
      read.length ? `logs read (last ${DIAGNOSE_LOG_LINES} lines) from ${read.join(', ')}` : 'no logs read',
      ...(certsLine(certs) ? [certsLine(certs)!] : []),
      ...(hashes ? [hashesLine(hashes)] : []),
      ...(jobId ? [`job ${jobId}`] : []),
    ],
  };
}
