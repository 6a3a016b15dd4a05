import { arg, defineCommand } from '../src/engine/command';
import { planRestore } from '../src/restore/plan';

export default defineCommand({
  id: 'restore',
  summary: 'Restore the whole cluster from a verified snapshot in the bot\'s store: every node at once (all) or one node first, then the others join (single)',
  args: [arg.cluster(), arg.snapshot(), arg.choice('mode', ['all', 'single'], 'all')],
  risk: 'destructive',
  rebuildsCluster: true,
  needsHostTools: true,
  // Every node's data is replaced: two people besides the requester, whatever the config says.
  minApprovals: 2,
  plan: (state, args) => planRestore(state, { snapshot: args.snapshot, mode: args.mode }),
});
