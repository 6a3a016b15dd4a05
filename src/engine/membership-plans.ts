/**
 * Planning membership changes: the quorum arithmetic and the step sequences shared by
 * remove-member, add-member and replace-member. Pure: state in, steps out.
 */
import type { NodeProbe } from '../exec/types';
import { Fact, faultTolerance, PlanState, refuse, step, StepSpec } from './plan';
import type { MemberView } from './status-summary';

/** The member a node or member id names, or undefined. */
export function findMember(state: PlanState, nodeOrId: string): MemberView | undefined {
  return state.summary.members.find((m) => m.node === nodeOrId)
    ?? state.summary.members.find((m) => m.id === nodeOrId);
}

/** Failures that mean the bot could not even log in to the node. */
/** Why the bot could not reach a node, as the probe said (stage and cause), for refusals and warnings. */
export function unreachableWhy(probe: NodeProbe | undefined): string {
  return probe?.unreachableReason ?? 'it was not probed';
}

export function sshReachable(probe: NodeProbe | undefined): boolean {
  if (!probe) return false;
  if (probe.reachable) return true;
  if ((probe.errorCode ?? '').startsWith('SSH_')) return false;
  return !/while connecting over ssh/.test(probe.unreachableReason ?? '');
}

function probeOf(state: PlanState, node: string): NodeProbe | undefined {
  return state.snapshot.probes.find((p) => p.node === node);
}

/**
 * Checks that removing `target` is safe and says what it does to fault tolerance.
 * The change itself must be committed by today's quorum, and what is left must still
 * have a healthy quorum: a 3-member cluster with one member down can't lose a healthy one.
 */
export function removalFacts(state: PlanState, target: MemberView): Fact[] {
  const s = state.summary;
  const votersAfter = target.isLearner ? s.voters : s.voters - 1;
  const healthyAfter = s.healthyVoters - (target.healthy && !target.isLearner ? 1 : 0);
  const quorumAfter = Math.floor(votersAfter / 2) + 1;
  if (s.voters <= 1 && !target.isLearner) refuse(`${target.name} is the only voting member: removing it would end the cluster`);
  // With two voters the removal itself needs both: if the one leaving is down it can't be
  // committed, and if it is up, a failure mid-change loses the cluster (PLATFORM-NOTES).
  if (s.voters === 2 && !target.isLearner) {
    refuse(`the cluster has 2 voting members: removing one is unsafe. Add a member first (/etcd add-member), or if ${target.name} is lost for good, recover with /etcd force-new-cluster from the survivor`);
  }
  if (s.healthyVoters < s.quorum) {
    refuse(`only ${s.healthyVoters}/${s.voters} voting members are healthy, below quorum ${s.quorum}: the cluster can't commit a membership change. Recover quorum first (/etcd force-new-cluster ${s.members.find((m) => m.healthy)?.node ?? '<survivor>'} if the others are lost)`);
  }
  if (!target.isLearner && healthyAfter < quorumAfter) {
    const down = s.members.filter((m) => !m.healthy && !m.isLearner && m !== target).map((m) => m.name);
    refuse(`removing ${target.name} would leave ${healthyAfter} healthy of ${votersAfter} voting members, below quorum ${quorumAfter}`
      + `${down.length ? ` (${down.join(', ')} ${down.length === 1 ? 'is' : 'are'} down)` : ''}: bring the unhealthy member${down.length === 1 ? '' : 's'} back or replace ${down.length === 1 ? 'it' : 'them'} first`);
  }
  return [
    { label: 'Fault tolerance before', value: faultTolerance(s.voters, s.healthyVoters), volatile: true },
    { label: 'After removing', value: faultTolerance(votersAfter, healthyAfter), volatile: true },
  ];
}

