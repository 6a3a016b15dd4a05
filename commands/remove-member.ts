import { arg, defineCommand } from '../src/engine/command';
import { findMember, removalFacts, removalSteps } from '../src/engine/membership-plans';
import { refuse } from '../src/engine/plan';

export default defineCommand({
  id: 'remove-member',
  summary: 'Remove a failed member (by node or member id); stops etcd on its node and moves its data aside',
  args: [arg.cluster(), arg.member()],
  risk: 'destructive',
  plan(state, args) {
    const target = findMember(state, args.member) ?? refuse(`${args.member} is not a member of ${state.cluster.name} (see /etcd status ${state.cluster.name})`);
    if (!target.id) refuse(`the member id of ${target.name} is unknown: no member answered a member list`);
    const facts = removalFacts(state, target);
    const warnings: string[] = [];
    if (target.healthy) warnings.push(`${target.name} is healthy: removing it lowers fault tolerance until a member is added back`);
    return { steps: removalSteps(state, target, warnings), facts, warnings };
  },
});
