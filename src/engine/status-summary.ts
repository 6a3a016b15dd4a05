import type { ClusterConfig } from '../config/schema';
import type { ClusterSnapshot, MemberInfo, NodeProbe } from '../exec/types';

export type Verdict = 'healthy' | 'degraded' | 'quorum-lost' | 'unknown';

export interface MemberView {
  /** Config node name, or the member's own name when no configured node matches. */
  name: string;
  id?: string;
  node?: string;
  probe?: NodeProbe;
  isLearner: boolean;
  isLeader: boolean;
  healthy: boolean;
  /** In the member list but not in clusters.yaml (e.g. left behind after force-new-cluster). */
  unknownToConfig: boolean;
}

export interface StatusSummary {
  verdict: Verdict;
  members: MemberView[];
  voters: number;
  healthyVoters: number;
  quorum: number;
  tolerable: number;
  leader?: { id: string; name: string };
  alarms: Array<{ member: string; alarm: string }>;
  unreachable: Array<{ node: string; reason: string }>;
  /** Configured nodes that are not members at all (never joined, or removed). */
  notMembers: string[];
  next: string[];
  reasons: string[];
}

/** host:port of a member URL, for matching members to configured nodes (never throws). */
export function hostOf(url: string): string {
  return url.replace(/^[a-z]+:\/\//, '');
}

/** The member list we trust most: the leader's, else the longest any member returned. */
function memberList(probes: NodeProbe[]): MemberInfo[] | undefined {
  const withList = probes.filter((p) => p.members && p.members.length > 0);
  const fromLeader = withList.find((p) => p.status && p.status.leader === p.status.memberId);
  if (fromLeader) return fromLeader.members;
  return withList.sort((a, b) => (b.members!.length - a.members!.length))[0]?.members;
}

function agreedLeader(probes: NodeProbe[]): string | undefined {
  const votes = new Map<string, number>();
  for (const p of probes) {
    const l = p.status?.leader;
    if (l && !/^0+$/.test(l)) votes.set(l, (votes.get(l) ?? 0) + 1);
  }
  return [...votes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
}

/**
 * Pure: what the probes mean. A member counts as healthy only when its own health check
 * (a linearizable read) passed — a member that answers status but can't reach quorum is
 * not healthy.
 */
export function summarize(cluster: ClusterConfig, snap: ClusterSnapshot): StatusSummary {
  const probes = snap.probes;
  const list = memberList(probes);
  const leaderId = agreedLeader(probes);
  const byNode = new Map(probes.map((p) => [p.node, p]));
  const members: MemberView[] = [];
  const seenNodes = new Set<string>();

  // Which configured node is this member? The member id a node's etcd answered with is
  // proof; name and peer URL are only hints. One node never stands for two members (an old
  // member left behind under a reused name must not borrow the new one's health).
  const claimed = new Set<string>();
  const nodeFor = (m: MemberInfo) => {
    const free = cluster.nodes.filter((n) => !claimed.has(n.name));
    const node = free.find((n) => byNode.get(n.name)?.status?.memberId === m.id)
      ?? free.find((n) => n.name === m.name && !byNode.get(n.name)?.status)
      ?? free.find((n) => !byNode.get(n.name)?.status && m.peerUrls.some((u) => hostOf(u) === hostOf(n.peerUrl)));
    if (node) claimed.add(node.name);
    return node;
  };
  // Answer by id first, so a node whose etcd answered claims its own member before hints do.
  const answered = new Set(probes.map((p) => p.status?.memberId));
  const ordered = [...(list ?? [])].sort((x, y) => Number(!answered.has(x.id)) - Number(!answered.has(y.id)));

  if (list) {
    for (const m of ordered) {
      const node = nodeFor(m);
      const probe = node ? byNode.get(node.name) : undefined;
      if (node) seenNodes.add(node.name);
      members.push({
        name: node?.name ?? (m.name || `(unstarted ${m.id})`),
        id: m.id,
        node: node?.name,
        probe,
        isLearner: m.isLearner,
        isLeader: m.id === leaderId,
        // Healthy only if this very member answered the health read.
        healthy: !!probe?.health?.healthy && (!probe.status || probe.status.memberId === m.id),
        unknownToConfig: !node,
      });
    }
  } else {
    // No member answered a member list: all we know is the configured nodes.
    for (const n of cluster.nodes) {
      const probe = byNode.get(n.name);
      seenNodes.add(n.name);
      members.push({
        name: n.name, id: probe?.status?.memberId, node: n.name, probe, isLearner: !!probe?.status?.isLearner,
        isLeader: !!leaderId && probe?.status?.memberId === leaderId, healthy: !!probe?.health?.healthy, unknownToConfig: false,
      });
    }
  }

  // Config order, so the table reads the same every time; members unknown to the config last.
  const rank = (m: MemberView) => { const i = cluster.nodes.findIndex((n) => n.name === m.node); return i < 0 ? cluster.nodes.length : i; };
  members.sort((a, b) => rank(a) - rank(b));

  const voters = members.filter((m) => !m.isLearner);
  const healthyVoters = voters.filter((m) => m.healthy).length;
  const quorum = Math.floor(voters.length / 2) + 1;
  const tolerable = Math.max(0, healthyVoters - quorum);
  const alarms = probes.flatMap((p) => (p.alarms ?? []).filter((a) => a.alarm !== 'NONE')
    .map((a) => ({ member: members.find((m) => m.id === a.memberId)?.name ?? a.memberId, alarm: a.alarm })));
  const uniqueAlarms = [...new Map(alarms.map((a) => [`${a.member}/${a.alarm}`, a])).values()];
  const unreachable = probes.filter((p) => !p.reachable).map((p) => ({ node: p.node, reason: p.unreachableReason ?? 'unknown' }));
  const notMembers = list ? cluster.nodes.filter((n) => !seenNodes.has(n.name)).map((n) => n.name) : [];
  const leaderView = members.find((m) => m.isLeader);

  // A passed health check is a linearizable read: it proves the cluster has a leader and
  // quorum, whatever the bot could not see. So "quorum lost" needs reachable voters that
  // all fail it; voters the bot can't reach are unverified, not down.
  const reachableVoters = voters.filter((m) => m.probe?.reachable);
  let verdict: Verdict;
  if (reachableVoters.length === 0) verdict = 'unknown';
  else if (healthyVoters === 0) verdict = 'quorum-lost';
  else if (healthyVoters < quorum) verdict = 'degraded';
  else if (healthyVoters < voters.length || uniqueAlarms.length > 0 || notMembers.length > 0
    || members.some((m) => m.unknownToConfig || m.isLearner)) verdict = 'degraded';
  else verdict = 'healthy';

  const { next, reasons } = advise(cluster.name, verdict, members, uniqueAlarms, notMembers, unreachable);
  return {
    verdict, members, voters: voters.length, healthyVoters, quorum, tolerable,
    leader: leaderView && leaderView.id ? { id: leaderView.id, name: leaderView.name } : undefined,
    alarms: uniqueAlarms, unreachable, notMembers, next, reasons,
  };
}

/** Failures that say the bot can't get in, not that the member is down. */
const ACCESS_ERRORS = new Set(['SSH_HOST_KEY_MISMATCH', 'SSH_AUTH_FAILED']);

function advise(
  cluster: string, verdict: Verdict, members: MemberView[], alarms: StatusSummary['alarms'],
  notMembers: string[], unreachable: StatusSummary['unreachable'],
): { next: string[]; reasons: string[] } {
  const next: string[] = [];
  const reasons: string[] = [];
  const unhealthy = members.filter((m) => !m.healthy && !m.isLearner);
  if (verdict === 'unknown') {
    reasons.push('no member could be reached: this says nothing about the cluster yet. Check the bot\'s SSH access (host keys, key, network) before acting; /etcd diagnose reads the nodes\' state and etcd logs, and offers a restore when every member is lost');
    for (const u of unreachable) reasons.push(`${u.node}: ${u.reason}`);
    next.push(`/etcd diagnose ${cluster}`, `/etcd status ${cluster}`);
    return { next, reasons };
  }
  if (verdict === 'quorum-lost') {
    // The survivor with the highest raft index has the most data: it should seed the new cluster.
    const survivors = members.filter((m) => m.probe?.status && m.node)
      .sort((a, b) => (BigInt(b.probe!.status!.raftIndex) > BigInt(a.probe!.status!.raftIndex) ? 1 : -1));
    reasons.push(`quorum lost: ${members.filter((m) => m.healthy && !m.isLearner).length} of ${members.filter((m) => !m.isLearner).length} voting members healthy; the cluster can't accept writes or membership changes`);
    if (survivors[0]) {
      reasons.push(`${survivors[0].name} still has its data (raft index ${survivors[0].probe!.status!.raftIndex}); if the other members can't be brought back, force a new cluster from it`);
      next.push(`/etcd force-new-cluster ${cluster} ${survivors[0].name}`);
    } else {
      reasons.push('no member answered at all: bring nodes back, or restore from a snapshot');
      next.push(`/etcd snapshot list ${cluster}`);
    }
    return { next, reasons };
  }
  for (const m of unhealthy) {
    const u = unreachable.find((x) => x.node === m.node);
    reasons.push(u ? `${m.name} is unreachable: ${u.reason}` : `${m.name} is not healthy: ${m.probe?.health?.error ?? 'health check failed'}`);
    // The bot can't vouch for a node it may not log in to: fix access first, replace nothing.
    if (m.probe && ACCESS_ERRORS.has(m.probe.errorCode ?? '')) continue;
    if (m.node) next.push(`/etcd replace-member ${cluster} ${m.node}`);
    else if (m.id) next.push(`/etcd remove-member ${cluster} ${m.id}`);
  }
  for (const m of members.filter((x) => x.unknownToConfig)) {
    reasons.push(`member ${m.name} (${m.id}) is not in clusters.yaml: a member left behind, or a node missing from the config`);
  }
  for (const n of notMembers) {
    reasons.push(`${n} is configured but is not a member of the cluster`);
    next.push(`/etcd add-member ${cluster} ${n}`);
  }
  for (const a of alarms) {
    reasons.push(`alarm ${a.alarm} raised on ${a.member}`);
    if (a.alarm === 'NOSPACE') next.push(`/etcd defrag ${cluster}`, `/etcd alarm-disarm ${cluster}`);
  }
  if (verdict !== 'healthy' && next.length === 0) next.push(`/etcd status ${cluster}`);
  return { next: [...new Set(next)], reasons };
}