/** Steps that take a member out: safety snapshot, member remove, then clean its node if reachable. */
export function removalSteps(state: PlanState, target: MemberView, warnings: string[], opts: { cleanNode?: boolean } = {}): StepSpec[] {
  const steps: StepSpec[] = [
    step('snapshot.safety', undefined, { exclude: target.node ?? '' }, `safety snapshot from a healthy member before removing ${target.name}`),
    step('etcd.memberRemove', target.node, { memberId: target.id ?? '' }, `remove member ${target.id} (${target.name}) from the cluster`),
  ];
  if (opts.cleanNode === false) return steps;
  if (target.node && sshReachable(probeOf(state, target.node))) {
    steps.push(
      step('node.stopEtcd', target.node, { node: target.node }, `stop etcd on ${target.node} so it can't rejoin with its old identity`),
      step('node.moveDataAside', target.node, { node: target.node }, `move ${state.cluster.paths.dataDir}/member on ${target.node} aside (kept, not deleted)`),
    );
  } else if (target.node) {
    warnings.push(`${target.node} can't be reached over SSH (${unreachableWhy(probeOf(state, target.node))}): its etcd can't be stopped or its data moved aside. Before it comes back, stop etcd there and move ${state.cluster.paths.dataDir}/member aside, or it will try to rejoin with its old identity.`);
  } else {
    warnings.push(`member ${target.id} is not in clusters.yaml: only its membership is removed, no node is touched`);
  }
  return steps;
}

/** Steps that bring a node in as a learner, catch it up, promote it and verify the result. */
export function additionSteps(state: PlanState, node: string, votersAfter: number): StepSpec[] {
  const peer = state.cluster.nodes.find((n) => n.name === node)!.peerUrl;
  const p = state.cluster.paths;
  return [
    step('node.stopEtcd', node, { node }, `make sure no etcd runs on ${node} (a stale member would rejoin): ${state.cluster.runtime === 'systemd'
      ? `systemctl stop ${state.cluster.systemd.unit}` : `manifest moved to ${p.workDir}`}`),
    // The old data moves aside while the certificates are checked: different files, both needed before the join.
    step('node.moveDataAside', node, { node }, `move any old ${p.dataDir}/member on ${node} aside (kept, not deleted)`, `prepare ${node}`),
    step('node.ensurePki', node, { node }, `etcd CA on ${node} (copied over SFTP from a healthy member if missing); server, peer and healthcheck-client certificates generated if missing or wrong`, `prepare ${node}`),
    step('etcd.memberAddLearner', node, { node }, `add ${node} (${peer}) as a learner: it can't vote until promoted`),
    step('node.writeConfig', node, { node }, `write ${node}'s etcd config (${state.cluster.runtime === 'systemd'
      ? `systemd: ${state.cluster.systemd.envFile}` : `static pod: ${state.cluster.paths.manifest}`}) with --initial-cluster-state=existing and the full --initial-cluster, backup kept in ${p.workDir}`),
    step('node.startEtcd', node, { node }, `start etcd on ${node}`),
    step('etcd.waitLearnerSynced', node, { node }, `wait until ${node} has caught up with the leader (lag shown)`),
    step('etcd.memberPromote', node, { node }, `promote ${node} to a voting member`),
    step('cluster.verify', undefined, { voters: votersAfter, node }, `verify: ${votersAfter} voters, ${node} a healthy voter, quorum healthy, no learner`),
  ];
}

/** Refuses adding `node` when the cluster or the node isn't ready for it. */
export function checkAddition(state: PlanState, node: string): void {
  const s = state.summary;
  const learner = s.members.find((m) => m.isLearner);
  if (learner) refuse(`${learner.name && !learner.name.startsWith('(unstarted') ? `${learner.name} (${learner.id})` : `member ${learner.id} (not started yet)`} is still a learner: etcd allows one learner at a time; promote or remove it first`);
  if (s.healthyVoters < s.quorum) refuse(`only ${s.healthyVoters}/${s.voters} voting members are healthy, below quorum ${s.quorum}: members can't be added. Recover quorum first`);
  if (!sshReachable(probeOf(state, node))) {
    const p = probeOf(state, node);
    refuse(`${node} can't be reached over SSH (${p?.unreachableReason ?? 'no answer'}): it can't be prepared. Fix access first`);
  }
}
