/**
 * forget <cluster>: the bot forgets what it has seen of the cluster (its cluster id,
 * members and highest revision), so the next probe is taken as the cluster. For after a
 * restore or rebuild done by hand, which status reports as data loss until then (the bot's
 * own restore and force-new-cluster reset the memory themselves). It changes nothing on the
 * cluster, but it silences a data-loss alarm: a plan like any change, approved by someone
 * other than the requester, in the audit trail with what was forgotten.
 */
import { arg, defineCommand } from '../src/engine/command';
import { refuse, step } from '../src/engine/plan';

export default defineCommand({
  id: 'forget',
  summary: 'Forget what the bot has seen of a cluster (after a restore done by hand): it stops reporting that data as lost, and the next status is taken as the cluster',
  args: [arg.cluster()],
  risk: 'mutating',
  // Someone else agrees that the data is known lost (or restored by hand).
  minApprovals: 1,
  plan(state) {
    const c = state.cluster.name;
    const memory = state.snapshot.memory;
    if (!memory) refuse(`this worker keeps no memory of ${c} (its Redis did not answer): nothing to forget now; try again`);
    const m = memory.remembered;
    if (!m.clusterId && m.revision === '0') refuse(`the bot remembers nothing of ${c} yet: nothing to forget`);
    const findings = memory.findings;
    return {
      // Bound to the cluster id only: the remembered revision and time move with every probe of a serving cluster.
      steps: [step('bot.forgetMemory', undefined, { clusterId: m.clusterId ?? '' },
        `forget cluster id ${m.clusterId ?? 'unknown'} and the highest revision seen of ${c}: the next probe is remembered as ${c}`)],
      facts: [
        { label: 'Remembered', value: `cluster id ${m.clusterId ?? 'unknown'}, highest revision ${m.revision}${m.at ? `, last confirmed ${m.at}` : ''}`, volatile: true },
        { label: 'Contradicted by', value: findings.length ? findings.map((f) => f.kind).join(', ') : 'nothing: the cluster is as the bot saw it', volatile: true },
      ],
      warnings: findings.length
        ? [`the bot reports ${c}'s data as lost (${findings.map((f) => f.text).join(' / ')}). Forget only if that is known and accepted (a restore done by hand); otherwise restore: /etcd diagnose ${c}`]
        : [`nothing contradicts what the bot saw of ${c}: forgetting only loses the comparison for the next probe`],
    };
  },
});
