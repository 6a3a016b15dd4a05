import { arg, defineCommand } from '../src/engine/command';
import { additionSteps, checkAddition, findMember } from '../src/engine/membership-plans';
import { faultTolerance, refuse } from '../src/engine/plan';

export default defineCommand({
  id: 'add-member',
  summary: 'Add a configured node as a member: certificates, learner, catch up, promote',
  args: [arg.cluster(), arg.node()],
  risk: 'mutating',
  plan(state, args) {
    const existing = findMember(state, args.node);
    if (existing) refuse(`${args.node} is already member ${existing.id}; to rebuild it use /etcd replace-member ${state.cluster.name} ${args.node}`);
    checkAddition(state, args.node);
    const s = state.summary;
    return {
      steps: additionSteps(state, args.node, s.voters + 1),
      facts: [
        { label: 'Fault tolerance before', value: faultTolerance(s.voters, s.healthyVoters), volatile: true },
        { label: 'After adding', value: faultTolerance(s.voters + 1, s.healthyVoters + 1), volatile: true },
      ],
    };
  },
});
