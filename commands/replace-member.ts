import { arg, defineCommand } from '../src/engine/command';
import { additionSteps, checkAddition, findMember, removalFacts, removalSteps } from '../src/engine/membership-plans';
import { faultTolerance, refuse } from '../src/engine/plan';

export default defineCommand({
  id: 'replace-member',
  summary: 'Rebuild a node\'s member: remove it, clean the node, add it back as a fresh member (one plan, one approval)',
  args: [arg.cluster(), arg.node()],
  risk: 'destructive',
  plan(state, args) {
    const node = args.node;
    const target = findMember(state, node) ?? refuse(`${node} is not a member of ${state.cluster.name}: use /etcd add-member ${state.cluster.name} ${node}`);
    if (!target.id) refuse(`the member id of ${node} is unknown: no member answered a member list`);
    const facts = removalFacts(state, target);
    const warnings: string[] = [];
    if (target.healthy) warnings.push(`${node} is healthy: replacing it lowers fault tolerance while it catches up`);
    // additionSteps stops etcd on the node and moves its data aside itself.
    // After the removal the cluster must accept a new learner; its node must be reachable.
    checkAddition({ ...state, summary: { ...state.summary, members: state.summary.members.filter((m) => m !== target) } }, node);
    const s = state.summary;
    const votersAfter = target.isLearner ? s.voters + 1 : s.voters;
    const steps = [...removalSteps(state, target, warnings, { cleanNode: false }), ...additionSteps(state, node, votersAfter)];
    facts.push({ label: 'After adding back', value: faultTolerance(votersAfter, s.healthyVoters - (target.healthy ? 1 : 0) + 1), volatile: true });
    return { steps, facts, warnings };
  },
});
