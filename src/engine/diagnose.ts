/**
 * /etcd diagnose: which of the runbook's failure scenarios a cluster is in, from what the
 * bot saw (status probes and their summary), the tail of etcd's log on the nodes whose
 * etcd is not healthy, and the newest verified snapshot. Pure: the command collects, this
 * decides. Each finding quotes the facts it rests on and names the command that repairs it.
 *
 * The log signatures are what etcd 3.4 (zap JSON logger, kubeadm's default) prints in the
 * lab broken each way (test/fixtures/logs/); they are matched on the raw line, so etcd's
 * older text logger (capnslog) prints the same words and matches too.
 */
import type { ClusterConfig } from '../config/schema';
import type { ClusterSnapshot, NodeProbe } from '../exec/types';
import type { RuntimeState } from '../runtime/types';
import type { SnapshotRecord } from '../snapshot/store';
import type { MemberView, StatusSummary } from './status-summary';

export type ScenarioId =
  | 'data-lost'
  | 'all-members-lost'
  | 'quorum-lost'
  | 'cluster-id-mismatch'
  | 'member-data-wiped'
  | 'member-down'
  | 'stale-member'
  | 'config-refused'
  | 'cert-expiry'
  | 'data-inconsistent'
  | 'nospace-alarm';

export interface Finding {
  scenario: ScenarioId;
  /** One line: what is wrong, and the way out. */
  title: string;
  /** The facts it rests on: numbers from status, quoted log lines ("node3: 03:16:31.939 F discovery failed …"). */
  evidence: string[];
  /** Full command lines, most urgent first. */
  next: string[];
}

/** What the bot read on one node over SSH. Any part may be missing; a failure is a fact too. */
export interface NodeEvidence {
  node: string;
  /** The bot could not open an SSH session at all (the node, or its sshd, is down; or access is refused). */
  sshError?: { code?: string; message: string };
  /**
   * The last lines of etcd's log, oldest first, and where they came from (CRI file, journal);
   * already redacted as one text (redactLines) by whoever read them.
   */
  logs?: { source: string; lines: string[] };
  logError?: { code?: string; message: string };
  /** Where etcd's config is, whether etcd runs, whether dataDir/member exists. */
  runtime?: RuntimeState;
}

export interface DiagnoseInput {
  cluster: Pick<ClusterConfig, 'name' | 'nodes'> & { paths?: { dataDir: string; manifest: string } };
  snapshot: ClusterSnapshot;
  summary: StatusSummary;
  /** One entry per node the bot looked at (those whose etcd is not healthy). */
  nodes: NodeEvidence[];
  /**
   * The bot's snapshot store: the newest verified snapshot of the cluster (undefined: none),
   * or why it could not be listed. Absent: the worker has no store.
   */
  backups?: { newestVerified?: SnapshotRecord; total: number } | { error: string };
  /** `endpoint hashkv` of every healthy member at one revision they all hold; absent: not asked. */
  hashes?: { revision: string; byNode: Array<{ node: string; hash?: string; compactRevision?: string; error?: string }> };
  /** Each node's etcd certificates (or why they could not be read); absent: not looked at. */
  certs?: NodeCerts[];
  /** @defaultValue Date.now() */
  now?: number;
}

/** One node's etcd certificates, as read over SSH: name (ca, server, peer, healthcheck-client) -> expiry. */
export interface NodeCerts {
  node: string;
  /** ISO time each certificate expires; missing files are absent. */
  notAfter?: Partial<Record<'ca' | 'server' | 'peer' | 'healthcheck-client', string>>;
  error?: string;
}

/** A certificate expiring within this is a finding (kubeadm's leaf certificates last a year). */
export const CERT_WARN_DAYS = 30;

/**
 * What etcd 3.4 logs in each scenario. Matched on the raw line (JSON or text).
 * - bootstrapped: a member started with `--initial-cluster-state=new` on an empty data dir
 *   while the cluster already knows it: `"msg":"discovery failed","error":"member
 *   75a319cfe56f82d4 has already been bootstrapped"` (fatal; kubelet restarts it forever).
 * - tocommit: the same with `--initial-cluster-state=existing` (what the bot writes): the
 *   leader's commit index is beyond the empty raft log, and raft panics with
 *   `tocommit(29) is out of range [lastIndex(0)]. Was the raft log corrupted, truncated, or lost?`
 * - removed: a member removed from the membership (force-new-cluster elsewhere, member remove)
 *   that still runs with its old data: `the member has been permanently removed from the
 *   cluster` and `data-dir used by this member must be removed`; its peers log
 *   `rejected stream from remote peer because it was removed`.
 * - clusterIdMismatch: `request cluster ID mismatch` (receiver) and `request sent was ignored
 *   by remote peer due to cluster ID mismatch` (sender), with local-member-cluster-id and
 *   remote-peer-cluster-id.
 * - quorumInactive: a leader that lost its followers: `stepped down to follower since quorum
 *   is not active`.
 * - stopped: etcd shut down on request (manifest moved away, SIGTERM): `received signal;
 *   shutting down`, last `closed etcd server`.
 * - nospace: the member over its quota: `message exceeded backend quota; raising alarm` (with
 *   quota-size-bytes), then `alarm raised` with "alarm":"NOSPACE"; writes fail with
 *   `etcdserver: no space` / `mvcc: database space exceeded`.
 */
