import { arg, defineCommand } from '../src/engine/command';
import { Fact, faultTolerance, PlanState, refuse, step, StepSpec } from '../src/engine/plan';
import type { MemberView, StatusSummary } from '../src/engine/status-summary';

export default defineCommand({
  id: 'defrag',
  summary: 'Defragment every member\'s database, one at a time, the leader last (gives back space after compaction; needed before disarming NOSPACE)',
  args: [arg.cluster()],
  risk: 'mutating',
  plan(state) {
    const s = state.summary;
    checkDefrag(state);
    const warnings: string[] = [];
    const targets = defragOrder(s);
    // Learners hold no vote: one that can't be reached is skipped, not a reason to refuse.
    for (const m of s.members.filter((x) => x.isLearner && !targets.includes(x))) {
      warnings.push(`learner ${m.name} ${m.node ? 'did not answer' : 'is not in clusters.yaml'}: it is not defragmented`);
    }
    const steps: StepSpec[] = targets.map((m) => step('etcd.defragment', m.node, { node: m.node! },
      `defragment ${m.node}'s database: ${m.node} serves no reads or writes while it runs`
      + `${m.isLeader ? ' (the leader, last: should blocking it cost an election, that happens once, at the end)' : ''}`));
    if (s.voters <= 2) {
      warnings.push(s.voters === 1
        ? 'this is the only voting member: the cluster serves nothing while it is defragmented'
        : `with ${s.voters} voting members the cluster tolerates no failure: writes stall while each member is defragmented`);
    }
    if (verifiable(s) && s.alarms.length === 0) {
      steps.push(step('cluster.verify', undefined, { voters: s.voters }, `verify: ${s.voters}/${s.voters} voters healthy, no learner`));
    } else {
      // cluster.verify waits for a fully healthy cluster: it would time out on an alarm or a learner.
      warnings.push(`no final verification step: ${unverifiableReason(s)}`
        + `${s.alarms.some((a) => a.alarm === 'NOSPACE') ? `; after the defrag, disarm NOSPACE with /etcd alarm-disarm ${state.cluster.name} (it verifies)` : ''}`);
    }
    return {
      steps,
      facts: [
        { label: 'Fault tolerance', value: faultTolerance(s.voters, s.healthyVoters), volatile: true },
        { label: 'Order', value: targets.map((m) => `${m.node}${m.isLeader ? ' (leader)' : m.isLearner ? ' (learner)' : ''}`).join(', ') },
        ...dbFacts(state),
      ],
      warnings,
    };
  },
});

/**
 * Defragmenting blocks the member for as long as it runs: it is as if it were down. With a
 * voter already down that can leave the cluster below quorum (3 members, one down, one
 * defragmenting: 1 of 3), so every voter must be healthy first.
 */
function checkDefrag(state: PlanState): void {
  const s = state.summary;
  const c = state.cluster.name;
  if (s.healthyVoters < s.quorum) {
    refuse(`only ${s.healthyVoters}/${s.voters} voting members are healthy, below quorum ${s.quorum}: defragmenting would take out one more. Recover quorum first (/etcd status ${c})`);
  }
  const down = s.members.filter((m) => !m.isLearner && !m.healthy);
  if (down.length) {
    const names = down.map((m) => m.name).join(', ');
    const one = down.length === 1;
    refuse(`${names} ${one ? 'is' : 'are'} not healthy: defragmenting takes each member out while it runs, which would leave ${s.healthyVoters - 1}/${s.voters} healthy voting members `
      + `(quorum ${s.quorum}). Bring ${one ? 'it' : 'them'} back or replace ${one ? 'it' : 'them'} first`
      + `${down[0].node ? ` (/etcd replace-member ${c} ${down[0].node})` : ''}`);
  }
}

/**
 * Followers and learners in config order, the leader last. Learners never pass the health
 * read (etcd serves linearizable reads only from voters): one that answered status will do.
 */
function defragOrder(s: StatusSummary): MemberView[] {
  const targets = s.members.filter((m) => m.node && (m.isLearner ? !!m.probe?.status : m.healthy));
  return [...targets.filter((m) => !m.isLeader), ...targets.filter((m) => m.isLeader)];
}

/** Would cluster.verify pass, apart from alarms? It wants every voter healthy and nothing else odd. */
export function verifiable(s: StatusSummary): boolean {
  return s.healthyVoters === s.voters && !s.members.some((m) => m.isLearner || m.unknownToConfig) && s.notMembers.length === 0;
}

export function unverifiableReason(s: StatusSummary): string {
  const why: string[] = [];
  if (s.alarms.length) why.push(`alarm${s.alarms.length === 1 ? '' : 's'} ${s.alarms.map((a) => `${a.alarm} on ${a.member}`).join(', ')} raised`);
  const learners = s.members.filter((m) => m.isLearner);
  if (learners.length) why.push(`${learners.map((m) => m.name).join(', ')} still a learner`);
  const down = s.members.filter((m) => !m.isLearner && !m.healthy);
  if (down.length) why.push(`${down.map((m) => m.name).join(', ')} not healthy`);
  const strangers = s.members.filter((m) => m.unknownToConfig);
  if (strangers.length) why.push(`member${strangers.length === 1 ? '' : 's'} ${strangers.map((m) => m.id ?? m.name).join(', ')} not in clusters.yaml`);
  if (s.notMembers.length) why.push(`${s.notMembers.join(', ')} configured but not a member`);
  return `the cluster is not fully healthy before it starts (${why.join('; ')}), and verification waits for a fully healthy cluster`;
}

/**
 * DB size per member, as approximate figures. Facts are part of the plan hash the approval
 * binds to, and the in-use size moves with every write: two significant digits keep a plan
 * approved a minute later from being superseded for noise.
 */
export function dbFacts(state: PlanState): Fact[] {
  return state.summary.members.filter((m) => m.probe?.status).map((m) => {
    const st = m.probe!.status!;
    const free = st.dbSize > 0 && st.dbSizeInUse > 0 ? Math.round(((st.dbSize - st.dbSizeInUse) / st.dbSize) * 10) * 10 : undefined;
    return {
      label: `DB ${m.name}`,
      value: `${approxSize(st.dbSize)}${st.dbSizeInUse ? `, ${approxSize(st.dbSizeInUse)} in use${free !== undefined ? ` (about ${free}% reclaimable)` : ''}` : ''}`,
    };
  });
}

const KIB = 1024;
const MIB = KIB * 1024;
const GIB = MIB * 1024;

/** Bytes as a two-significant-digit size: "1.9 GiB", "410 MiB". */
export function approxSize(bytes: number): string {
  const units: Array<[string, number]> = [['GiB', GIB], ['MiB', MIB], ['KiB', KIB]];
  const [unit, div] = units.find(([, d]) => bytes >= d) ?? ['B', 1];
  return `${Number((bytes / div).toPrecision(2))} ${unit}`;
}
