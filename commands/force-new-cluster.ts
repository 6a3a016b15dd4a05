import { arg, defineCommand } from '../src/engine/command';
import { additionSteps, sshReachable, unreachableWhy } from '../src/engine/membership-plans';
import { faultTolerance, refuse, step, StepSpec } from '../src/engine/plan';

/**
 * Quorum lost (RUNBOOK §7): re-form a one-member cluster from a survivor that kept its
 * data, take --force-new-cluster out again at once, then add the other nodes back.
 */
export default defineCommand({
  id: 'force-new-cluster',
  summary: 'Quorum lost: re-form a one-member cluster from a survivor, remove the flag again, add the other nodes back (two approvals)',
  args: [arg.cluster(), arg.node('survivor')],
  risk: 'destructive',
  rebuildsCluster: true,
  // Throws away every other member's identity: two people other than the requester.
  minApprovals: 2,
  plan(state, args) {
    const s = state.summary;
    const survivor = args.survivor;
    const c = state.cluster.name;
    if (s.verdict !== 'quorum-lost') {
      refuse(`${c} has not lost quorum (${s.verdict}: ${s.healthyVoters}/${s.voters} voting members healthy): force-new-cluster would throw the other members away. `
        + 'Use /etcd replace-member for a failed member, or /etcd status to see what is wrong');
    }
    const probes = state.snapshot.probes;
    const mine = probes.find((p) => p.node === survivor);
    if (!mine?.status) {
      refuse(`${survivor}'s etcd did not answer (${mine?.unreachableReason ?? 'no answer'}): a survivor must still have its data and run. Pick a node whose etcd answers in /etcd status ${c}`);
    }
    const warnings: string[] = [];
    const better = probes.filter((p) => p.node !== survivor && p.status && BigInt(p.status.raftIndex) > BigInt(mine.status!.raftIndex));
    if (better.length) {
      warnings.push(`${better.map((p) => `${p.node} (raft index ${p.status!.raftIndex})`).join(', ')} has more of the log than ${survivor} (${mine.status.raftIndex}): writes it has and ${survivor} lacks will be lost`);
    }
    const others = state.cluster.nodes.map((n) => n.name).filter((n) => n !== survivor);
    const rebuild = others.filter((n) => sshReachable(probes.find((p) => p.node === n)));
    for (const n of others.filter((x) => !rebuild.includes(x))) {
      warnings.push(`${n} can't be reached over SSH (${unreachableWhy(probes.find((p) => p.node === n))}): it is not added back by this plan; add it later with /etcd add-member ${c} ${n}, after stopping etcd there`);
    }
    const steps: StepSpec[] = [
      step('node.stopEtcd', survivor, { node: survivor, force: true }, `stop etcd on ${survivor} (it can't serve without quorum anyway)`),
      step('node.copyDataAside', survivor, { node: survivor }, `copy ${state.cluster.paths.dataDir}/member on ${survivor} aside (cp -a): the way back if this goes wrong`),
      step('node.setFlag', survivor, { node: survivor, flag: '--force-new-cluster' }, `add --force-new-cluster to ${survivor}'s config (edited as YAML, backup kept)`),
      step('node.startEtcd', survivor, { node: survivor }, `start etcd on ${survivor}: it re-forms a one-member cluster with its data`),
      step('etcd.waitSingleMember', survivor, { node: survivor }, `wait until ${survivor} is a healthy one-member cluster`),
      step('node.stopEtcd', survivor, { node: survivor, force: true }, `stop etcd on ${survivor} again`),
      step('node.setFlag', survivor, { node: survivor, flag: '--force-new-cluster', remove: true }, `remove --force-new-cluster (left in, every restart would re-form a one-member cluster) and check it is gone`),
      step('node.startEtcd', survivor, { node: survivor }, `start etcd on ${survivor} without the flag`),
      step('etcd.waitSingleMember', survivor, { node: survivor }, `wait until ${survivor} serves again`),
    ];
    rebuild.forEach((n, i) => {
      // Each node joins the cluster as it is then: one voter more per node.
      steps.push(...additionSteps(state, n, 2 + i).filter((x) => x.action !== 'cluster.verify'));
    });
    const votersAfter = 1 + rebuild.length;
    steps.push(step('cluster.verify', undefined, { voters: votersAfter }, `verify: ${votersAfter} voters, quorum healthy, no learner, no member left over`));
    return {
      steps,
      facts: [
        { label: 'Now', value: `quorum lost: ${faultTolerance(s.voters, s.healthyVoters)}`, volatile: true },
        { label: 'Survivor', value: `${survivor} (member ${mine.status.memberId})` },
        // Moves with every election the survivor holds alone: shown, not bound.
        { label: 'Survivor raft index', value: mine.status.raftIndex, volatile: true },
        { label: 'Afterwards', value: `${faultTolerance(votersAfter, votersAfter)}${rebuild.length ? ` (${rebuild.join(', ')} rebuilt)` : ''}` },
      ],
      warnings,
    };
  },
});