export const LOG_SIGNS = {
  bootstrapped: /has already been bootstrapped/,
  tocommit: /tocommit\(\d+\) is out of range \[lastIndex\(\d+\)\]/,
  removed: /the member has been permanently removed from the cluster|data-dir used by this member must be removed/,
  rejectedRemoved: /rejected stream from remote peer because it was removed/,
  clusterIdMismatch: /cluster ID mismatch/i,
  quorumInactive: /since quorum is not active/,
  stopped: /received signal; shutting down|closed etcd server/,
  nospace: /exceeded backend quota|"alarm":"NOSPACE"|database space exceeded/,
  // Go's flag package, before etcd's logger exists: a flag this etcd version does not have.
  unknownFlag: /flag provided but not defined: -{1,2}([A-Za-z0-9][A-Za-z0-9-]*)/,
} as const;

/** Order of urgency, and of the next commands: what must run first comes first. */
const URGENCY: Record<ScenarioId, number> = {
  // The cluster serves, but not the data the bot saw: nothing else matters until that is restored.
  'data-lost': -1,
  'all-members-lost': 0,
  'quorum-lost': 1,
  'cluster-id-mismatch': 2,
  'member-data-wiped': 3,
  'member-down': 4,
  'stale-member': 5,
  'config-refused': 5.5,
  'cert-expiry': 5.7,
  // A member serving other data than the rest: before NOSPACE, after the membership repairs.
  'data-inconsistent': 2.5,
  // Defrag is refused while a member is unhealthy: the membership repairs go first.
  'nospace-alarm': 6,
};

/** Failures that say the bot can't get in, not that the node is down. */
const ACCESS_ERRORS = new Set(['SSH_HOST_KEY_MISMATCH', 'SSH_AUTH_FAILED']);

/** Longest evidence line: a finding shows a few, and a Slack section holds 3000 characters. */
export const EVIDENCE_CHARS = 200;
/** Evidence lines per finding, the most telling first. */
export const MAX_EVIDENCE = 5;

// ---------------------------------------------------------------------------------------
// Logs

export interface LogEntry {
  raw: string;
  level?: string;
  /** "03:16:31.939" when the line carries a time. */
  time?: string;
  msg: string;
  fields: Record<string, unknown>;
}

/** A line of etcd's log: zap JSON when it parses, else the text as it is. */
export function parseLogLine(raw: string): LogEntry {
  const t = raw.trim();
  if (t.startsWith('{')) {
    try {
      const rec = JSON.parse(t) as Record<string, unknown>;
      if (rec && typeof rec === 'object' && typeof rec.msg === 'string') {
        const { level, ts, caller: _caller, msg, stacktrace: _stack, ...fields } = rec;
        const time = typeof ts === 'string' ? /T(\d\d:\d\d:\d\d(\.\d{1,3})?)/.exec(ts)?.[1] : undefined;
        return { raw: t, level: typeof level === 'string' ? level : undefined, time, msg, fields };
      }
    } catch { /* not JSON after all */ }
  }
  return { raw: t, msg: t, fields: {} };
}

const LEVEL: Record<string, string> = { debug: 'D', info: 'I', warn: 'W', error: 'E', dpanic: 'E', panic: 'P', fatal: 'F' };
/** Fields worth quoting: they name members, clusters and the error; the rest is noise in a finding. */
const QUOTED_FIELDS = [
  'error', 'local-member-id', 'local-member-cluster-id', 'remote-peer-id', 'remote-peer-server-name',
  'remote-peer-cluster-id', 'remote-peer-id-from', 'peer-id', 'alarm', 'quota-size-bytes', 'quota-size',
];

/** "node3: 03:16:31.939 F discovery failed error=member … has already been bootstrapped", cut to EVIDENCE_CHARS. */
export function quote(node: string, e: LogEntry): string {
  const fields = QUOTED_FIELDS.filter((k) => e.fields[k] !== undefined)
    .map((k) => `${k}=${typeof e.fields[k] === 'string' ? e.fields[k] as string : JSON.stringify(e.fields[k])}`);
  const body = e.level === undefined && e.time === undefined
    ? e.raw
    : [e.time, LEVEL[e.level ?? ''] ?? e.level, e.msg, ...fields].filter(Boolean).join(' ');
  return cut(`${node}: ${body}`, EVIDENCE_CHARS);
}

