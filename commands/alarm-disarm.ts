import { arg, defineCommand } from '../src/engine/command';
import { faultTolerance, refuse, step, StepSpec } from '../src/engine/plan';
import { alarmsKnown, noSpaceConcern, raisedAlarms } from './alarm';
import { dbFacts, unverifiableReason, verifiable } from './defrag';

export default defineCommand({
  id: 'alarm-disarm',
  summary: 'Disarm the alarms raised in a cluster (NOSPACE after a defrag; CORRUPT only of a member no longer there), then verify',
  args: [arg.cluster()],
  risk: 'mutating',
  plan(state) {
    const s = state.summary;
    const c = state.cluster.name;
    if (!alarmsKnown(state)) refuse(`no member answered the alarm list: there is no telling what would be disarmed (/etcd status ${c})`);
    const alarms = raisedAlarms(state);
    if (!alarms.length) refuse(`no alarm is raised on ${c}: nothing to disarm`);
    // A disarm is a raft proposal like any write: without quorum it can't be committed.
    if (s.healthyVoters < s.quorum) {
      refuse(`only ${s.healthyVoters}/${s.voters} voting members are healthy, below quorum ${s.quorum}: a disarm can't be committed. Recover quorum first`);
    }
    // CORRUPT says a member's data diverged: disarming hides it while the member keeps serving
    // its data. Rebuilding the member is the fix; a stale alarm of a removed member may go.
    const corrupt = alarms.find((a) => a.alarm === 'CORRUPT' && a.member);
    if (corrupt) {
      refuse(`CORRUPT is raised on ${corrupt.member} (${corrupt.memberId}): its data no longer matches the others', and disarming would hide that. `
        + `${corrupt.node ? `Replace it first (/etcd replace-member ${c} ${corrupt.node}), then disarm` : `Remove it first (/etcd remove-member ${c} ${corrupt.memberId}), then disarm`}`);
    }
    const warnings: string[] = [];
    const unknown = alarms.filter((a) => a.alarm !== 'NOSPACE' && a.alarm !== 'CORRUPT');
    if (unknown.length) warnings.push(`alarm${unknown.length === 1 ? '' : 's'} ${unknown.map((a) => a.alarm).join(', ')} unknown to the bot: left raised`);
    if (alarms.some((a) => a.alarm === 'NOSPACE')) {
      const concern = noSpaceConcern(state);
      if (concern) warnings.push(concern.text);
    }
    const shown = alarms.filter((a) => a.alarm === 'NOSPACE' || a.alarm === 'CORRUPT')
      .map((a) => `${a.alarm} on ${a.member ?? `former member ${a.memberId}`}`);
    if (!shown.length) refuse(`only alarms the bot doesn't know are raised (${unknown.map((a) => a.alarm).join(', ')}): nothing it can disarm`);
    const steps: StepSpec[] = [
      step('etcd.alarmDisarm', undefined, {}, `disarm ${shown.join(', ')}${shown.some((x) => x.startsWith('NOSPACE')) ? ': the cluster accepts writes again' : ''}`),
    ];
    if (verifiable(s) && !unknown.length) {
      steps.push(step('cluster.verify', undefined, { voters: s.voters }, `verify: ${s.voters}/${s.voters} voters healthy, no alarm left`));
    } else {
      warnings.push(`no final verification step: ${unverifiableReason({ ...s, alarms: unknown.map((a) => ({ member: a.member ?? a.memberId, alarm: a.alarm })) })}`);
    }
    return {
      steps,
      facts: [
        { label: 'Alarms', value: shown.join(', ') },
        { label: 'Fault tolerance', value: faultTolerance(s.voters, s.healthyVoters), volatile: true },
        ...dbFacts(state),
      ],
      warnings,
    };
  },
});