function cut(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

/** The crash-loop count kubelet puts in the file name (/var/log/pods/…/etcd/<restarts>.log). */
export function restartsOf(source: string | undefined): number | undefined {
  const m = source ? /\/(\d+)\.log$/.exec(source) : null;
  return m ? Number(m[1]) : undefined;
}

// ---------------------------------------------------------------------------------------
// Per-node view

interface NodeView {
  name: string;
  probe?: NodeProbe;
  /** The member this node stands for in the summary, if any. */
  member?: MemberView;
  /** etcd answered status. */
  answers: boolean;
  healthy: boolean;
  ev?: NodeEvidence;
  entries: LogEntry[];
  /** The bot can't log in: nothing it sees says the node is down. */
  accessDenied: boolean;
}

function views(input: DiagnoseInput): NodeView[] {
  const { cluster, snapshot, summary } = input;
  return cluster.nodes.map((n) => {
    const probe = snapshot.probes.find((p) => p.node === n.name);
    const ev = input.nodes.find((x) => x.node === n.name);
    return {
      name: n.name,
      probe,
      member: summary.members.find((m) => m.node === n.name),
      answers: !!probe?.status,
      healthy: !!probe?.health?.healthy,
      ev,
      entries: (ev?.logs?.lines ?? []).map(parseLogLine),
      accessDenied: ACCESS_ERRORS.has(probe?.errorCode ?? '') || ACCESS_ERRORS.has(ev?.sshError?.code ?? ''),
    };
  });
}

function matching(v: NodeView, sign: RegExp): LogEntry[] {
  return v.entries.filter((e) => sign.test(e.raw));
}

/** The last n entries matching any sign, oldest first. */
function lastMatching(v: NodeView, signs: RegExp[], n: number): LogEntry[] {
  return v.entries.filter((e) => signs.some((s) => s.test(e.raw))).slice(-n);
}

/** A line of a Go panic's goroutine dump: says nothing a user can act on. */
function isStackLine(e: LogEntry): boolean {
  return e.level === undefined && (/^(goroutine \d+|created by |[\w./*()-]+\(.*\)$|\S+\.go:\d+)/.test(e.raw) || e.raw === '');
}

/** The lines that say most about a node that is down: its last errors, else its last line. */
function lastWords(v: NodeView, n = 2): string[] {
  const lines = v.entries.filter((e) => !isStackLine(e));
  const loud = lines.filter((e) => e.level === 'fatal' || e.level === 'panic' || e.level === 'error');
  const picked = loud.length ? loud.slice(-n) : lines.slice(-1);
  return picked.map((e) => quote(v.name, e));
}

/** Where the log was read, and how many times etcd restarted (crash loop) if the file name says. */
function logSourceLine(v: NodeView): string | undefined {
  const src = v.ev?.logs?.source;
  if (!src) return undefined;
  const restarts = restartsOf(src);
  return restarts !== undefined && restarts > 0
    ? `${v.name}: etcd's container has restarted ${restarts} time${restarts === 1 ? '' : 's'} (crash loop; log ${src})`
    : undefined;
}

/** What the bot knows of a node's etcd that does not answer: probe, SSH, runtime. */
function whyNotAnswering(v: NodeView, dataDir: string): string[] {
  const out: string[] = [];
  // When the probe already failed on SSH, the SSH line below says the same.
  const sshProbe = !!v.ev?.sshError && (v.probe?.errorCode ?? '').startsWith('SSH_');
  if (v.probe && !v.probe.reachable) {
    if (!sshProbe) out.push(`${v.name}: ${v.probe.unreachableReason ?? 'etcd did not answer'}`);
  } else if (v.probe && !v.healthy) out.push(`${v.name}: answers status but fails the health read: ${v.probe.health?.error ?? v.probe.status?.errors.join('; ') ?? 'no answer'}`);
  if (v.ev?.sshError) out.push(`${v.name}: the bot can't log in over SSH either (${v.ev.sshError.message}): the node itself looks down`);
  const rt = v.ev?.runtime;
  if (rt) {
    const config = rt.config === 'active' ? 'its config is in place' : rt.config === 'stopped' ? 'its config was set aside by the bot' : 'its config is not in place (manifest moved away?)';
    const data = rt.hasData ? `${dataDir}/member exists` : `${dataDir}/member is missing`;
    out.push(`${v.name}: SSH works; ${rt.running ? 'an etcd process runs' : 'no etcd process runs'}; ${config}; ${data}`);
  }
  if (v.ev?.logError && !v.ev.sshError) out.push(`${v.name}: etcd's log could not be read: ${v.ev.logError.message}`);
  return out;
}

// ---------------------------------------------------------------------------------------
// Scenarios

interface Ctx {
  input: DiagnoseInput;
  c: string;
  vs: NodeView[];
  s: StatusSummary;
  dataDir: string;
  /** Nodes a node-level finding already explains (one finding per node). */
  explained: Set<string>;
  /** Quorum is lost: membership commands can't run until force-new-cluster. */
  quorumLost: boolean;
}

/**
 * Peers rejecting each other's cluster ID: which node is on the other cluster. Each log
 * line names the writer's cluster (local-member-cluster-id) and the peer's
 * (remote-peer-cluster-id, with the peer's member id); member ids are mapped to nodes through
 * the probes and the member list. The cluster of the healthy members (else of most nodes)
 * is the real one.
 */
function clusterIdMismatch(x: Ctx): Finding | undefined {
  const withLines = x.vs.filter((v) => matching(v, LOG_SIGNS.clusterIdMismatch).length > 0);
  if (!withLines.length) return undefined;
  const nodeOfMember = new Map<string, string>();
  for (const v of x.vs) if (v.probe?.status) nodeOfMember.set(v.probe.status.memberId, v.name);
  for (const m of x.s.members) if (m.id && m.node && !nodeOfMember.has(m.id)) nodeOfMember.set(m.id, m.node);
  const clusterOf = new Map<string, string>();
  const ownId = new Map<string, string>();
  const str = (e: LogEntry, k: string) => (typeof e.fields[k] === 'string' ? e.fields[k] as string : undefined);
  for (const v of withLines) {
    for (const e of matching(v, LOG_SIGNS.clusterIdMismatch)) {
      const local = str(e, 'local-member-cluster-id');
      if (local && !clusterOf.has(v.name)) clusterOf.set(v.name, local);
      const localId = str(e, 'local-member-id');
      if (localId && !ownId.has(v.name)) ownId.set(v.name, localId);
    }
  }
  for (const v of withLines) {
    for (const e of matching(v, LOG_SIGNS.clusterIdMismatch)) {
      const remote = str(e, 'remote-peer-cluster-id');
      const peer = nodeOfMember.get(str(e, 'remote-peer-server-name') ?? '') ?? nodeOfMember.get(str(e, 'remote-peer-id') ?? '');
      if (remote && peer && peer !== v.name && !clusterOf.has(peer)) clusterOf.set(peer, remote);
    }
  }
  // The real cluster: the one healthy members are on, else the one most nodes are on.
  const vote = (names: string[]) => {
    const n = new Map<string, number>();
    for (const name of names) { const cid = clusterOf.get(name); if (cid) n.set(cid, (n.get(cid) ?? 0) + 1); }
    const ranked = [...n.entries()].sort((a, b) => b[1] - a[1]);
    return ranked.length && (ranked.length === 1 || ranked[0][1] > ranked[1][1]) ? ranked[0][0] : undefined;
  };
  const main = vote(x.vs.filter((v) => v.healthy).map((v) => v.name)) ?? vote(x.vs.map((v) => v.name));
  let odd = main ? x.vs.filter((v) => clusterOf.has(v.name) && clusterOf.get(v.name) !== main).map((v) => v.name) : [];
  // Without cluster ids: a node whose own member id the cluster's member list doesn't know.
  const listed = new Set(x.s.members.map((m) => m.id));
  if (!odd.length) odd = withLines.filter((v) => ownId.has(v.name) && !listed.has(ownId.get(v.name)) && !v.healthy).map((v) => v.name);

  const evidence: string[] = [];
  const byCluster = new Map<string, string[]>();
  for (const [node, cid] of clusterOf) byCluster.set(cid, [...(byCluster.get(cid) ?? []), node]);
  for (const name of odd) {
    const own = ownId.get(name);
    const m = x.s.members.find((mm) => mm.node === name);
    if (own && !listed.has(own)) {
      evidence.push(`${name} runs as member ${own}${clusterOf.get(name) ? ` of cluster ${clusterOf.get(name)}` : ''}, which the cluster's member list doesn't have${m?.id ? ` (${name} is member ${m.id} there)` : ''}`);
    }
  }
  if (main) {
    const mainNodes = (byCluster.get(main) ?? []).sort();
    evidence.push(`cluster ${main}: ${mainNodes.join(', ') || '?'}${mainNodes.some((n) => x.vs.find((v) => v.name === n)?.healthy) ? ' (the healthy members)' : ''}; ${[...byCluster.entries()].filter(([cid]) => cid !== main).map(([cid, ns]) => `cluster ${cid}: ${ns.sort().join(', ')}`).join('; ')}`);
  }
  for (const v of withLines) {
    const lines = matching(v, LOG_SIGNS.clusterIdMismatch);
    const shown = [lines.find((e) => /request cluster ID mismatch/.test(e.msg)), lines.find((e) => /ignored by remote peer/.test(e.msg))].filter((e): e is LogEntry => !!e);
    for (const e of (shown.length ? shown : lines.slice(-1)).slice(0, 1)) evidence.push(quote(v.name, e));
    evidence.push(`${v.name}: ${lines.length} cluster-ID-mismatch line${lines.length === 1 ? '' : 's'} in the last ${v.entries.length} of its log`);
  }
  odd.forEach((n) => x.explained.add(n));
  if (!odd.length) {
    return {
      scenario: 'cluster-id-mismatch',
      title: 'peers reject each other with a cluster-ID mismatch, and what the bot saw does not tell which node is on the other cluster',
      evidence,
      next: withLines.map((v) => `/etcd logs ${x.c} ${v.name} 100`),
    };
  }
  return {
    scenario: 'cluster-id-mismatch',
    title: `${odd.join(', ')} ${odd.length === 1 ? 'is' : 'are'} on another cluster (different cluster ID): ${odd.length === 1 ? 'it was' : 'they were'} started with another --initial-cluster-token or restored alone, and the members reject ${odd.length === 1 ? 'it' : 'them'}: rebuild ${odd.length === 1 ? 'its member' : 'their members'}`,
    evidence,
    next: x.quorumLost ? [] : odd.map((n) => `/etcd replace-member ${x.c} ${n}`),
  };
}

/** Raft index far below the others': a member that came back empty (answers, but has almost nothing). */
function farBehind(v: NodeView, vs: NodeView[]): { index: bigint; best: bigint } | undefined {
  if (!v.probe?.status || v.healthy) return undefined;
  const others = vs.filter((o) => o !== v && o.healthy && o.probe?.status).map((o) => BigInt(o.probe!.status!.raftIndex));
  if (!others.length) return undefined;
  const best = others.reduce((a, b) => (a > b ? a : b));
  const index = BigInt(v.probe.status.raftIndex);
  return index * 10n < best && best - index >= 100n ? { index, best } : undefined;
}

function dataWiped(x: Ctx): Finding[] {
  const out: Finding[] = [];
  for (const v of x.vs) {
    if (v.healthy || x.explained.has(v.name) || !v.member) continue;
    const signs = lastMatching(v, [LOG_SIGNS.bootstrapped, LOG_SIGNS.tocommit], 2);
    const behind = farBehind(v, x.vs);
    const noData = v.ev?.runtime && !v.ev.runtime.hasData && v.ev.runtime.config !== 'absent';
    if (!signs.length && !behind && !noData) continue;
    const evidence: string[] = signs.slice(-1).map((e) => quote(v.name, e));
    if (signs.some((e) => LOG_SIGNS.bootstrapped.test(e.raw))) {
      evidence.push(`${v.name}: etcd started on an empty data dir with --initial-cluster-state=new, while the cluster still has this member: it refuses to start`);
    }
    if (signs.some((e) => LOG_SIGNS.tocommit.test(e.raw))) {
      evidence.push(`${v.name}: the leader's commit index is beyond ${v.name}'s empty raft log: its WAL was lost`);
    }
    if (behind) evidence.push(`${v.name}: raft index ${behind.index}, the healthy members are at ${behind.best}`);
    if (noData) evidence.push(`${v.name}: ${x.dataDir}/member does not exist`);
    const src = logSourceLine(v);
    if (src) evidence.push(src);
    evidence.push(...signs.slice(0, -1).map((e) => quote(v.name, e)));
    x.explained.add(v.name);
    out.push({
      scenario: 'member-data-wiped',
      title: `${v.name}'s data was wiped: its member${v.member.id ? ` (${v.member.id})` : ''} is still in the cluster but ${v.name} has no raft log to serve it: replace the member`,
      evidence,
      next: x.quorumLost ? [] : [`/etcd replace-member ${x.c} ${v.name}`],
    });
  }
  return out;
}

/**
 * etcd exits at once because its configuration carries a flag this etcd version does not
 * have: a manifest written for another version (etcd 3.6 added --feature-gates and took the
 * --experimental- prefix off many flags; 3.5 knows neither spelling of some, 3.7 drops the old one).
 */
function configRefused(x: Ctx): Finding[] {
  const out: Finding[] = [];
  for (const v of x.vs) {
    if (v.healthy) continue;
    const hit = lastMatching(v, [LOG_SIGNS.unknownFlag], 1)[0];
    if (!hit) continue;
    const flag = `--${LOG_SIGNS.unknownFlag.exec(hit.raw)![1]}`;
    const evidence = [quote(v.name, hit)];
    const src = logSourceLine(v);
    if (src) evidence.push(src);
    evidence.push(/^--experimental-/.test(flag)
      ? `${flag} is an etcd 3.5 spelling: the etcd this manifest runs dropped the --experimental- prefix (3.6 takes ${flag.replace('--experimental-', '--')})`
      : `${flag} is not a flag of the etcd this manifest runs: it was written for another etcd version (3.6 flags such as --feature-gates and the de-prefixed --snapshot-catchup-entries do not exist in 3.5)`);
    evidence.push(`edit ${x.input.cluster.paths?.manifest ?? 'the etcd manifest'} on ${v.name}: rename or remove ${flag}, or run the image the manifest was written for; kubelet restarts etcd by itself`);
    x.explained.add(v.name);
    out.push({
      scenario: 'config-refused',
      title: `${v.name}'s etcd refuses its configuration: ${flag} is unknown to this etcd version, so it exits at start; fix the manifest (no bot command repairs this)`,
      evidence,
      next: [],
    });
  }
  return out;
}

/**
 * Members of one cluster hold the same keys at the same revision: `hashkv` at a revision
 * they all have must agree. A member whose hash differs serves other data (corruption, or a
 * member rebuilt from other data): the majority's is the cluster's; replace the odd ones.
 */
function dataInconsistent(x: Ctx): Finding | undefined {
  const h = x.input.hashes;
  const got = (h?.byNode ?? []).filter((b) => b.hash !== undefined);
  if (!h || got.length < 2) return undefined;
  const groups = new Map<string, string[]>();
  for (const b of got) groups.set(b.hash!, [...(groups.get(b.hash!) ?? []), b.node]);
  if (groups.size < 2) return undefined;
  const sorted = [...groups.entries()].sort((a, b) => b[1].length - a[1].length);
  const majority = sorted[0][1].length > got.length / 2 ? sorted[0] : undefined;
  const odd = majority ? sorted.slice(1).flatMap(([, nodes]) => nodes) : [];
  const evidence = sorted.map(([hash, nodes]) => `hashkv at revision ${h.revision}: ${nodes.join(', ')} ${nodes.length === 1 ? 'has' : 'have'} ${hash}`);
  evidence.push(majority
    ? `${odd.join(', ')} disagree${odd.length === 1 ? 's' : ''} with the majority (${majority[1].join(', ')}): ${odd.length === 1 ? 'its' : 'their'} data is not the cluster's. Replace ${odd.length === 1 ? 'it' : 'them'}; etcd may also raise CORRUPT`
    : 'no majority: the bot can\'t tell which members hold the cluster\'s data. Compare the newest snapshot with each member before repairing anything');
  return {
    scenario: 'data-inconsistent',
    title: majority
      ? `${odd.join(', ')} hold${odd.length === 1 ? 's' : ''} other data than the rest: the members' hashes at revision ${h.revision} disagree; replace ${odd.length === 1 ? 'that member' : 'those members'}`
      : `the members' data disagree at revision ${h.revision} and no majority agrees: don't repair anything before comparing with a snapshot`,
    evidence,
    next: x.quorumLost ? [] : odd.map((n) => `/etcd replace-member ${x.c} ${n}`),
  };
}

/** Every etcd certificate on every node that expires within CERT_WARN_DAYS, or already has. */
function certExpiry(x: Ctx): Finding | undefined {
  const now = x.input.now ?? Date.now();
  const soon: Array<{ node: string; cert: string; at: string; days: number }> = [];
  for (const n of x.input.certs ?? []) {
    for (const [cert, at] of Object.entries(n.notAfter ?? {})) {
      const days = Math.floor((Date.parse(at!) - now) / 86_400_000);
      if (days < CERT_WARN_DAYS) soon.push({ node: n.node, cert, at: at!, days });
    }
  }
  if (!soon.length) return undefined;
  soon.sort((a, b) => a.days - b.days);
  const expired = soon.filter((c) => c.days < 0);
  const what = (c: typeof soon[number]) => `${c.node} ${c.cert}.crt ${c.days < 0 ? `expired ${c.at}` : `expires ${c.at} (in ${c.days} day${c.days === 1 ? '' : 's'})`}`;
  const ca = soon.some((c) => c.cert === 'ca');
  const evidence = soon.map(what);
  evidence.push(ca
    ? 'the etcd CA itself expires: every certificate it signed stops working with it. Plan a CA rotation (new CA, re-issued certificates on every node) before that date'
    : 'renew them on each node (kubeadm certs renew etcd-server etcd-peer etcd-healthcheck-client), then restart etcd there one node at a time; replace-member also re-issues a node\'s certificates');
  return {
    scenario: 'cert-expiry',
    title: expired.length
      ? `etcd certificates have expired: ${expired.map(what).join(', ')}: members and clients refuse them`
      : `etcd certificates expire within ${CERT_WARN_DAYS} days: ${soon.slice(0, 3).map(what).join(', ')}${soon.length > 3 ? `, and ${soon.length - 3} more` : ''}`,
    evidence,
    next: [],
  };
}

/** Configured nodes that are not members: removed (force-new-cluster, member remove) and maybe still running. */
function removedNodes(x: Ctx): Finding[] {
  const out: Finding[] = [];
  const listed = new Set(x.s.members.map((m) => m.id));
  for (const v of x.vs) {
    if (x.explained.has(v.name)) continue;
    const notMember = x.s.notMembers.includes(v.name);
    const removedLines = lastMatching(v, [LOG_SIGNS.removed], 2);
    const answersAsStranger = !!v.probe?.status && !listed.has(v.probe.status.memberId);
    if (!notMember && !removedLines.length) continue;
    if (!notMember && v.healthy) continue;
    const members = x.s.members.map((m) => `${m.name} ${m.id ?? '?'}`).join(', ');
    const evidence: string[] = [];
    if (notMember) evidence.push(`${v.name} is in clusters.yaml but not in the member list (members: ${members || 'none'})`);
    evidence.push(...removedLines.map((e) => quote(v.name, e)));
    if (answersAsStranger) evidence.push(`${v.name}'s etcd answers as member ${v.probe!.status!.memberId}, which the cluster doesn't know`);
    const src = logSourceLine(v);
    if (src) evidence.push(src);
    const running = removedLines.length > 0 || answersAsStranger || !!v.ev?.runtime?.running;
    x.explained.add(v.name);
    out.push({
      scenario: 'stale-member',
      title: running
        ? `${v.name} was removed from the cluster (after force-new-cluster, or member remove) but its etcd still runs with its old identity: add it back as a new member (its old data is moved aside)`
        : `${v.name} is configured but is not a member of the cluster: add it back`,
      evidence,
      next: x.quorumLost ? [] : [`/etcd add-member ${x.c} ${v.name}`],
    });
  }
  return out;
}

/** Members no configured node stands for: left behind after force-new-cluster or a rebuild. */
function unknownMembers(x: Ctx): Finding[] {
  const explainedPeers = new Set(x.input.cluster.nodes.filter((n) => x.explained.has(n.name)).map((n) => n.peerUrl));
  return x.s.members.filter((m) => m.unknownToConfig && m.id && !m.healthy).filter((m) => {
    // A member whose node another finding explains (e.g. the other-cluster node's old member) is covered there.
    const peers = x.input.snapshot.probes.flatMap((p) => p.members ?? []).find((mm) => mm.id === m.id)?.peerUrls ?? [];
    return !x.explained.has(m.name) && !peers.some((u) => explainedPeers.has(u));
  }).map((m): Finding => ({
    scenario: 'stale-member',
    title: `member ${m.id} (${m.name}) is in the member list but no configured node answers as it: a member left behind; remove it (unless it is a node missing from clusters.yaml)`,
    evidence: [
      `member list: ${x.s.members.map((mm) => `${mm.name} ${mm.id ?? '?'}${mm.unknownToConfig ? ' (no node answers as it)' : ''}`).join(', ')}`,
      `voting members ${x.s.voters}, healthy ${x.s.healthyVoters}, quorum ${x.s.quorum}: a dead member still counts towards quorum`,
    ],
    next: x.quorumLost ? [] : [`/etcd remove-member ${x.c} ${m.id}`],
  }));
}

function membersDown(x: Ctx): Finding[] {
  const out: Finding[] = [];
  for (const v of x.vs) {
    if (v.healthy || x.explained.has(v.name) || !v.member || v.accessDenied) continue;
    // A learner catching up is not down: it answers and serves no health read by design.
    if (v.member.isLearner && v.answers) continue;
    const stopped = lastMatching(v, [LOG_SIGNS.stopped], 1);
    const why = whyNotAnswering(v, x.dataDir);
    const src = logSourceLine(v);
    const evidence = [
      ...why.slice(0, 2),
      ...(stopped.length ? stopped.map((e) => quote(v.name, e)) : lastWords(v, 1)),
      ...(src ? [src] : []),
      `quorum holds: ${x.s.healthyVoters}/${x.s.voters} voting members healthy, ${x.s.tolerable} more failure${x.s.tolerable === 1 ? '' : 's'} tolerable`,
      ...why.slice(2),
    ];
    const how = v.ev?.sshError ? 'start the node again' : stopped.length ? 'put its manifest back / start etcd again' : 'start it again';
    x.explained.add(v.name);
    out.push({
      scenario: 'member-down',
      title: `${v.name}'s member is down${stopped.length ? ' (etcd was stopped)' : ''}: if its data is intact, ${how}; otherwise replace the member`,
      evidence,
      next: [`/etcd replace-member ${x.c} ${v.name}`],
    });
  }
  return out;
}

function quorumLost(x: Ctx): Finding {
  const bad = x.vs.filter((v) => v.member && !v.member.isLearner && !v.healthy && !v.answers);
  const index = (v: NodeView) => BigInt(v.probe!.status!.raftIndex);
  // The survivor with the highest raft index has the most data: it should seed the new cluster.
  const survivors = x.vs.filter((v) => v.answers && v.member && !v.member.isLearner && !x.explained.has(v.name))
    .sort((a, b) => (index(b) > index(a) ? 1 : index(b) < index(a) ? -1 : 0));
  const best = survivors[0];
  const evidence = [
    `${x.s.healthyVoters} of ${x.s.voters} voting members healthy, quorum needs ${x.s.quorum}: the cluster can't commit writes or membership changes`,
    ...survivors.slice(0, 2).map((v) => `${v.name} answers with its data: raft index ${v.probe!.status!.raftIndex}, term ${v.probe!.status!.raftTerm}${v.probe!.status!.errors.length ? ` (${v.probe!.status!.errors.join('; ')})` : ''}`),
    ...(best ? [`if ${bad.map((v) => v.name).join(', ') || 'the other members'} can be started again with ${bad.length === 1 ? 'its' : 'their'} data, quorum comes back by itself: prefer that; force-new-cluster keeps only ${best.name}'s data`] : []),
    ...x.vs.flatMap((v) => lastMatching(v, [LOG_SIGNS.quorumInactive], 1).map((e) => quote(v.name, e))).slice(0, 1),
    ...bad.map((v) => nodeLine(v, x.dataDir)),
  ];
  return {
    scenario: 'quorum-lost',
    title: best
      ? `quorum lost: force a new cluster from ${best.name} (highest raft index, ${best.probe!.status!.raftIndex}), then rebuild the others`
      : 'quorum lost, and no member with its data answers',
    evidence,
    next: best ? [`/etcd force-new-cluster ${x.c} ${best.name}`] : [`/etcd status ${x.c}`],
  };
}

/** One line per node for a cluster where nothing answers: what SSH and the runtime say. */
function nodeLine(v: NodeView, dataDir: string): string {
  const rt = v.ev?.runtime;
  if (v.accessDenied) return `${v.name}: the bot is refused (${v.probe?.errorCode ?? v.ev?.sshError?.code}): nothing known of its etcd`;
  if (v.ev?.sshError) return `${v.name}: unreachable over SSH too (${v.ev.sshError.message}): the node looks down`;
  if (!rt) return `${v.name}: ${v.probe?.unreachableReason ?? 'etcd did not answer'}`;
  const config = rt.config === 'active' ? 'config in place' : rt.config === 'stopped' ? 'config set aside by the bot' : 'manifest not in place';
  return `${v.name}: SSH works; ${rt.running ? 'etcd runs but does not answer' : 'no etcd process'}; ${config}; ${dataDir}/member ${rt.hasData ? 'exists' : 'missing'}`;
}

/**
 * The cluster contradicts what the bot saw before (engine/cluster-memory): its revision went
 * backwards, it came back empty, its cluster id changed, or members answer for different
 * clusters. Restore from the newest verified snapshot.
 */
function dataLost(x: Ctx): Finding | undefined {
  const found = x.input.snapshot.memory?.findings ?? [];
  if (!found.length) return undefined;
  const b = x.input.backups;
  const snap = b && 'newestVerified' in b ? b.newestVerified : undefined;
  const evidence = found.map((f) => f.text);
  evidence.push(snap
    ? `newest verified snapshot: ${snap.id}, revision ${snap.revision === '0' ? 'unknown' : snap.revision}${snap.liveKeys !== undefined ? `, ${snap.liveKeys} keys` : ''}, taken ${snap.createdAt} from ${snap.node}`
    : 'no verified snapshot in the bot\'s store: restore from your own backup');
  return {
    scenario: 'data-lost',
    title: `data lost: ${found.map((f) => f.kind.replace(/-/g, ' ')).join(', ')}; the members may read healthy, but they do not hold the data the bot saw${snap ? `: restore from ${snap.id}` : ''}`,
    evidence,
    next: [...(snap ? [`/etcd restore ${x.c} ${snap.id} --mode all`] : []), `/etcd forget ${x.c}`],
  };
}

function allLost(x: Ctx): Finding {
  const evidence: string[] = [];
  const b = x.input.backups;
  const snap = b && 'newestVerified' in b ? b.newestVerified : undefined;
  if (snap) {
    evidence.push(`newest verified snapshot: ${snap.id}, revision ${snap.revision === '0' ? 'unknown' : snap.revision}${snap.liveKeys !== undefined ? `, ${snap.liveKeys} keys` : ''}, taken ${snap.createdAt} from ${snap.node}`);
  } else {
    evidence.push(b === undefined ? 'this worker has no snapshot store: it can\'t offer a restore'
      : 'error' in b ? `the bot's snapshots could not be listed: ${b.error}`
        : `no verified snapshot of ${x.c} in the bot's store (${b.total} snapshot${b.total === 1 ? '' : 's'} in all)`);
  }
  const intact = x.vs.filter((v) => v.ev?.runtime?.hasData).map((v) => v.name);
  if (intact.length) {
    evidence.push(`${intact.join(', ')} still ${intact.length === 1 ? 'has its' : 'have their'} data dir: starting etcd there again keeps every write; a restore loses what was written after the snapshot`);
  }
  const access = x.vs.filter((v) => v.accessDenied).map((v) => v.name);
  if (access.length) evidence.push(`the bot can't log in to ${access.join(', ')}: fix its access and look again before restoring`);
  evidence.push(...x.vs.map((v) => nodeLine(v, x.dataDir)));
  evidence.push(...x.vs.flatMap((v) => lastMatching(v, [LOG_SIGNS.stopped], 1).map((e) => quote(v.name, e))).slice(0, 1));
  if (snap) {
    return {
      scenario: 'all-members-lost',
      title: `all members lost: no member's etcd answers; restore every node from the newest verified snapshot ${snap.id}${intact.length ? ' (or first start etcd again where the data is intact)' : ''}`,
      evidence,
      next: [`/etcd restore ${x.c} ${snap.id} --mode all`],
    };
  }
  return {
    scenario: 'all-members-lost',
    title: 'all members lost: no member\'s etcd answers, and there is no verified snapshot to restore: start etcd again on a node whose data dir is intact, then force a new cluster from it if the others stay lost',
    evidence,
    next: [`/etcd snapshot list ${x.c}`, `/etcd status ${x.c}`],
  };
}

function noSpace(x: Ctx): Finding | undefined {
  const raised = x.s.alarms.filter((a) => a.alarm === 'NOSPACE');
  if (!raised.length) return undefined;
  const sized = x.s.members.filter((m) => m.probe?.status);
  const evidence = [
    `alarm NOSPACE raised on ${raised.map((a) => a.member).join(', ')}: the cluster refuses writes until it is disarmed`,
    ...x.vs.flatMap((v) => {
      const lines = matching(v, LOG_SIGNS.nospace);
      const best = lines.find((e) => /exceeded backend quota/.test(e.raw)) ?? lines[lines.length - 1];
      return best ? [quote(v.name, best)] : [];
    }).slice(0, 2),
    ...(sized.length ? [`DB size (in use): ${sized.map((m) => `${m.name} ${mib(m.probe!.status!.dbSize)} (${m.probe!.status!.dbSizeInUse ? mib(m.probe!.status!.dbSizeInUse) : '?'})`).join(', ')}`] : []),
  ];
  if (x.s.healthyVoters < x.s.voters) evidence.splice(1, 0, 'defrag is refused while a member is unhealthy: repair the members first (above)');
  return {
    scenario: 'nospace-alarm',
    title: 'NOSPACE alarm: the backend quota is exhausted; defragment to give the space back, then disarm the alarm',
    evidence,
    next: [`/etcd defrag ${x.c}`, `/etcd alarm-disarm ${x.c}`],
  };
}

function mib(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${Math.round(bytes / 1024)} KiB`;
}

/** Every scenario recognised, most urgent first. Nothing recognised: []. */
export function diagnose(input: DiagnoseInput): Finding[] {
  const s = input.summary;
  const vs = views(input);
  const answering = vs.some((v) => v.answers);
  const x: Ctx = {
    input, c: input.cluster.name, vs, s, dataDir: input.cluster.paths?.dataDir ?? '/var/lib/etcd',
    explained: new Set(),
    quorumLost: answering && s.voters > 0 && s.healthyVoters < s.quorum,
  };
  const findings: Finding[] = [];
  if (!answering) {
    // Nothing answered, and every failure is the bot being refused: that is not a lost cluster.
    if (vs.every((v) => v.accessDenied)) return [];
    // Expired certificates are one way for every member to stop answering.
    const certs = certExpiry(x);
    return finish([allLost(x), ...(certs ? [certs] : [])]);
  }
  const lost = dataLost(x);
  if (lost) findings.push(lost);
  const mismatch = clusterIdMismatch(x);
  if (mismatch) findings.push(mismatch);
  findings.push(...configRefused(x), ...dataWiped(x), ...removedNodes(x));
  if (x.quorumLost) findings.push(quorumLost(x));
  else findings.push(...membersDown(x));
  findings.push(...unknownMembers(x));
  const split = dataInconsistent(x);
  if (split) findings.push(split);
  const certs = certExpiry(x);
  if (certs) findings.push(certs);
  const ns = noSpace(x);
  if (ns) findings.push(ns);
  if (x.quorumLost) {
    for (const f of findings) {
      if (f.scenario !== 'quorum-lost' && f.next.length === 0 && f.scenario !== 'nospace-alarm') {
        f.evidence.splice(1, 0, 'membership changes can\'t commit while quorum is lost: force-new-cluster first; its plan rebuilds the other members');
      }
    }
  }
  return finish(findings);
}

/** Most urgent first; evidence capped to what a message can show. */
function finish(findings: Finding[]): Finding[] {
  return findings.sort((a, b) => URGENCY[a.scenario] - URGENCY[b.scenario])
    .map((f) => ({ ...f, evidence: f.evidence.slice(0, MAX_EVIDENCE).map((l) => cut(l, EVIDENCE_CHARS)) }));
}

/** Every suggested command, most urgent first, each once. */
export function nextCommands(findings: readonly Finding[]): string[] {
  return [...new Set(findings.flatMap((f) => f.next))];
}
