/**
 * Plan tests: live state + arguments in, exact steps, facts, warnings or refusal out.
 * Planners are pure, so these need no Redis, SSH or etcd.
 */
import addMember from '../commands/add-member';
import alarm from '../commands/alarm';
import alarmDisarm from '../commands/alarm-disarm';
import audit from '../commands/audit';
import defrag from '../commands/defrag';
import jobs from '../commands/jobs';
import logs, { compact } from '../commands/logs';
import removeMember from '../commands/remove-member';
import replaceMember from '../commands/replace-member';
import type { CommandDef, JobsView, RunContext } from '../src/engine/command';
import type { PlanView } from '../src/engine/approvals';
import type { AuditEntry, AuditLog } from '../src/audit/audit-log';
import type { NodeRuntime } from '../src/runtime/types';
import { isMedicError } from '../src/engine/errors';
import { membersChanged, parallelRanges, planDiff } from '../src/engine/plan';
import { buildPlan, ClusterDescription, GiB, MEMBER_IDS, MiB, planState, stepList } from './support/plan-state';

const C = 'prod-eu1';

/** The refusal's reason; fails the test when the planner did not refuse with UNSAFE. */
function refusal(command: CommandDef, state: ReturnType<typeof planState>, args: Record<string, string>): string {
  try {
    command.plan!(state, args);
  } catch (e) {
    if (isMedicError(e) && e.code === 'UNSAFE') return e.message;
    throw e;
  }
  throw new Error(`${command.id} ${JSON.stringify(args)} was not refused`);
}

const plan = (command: CommandDef, state: ReturnType<typeof planState>, args: Record<string, string>) => buildPlan(command, state, args).plan;

const ADD_STEPS = (node: string) => [
  `node.stopEtcd ${node}`, `node.moveDataAside ${node}`, `node.ensurePki ${node}`, `etcd.memberAddLearner ${node}`,
  `node.writeConfig ${node}`, `node.startEtcd ${node}`, `etcd.waitLearnerSynced ${node}`, `etcd.memberPromote ${node}`, 'cluster.verify',
];

describe('remove-member', () => {
  it('removes a failed member, then stops etcd on its node and moves its data aside', () => {
    const p = plan(removeMember, planState({ down: ['node3'] }), { cluster: C, member: 'node3' });
    expect(stepList(p)).toEqual(['snapshot.safety', 'etcd.memberRemove node3', 'node.stopEtcd node3', 'node.moveDataAside node3']);
    expect(p.steps[0].params).toEqual({ exclude: 'node3' });
    expect(p.steps[1].params).toEqual({ memberId: MEMBER_IDS[2] });
    expect(p.facts).toEqual([
      { label: 'Fault tolerance before', value: '2/3 healthy voters, quorum 2, 0 failures tolerable', volatile: true },
      { label: 'After removing', value: '2/2 healthy voters, quorum 2, 0 failures tolerable', volatile: true },
    ]);
    expect(p.warnings).toEqual([]);
  });

  it('refuses to remove a healthy member while another is down, naming it and the quorum', () => {
    const why = refusal(removeMember, planState({ down: ['node3'] }), { cluster: C, member: 'node1' });
    expect(why).toContain('node3 is down');
    expect(why).toContain('below quorum 2');
    expect(why).toContain('1 healthy of 2 voting members');
  });

  it('refuses when quorum is lost: the removal could not be committed', () => {
    const why = refusal(removeMember, planState({ down: ['node2', 'node3'], unhealthy: ['node1'] }), { cluster: C, member: 'node3' });
    expect(why).toMatch(/only 0\/3 voting members are healthy, below quorum 2/);
    expect(why).toContain('force-new-cluster');
  });

  it('refuses to remove the last member', () => {
    const why = refusal(removeMember, planState({ nodes: 1 }), { cluster: C, member: 'node1' });
    expect(why).toContain('node1 is the only voting member');
  });

  it('of a node unreachable over SSH: membership only, with a warning to clean the node by hand', () => {
    const p = plan(removeMember, planState({ sshUnreachable: ['node3'] }), { cluster: C, member: 'node3' });
    expect(stepList(p)).toEqual(['snapshot.safety', 'etcd.memberRemove node3']);
    expect(p.warnings.join('\n')).toMatch(/node3 can't be reached over SSH.*stop etcd there and move \/var\/lib\/etcd\/member aside/);
  });

  it('of a member no configured node stands for, by id: touches no node', () => {
    const stale = { id: 'ab12cd34ef567890', name: 'old-cp', ip: '10.0.0.99' };
    const p = plan(removeMember, planState({ strangers: [stale] }), { cluster: C, member: stale.id });
    expect(stepList(p)).toEqual(['snapshot.safety', 'etcd.memberRemove']);
    expect(p.warnings.join('\n')).toContain(`member ${stale.id} is not in clusters.yaml`);
  });

  it('of a healthy member of a healthy cluster: allowed, with a warning about fault tolerance', () => {
    const p = plan(removeMember, planState(), { cluster: C, member: 'node2' });
    expect(stepList(p)).toEqual(['snapshot.safety', 'etcd.memberRemove node2', 'node.stopEtcd node2', 'node.moveDataAside node2']);
    expect(p.facts[1].value).toBe('2/2 healthy voters, quorum 2, 0 failures tolerable');
    expect(p.warnings.join('\n')).toContain('node2 is healthy');
  });
});

describe('add-member', () => {
  it('prepares the node, adds it as a learner, waits for it, promotes it and verifies', () => {
    const p = plan(addMember, planState({ notMembers: ['node3'] }), { cluster: C, node: 'node3' });
    expect(stepList(p)).toEqual(ADD_STEPS('node3'));
    // Verifies what the plan promised: the voter count, and the new node a healthy voter.
    expect(p.steps[p.steps.length - 1].params).toEqual({ voters: 3, node: 'node3' });
    expect(p.facts).toEqual([
      { label: 'Fault tolerance before', value: '2/2 healthy voters, quorum 2, 0 failures tolerable', volatile: true },
      { label: 'After adding', value: '3/3 healthy voters, quorum 2, 1 failure tolerable', volatile: true },
    ]);
  });

  it('refuses a node that is already a member', () => {
    expect(refusal(addMember, planState(), { cluster: C, node: 'node2' })).toContain(`node2 is already member ${MEMBER_IDS[1]}`);
  });

  it('refuses while another member is still a learner (etcd allows one)', () => {
    const why = refusal(addMember, planState({ nodes: 4, learners: ['node3'], notMembers: ['node4'] }), { cluster: C, node: 'node4' });
    expect(why).toContain('node3');
    expect(why).toContain('still a learner');
  });

  it('refuses a node the bot can\'t log in to', () => {
    const why = refusal(addMember, planState({ notMembers: ['node3'], sshUnreachable: ['node3'] }), { cluster: C, node: 'node3' });
    expect(why).toContain('node3 can\'t be reached over SSH');
  });
});

describe('replace-member', () => {
  it('is one plan: remove, then add back, with no stop/move steps twice', () => {
    const p = plan(replaceMember, planState({ down: ['node3'] }), { cluster: C, node: 'node3' });
    expect(stepList(p)).toEqual(['snapshot.safety', 'etcd.memberRemove node3', ...ADD_STEPS('node3')]);
    const actions = stepList(p);
    expect(actions.filter((a) => a === 'node.stopEtcd node3')).toHaveLength(1);
    expect(actions.filter((a) => a === 'node.moveDataAside node3')).toHaveLength(1);
    // The old data moves aside while the PKI is checked; everything else one after another.
    expect(parallelRanges(p.steps)).toEqual(['4-5']);
    expect(p.steps[p.steps.length - 1].params).toEqual({ voters: 3, node: 'node3' });
    expect(p.facts.map((f) => f.label)).toEqual(['Fault tolerance before', 'After removing', 'After adding back']);
    expect(p.facts[2].value).toBe('3/3 healthy voters, quorum 2, 1 failure tolerable');
  });

  it('refuses a node unreachable over SSH: it could not be rebuilt', () => {
    const why = refusal(replaceMember, planState({ sshUnreachable: ['node3'] }), { cluster: C, node: 'node3' });
    expect(why).toContain('node3 can\'t be reached over SSH');
  });

  it('refuses a healthy member while another is down', () => {
    expect(refusal(replaceMember, planState({ down: ['node3'] }), { cluster: C, node: 'node1' })).toContain('node3 is down');
  });
});

describe('defrag', () => {
  it('defragments followers first and the leader last, then verifies', () => {
    const p = plan(defrag, planState({ leader: 'node2', dbSize: { node2: 1.5 * GiB }, dbInUse: { node2: 300 * MiB } }), { cluster: C });
    expect(stepList(p)).toEqual(['etcd.defragment node1', 'etcd.defragment node3', 'etcd.defragment node2', 'cluster.verify']);
    expect(p.steps.slice(0, 3).map((s) => s.params)).toEqual([{ node: 'node1' }, { node: 'node3' }, { node: 'node2' }]);
    expect(p.steps[2].describe).toContain('the leader, last');
    expect(p.steps[3].params).toEqual({ voters: 3 });
    expect(p.facts).toEqual([
      { label: 'Fault tolerance', value: '3/3 healthy voters, quorum 2, 1 failure tolerable', volatile: true },
      { label: 'Order', value: 'node1, node3, node2 (leader)' },
      { label: 'DB node1', value: '40 MiB, 25 MiB in use (about 40% reclaimable)' },
      { label: 'DB node2', value: '1.5 GiB, 300 MiB in use (about 80% reclaimable)' },
      { label: 'DB node3', value: '40 MiB, 25 MiB in use (about 40% reclaimable)' },
    ]);
    expect(p.warnings).toEqual([]);
  });

  it('refuses with a member down: one more out while defragmenting could lose quorum', () => {
    const why = refusal(defrag, planState({ down: ['node3'] }), { cluster: C });
    expect(why).toContain('node3 is not healthy');
    expect(why).toContain('1/3 healthy voting members (quorum 2)');
    expect(why).toContain(`/etcd replace-member ${C} node3`);
  });

  it('refuses when quorum is lost', () => {
    expect(refusal(defrag, planState({ down: ['node2', 'node3'], unhealthy: ['node1'] }), { cluster: C })).toContain('below quorum 2');
  });

  it('defragments a learner too, and leaves out the verification that would wait for its promotion', () => {
    const p = plan(defrag, planState({ nodes: 4, learners: ['node4'] }), { cluster: C });
    expect(stepList(p)).toEqual(['etcd.defragment node2', 'etcd.defragment node3', 'etcd.defragment node4', 'etcd.defragment node1']);
    expect(p.warnings.join('\n')).toContain('node4 still a learner');
  });

  it('with NOSPACE raised: no verification (it needs no alarm) and points at alarm-disarm', () => {
    const p = plan(defrag, planState({ alarms: [{ node: 'node1', alarm: 'NOSPACE' }] }), { cluster: C });
    expect(stepList(p)).toEqual(['etcd.defragment node2', 'etcd.defragment node3', 'etcd.defragment node1']);
    expect(p.warnings.join('\n')).toContain(`/etcd alarm-disarm ${C}`);
  });

  it('warns that a two-member cluster stalls while each member is defragmented', () => {
    const p = plan(defrag, planState({ nodes: 2 }), { cluster: C });
    expect(p.warnings.join('\n')).toContain('tolerates no failure');
  });
});

describe('alarm-disarm', () => {
  const nospace = { alarms: [{ node: 'node2', alarm: 'NOSPACE' }] };

  it('disarms, then verifies that no alarm is left', () => {
    const p = plan(alarmDisarm, planState(nospace), { cluster: C });
    expect(stepList(p)).toEqual(['etcd.alarmDisarm', 'cluster.verify']);
    expect(p.steps[0].describe).toContain('NOSPACE on node2');
    expect(p.steps[1].params).toEqual({ voters: 3 });
    expect(p.facts[0]).toEqual({ label: 'Alarms', value: 'NOSPACE on node2' });
    expect(p.warnings).toEqual([]);
  });

  it('refuses when no alarm is raised', () => {
    expect(refusal(alarmDisarm, planState(), { cluster: C })).toContain('no alarm is raised');
  });

  it('warns, and suggests a defrag first, when the database is still near the quota', () => {
    const p = plan(alarmDisarm, planState({ ...nospace, dbSize: { node2: 1.9 * GiB }, dbInUse: { node2: 600 * MiB } }), { cluster: C });
    expect(stepList(p)).toEqual(['etcd.alarmDisarm', 'cluster.verify']);
    expect(p.warnings.join('\n')).toMatch(/near etcd's default quota of 2 GiB.*node2 1.9 GiB \(600 MiB in use\).*\/etcd defrag prod-eu1/);
  });

  it('says defrag won\'t help when the space is in use', () => {
    const p = plan(alarmDisarm, planState({ ...nospace, dbSize: { node2: 2 * GiB }, dbInUse: { node2: 1.9 * GiB } }), { cluster: C });
    expect(p.warnings.join('\n')).toContain('compact the keyspace');
  });

  it('refuses to hide CORRUPT on a live member: replace it instead', () => {
    const why = refusal(alarmDisarm, planState({ alarms: [{ node: 'node3', alarm: 'CORRUPT' }] }), { cluster: C });
    expect(why).toContain(`/etcd replace-member ${C} node3`);
  });

  it('disarms a stale CORRUPT of a member that is gone', () => {
    const p = plan(alarmDisarm, planState({ alarms: [{ memberId: 'ab12cd34ef567890', alarm: 'CORRUPT' }] }), { cluster: C });
    expect(p.steps[0].describe).toContain('CORRUPT on former member ab12cd34ef567890');
  });

  it('refuses without quorum', () => {
    expect(refusal(alarmDisarm, planState({ ...nospace, down: ['node2', 'node3'], unhealthy: ['node1'] }), { cluster: C })).toContain('below quorum');
  });
});

describe('plan hashes bind approvals to the cluster as it was', () => {
  it('the same state gives the same plan and hash', () => {
    const cases: Array<[CommandDef, ClusterDescription, Record<string, string>]> = [
      [removeMember, { down: ['node3'] }, { cluster: C, member: 'node3' }],
      [replaceMember, { down: ['node3'] }, { cluster: C, node: 'node3' }],
      [addMember, { notMembers: ['node3'] }, { cluster: C, node: 'node3' }],
      [defrag, {}, { cluster: C }],
      [alarmDisarm, { alarms: [{ node: 'node1', alarm: 'NOSPACE' }] }, { cluster: C }],
    ];
    for (const [cmd, d, args] of cases) {
      expect(buildPlan(cmd, planState(d), args).hash).toBe(buildPlan(cmd, planState(d), args).hash);
    }
  });

  /** What the workflow checks before running an approved plan: the same hash, the same members. */
  const approvalHolds = (a: ReturnType<typeof buildPlan>, b: ReturnType<typeof buildPlan>) => a.hash === b.hash && !membersChanged(a.plan.basis, b.plan.basis);

  it('the leader moving, a member\'s health or raft index flapping: the approval still holds when the steps are the same', () => {
    const args = { cluster: C, member: 'node3' };
    const a = buildPlan(removeMember, planState({ down: ['node3'], leader: 'node1' }), args);
    const b = buildPlan(removeMember, planState({ down: ['node3'], leader: 'node2' }), args);
    expect(b.plan.steps).toEqual(a.plan.steps);
    expect(approvalHolds(a, b)).toBe(true);
    // node3 crash-looping: refused connections one probe, answering but unhealthy the next.
    const r = { cluster: C, node: 'node3' };
    const down = buildPlan(replaceMember, planState({ down: ['node3'] }), r);
    const flapping = buildPlan(replaceMember, planState({ unhealthy: ['node3'], leader: 'node2' }), r);
    expect(approvalHolds(down, flapping)).toBe(true);
    // Shown all the same, and what flaps is marked as not bound.
    expect(down.plan.facts.filter((f) => /Fault tolerance/.test(f.label)).every((f) => f.volatile)).toBe(true);
  });

  it('a change of membership voids the approval; a member list nobody answered tells nothing', () => {
    const args = { cluster: C, member: 'node3' };
    const before = buildPlan(removeMember, planState({ down: ['node3'] }), args);
    const stale = { id: 'ab12cd34ef567890', name: 'old-cp', ip: '10.0.0.99' };
    // A learner joined meanwhile: same steps, another membership.
    const withLearner = buildPlan(removeMember, planState({ nodes: 4, down: ['node3'], learners: ['node4'] }), args);
    expect(withLearner.plan.steps).toEqual(before.plan.steps);
    expect(approvalHolds(before, withLearner)).toBe(false);
    expect(planDiff(before.plan, withLearner.plan)).toEqual([`new members: ${withLearner.plan.basis.members.find((m) => / learner$/.test(m))}`]);
    // A 4th voter that no node stands for also changes the quorum: the removal is refused then.
    expect(() => removeMember.plan!(planState({ down: ['node3'], strangers: [stale] }), args)).toThrow(/below quorum/);
    // The leader moving changes the defrag order (leader last): the steps, and so the approval.
    const d1 = buildPlan(defrag, planState({ leader: 'node1' }), { cluster: C });
    const d3 = buildPlan(defrag, planState({ leader: 'node3' }), { cluster: C });
    expect(approvalHolds(d1, d3)).toBe(false);
    expect(planDiff(d1.plan, d3.plan)[0]).toMatch(/^the steps changed/);
    expect(membersChanged({ members: [] }, before.plan.basis)).toBeUndefined();
    expect(membersChanged(before.plan.basis, { members: [] })).toBeUndefined();
  });

  it('small drift in DB size in use does not change a defrag plan', () => {
    const a = buildPlan(defrag, planState({ dbInUse: { node1: 25 * MiB } }), { cluster: C });
    const b = buildPlan(defrag, planState({ dbInUse: { node1: 25.3 * MiB } }), { cluster: C });
    expect(b.hash).toBe(a.hash);
  });
});

// ---------------------------------------------------------------------------------------
// Read commands: their reports from injected dependencies (what the runner passes in).

function ctxFor(extra: Partial<RunContext> & { args?: Record<string, string> }, d = {}): RunContext {
  const state = planState(d);
  return {
    config: { clusters: [state.cluster] }, cluster: state.cluster, args: { cluster: C }, jobId: '42',
    origin: { adapter: 'console', channel: 'console', user: 'console:alice' },
    probe: async () => state.snapshot,
    ...extra,
  };
}

describe('alarm (list)', () => {
  it('lists NOSPACE with the DB sizes and suggests defrag, then alarm-disarm', async () => {
    const r = await alarm.execute!(ctxFor({}, { alarms: [{ node: 'node2', alarm: 'NOSPACE' }], dbSize: { node2: 1.9 * GiB }, dbInUse: { node2: 0.5 * GiB } }));
    expect(r.verdict).toMatchObject({ level: 'critical', text: '1 alarm raised: NOSPACE on node2' });
    expect(r.tables?.[0].rows).toEqual([['node2', MEMBER_IDS[1], 'NOSPACE', expect.stringContaining('quota')]]);
    expect(r.tables?.[1].rows[1]).toEqual(['node2', '1.9 GiB', '510 MiB', '74%']);
    expect(r.next).toEqual([`/etcd defrag ${C}`, `/etcd alarm-disarm ${C}`]);
  });

  it('says so when no alarm is raised', async () => {
    const r = await alarm.execute!(ctxFor({}));
    expect(r.verdict).toEqual({ level: 'ok', text: 'no alarm raised' });
    expect(r.next).toEqual([]);
  });

  it('accepts only "list": disarming is the planned command alarm-disarm', () => {
    expect(alarm.args[1]).toMatchObject({ kind: 'choice', choices: ['list'], default: 'list' });
    expect(alarm.risk).toBe('read');
  });
});

describe('jobs', () => {
  const view = (over: Partial<PlanView>): PlanView => ({
    id: '17', cluster: C, command: 'replace-member', risk: 'destructive', hash: 'h', requester: 'U0ONCALL',
    origin: { adapter: 'slack', channel: 'C0INCIDENT', user: 'U0ONCALL' }, required: 1,
    createdAt: '2024-05-01T03:10:00.000Z', expiresAt: '2024-05-01T03:25:00.000Z', status: 'pending', approvals: [],
    plan: { command: 'replace-member', cluster: C, args: { cluster: C, node: 'node3' }, steps: [], facts: [], warnings: [], basis: { members: [], leader: 'x' } },
    ...over,
  });

  it('shows the lock holder, the plans with approvals and progress, and how to cancel', async () => {
    const jobsView: JobsView = {
      lock: { jobId: '17', requester: 'U0ONCALL', progress: 'step 3/11: node.moveDataAside node3' },
      queued: [{ id: 'x17', command: 'replace-member', phase: 'execute', state: 'active', requester: 'U0ONCALL', at: '2024-05-01T03:11:00.000Z' }],
      plans: [
        view({ status: 'running', approvals: [{ user: 'U0LEAD', at: '2024-05-01T03:11:00.000Z' }], progress: 'step 3/11: node.moveDataAside node3' }),
        view({ id: '12', command: 'defrag', risk: 'mutating', required: 0, status: 'succeeded', plan: { ...view({}).plan, args: { cluster: C } } }),
      ],
    };
    const r = await jobs.execute!(ctxFor({ jobs: async () => jobsView }));
    expect(r.verdict?.text).toBe('locked by job 17 (U0ONCALL): step 3/11: node.moveDataAside node3');
    expect(r.tables?.[0].rows).toEqual([
      ['17', 'replace-member node3', 'running', 'U0ONCALL', '1/1 U0LEAD', '03:10:00', 'step 3/11: node.moveDataAside node3'],
      ['12', 'defrag', 'succeeded', 'U0ONCALL', '0/1', '03:10:00', '-'],
    ]);
    expect(r.tables?.[1].rows).toEqual([['x17', 'replace-member', 'execute', 'active', 'U0ONCALL', '03:11:00']]);
    expect(r.next).toEqual(['/etcd cancel 17']);
  });

  it('says plainly when the worker has no job view', async () => {
    const r = await jobs.execute!(ctxFor({}));
    expect(r.verdict?.level).toBe('warn');
    expect(r.verdict?.text).toContain('can\'t list jobs');
  });
});

describe('audit', () => {
  it('shows the cluster\'s recent events and how to verify the whole chain', async () => {
    const entry: AuditEntry = { seq: 7, ts: '2024-05-01T03:10:00.000Z', prev: '0'.repeat(64), hash: 'f'.repeat(64), type: 'job.planned', cluster: C, jobId: '17', actor: 'bot', data: { steps: 3 } } as AuditEntry;
    const calls: unknown[] = [];
    const log = {
      recent: async (q: unknown) => { calls.push(q); return [entry]; },
      head: async () => ({ seq: 9, hash: 'e'.repeat(64) }),
    } as unknown as AuditLog;
    const r = await audit.execute!(ctxFor({ audit: log }));
    expect(calls).toEqual([{ cluster: C, limit: 40 }]);
    expect(r.tables?.[0].rows[0]).toEqual(['03:10:00', '17', 'job.planned', 'bot', '3 steps']);
    expect(r.notes?.join('\n')).toContain('node dist/src/cli/audit.js verify');
    expect(r.notes?.join('\n')).toContain('seq 9');
  });
});

describe('logs', () => {
  const rt = (lines: string[]) => ({ logs: async (n: number) => ({ source: '/var/log/pods/kube-system_etcd-node1/etcd/0.log', lines: lines.slice(-n) }) }) as unknown as NodeRuntime;
  const withNode = (lines: string[], seen: string[] = []): RunContext['withNode'] => async (cluster, node, fn) => { seen.push(node); return fn(rt(lines)); };

  it('compacts etcd\'s JSON lines and redacts secrets', async () => {
    const lines = [
      '{"level":"warn","ts":"2024-05-01T03:10:01.123456Z","caller":"etcdserver/util.go:170","msg":"apply request took too long","took":"212ms","expected-duration":"100ms"}',
      'plain line with password=hunter2 in it',
    ];
    const seen: string[] = [];
    const r = await logs.execute!(ctxFor({ withNode: withNode(lines, seen), args: { cluster: C, node: 'node1', lines: '50' } }));
    expect(seen).toEqual(['node1']);
    expect(r.notes).toEqual(['03:10:01.123 W apply request took too long took=212ms expected-duration=100ms', 'plain line with password=[REDACTED] in it']);
    expect(r.verdict?.text).toBe('last 2 lines of etcd\'s log on node1');
  });

  it('keeps the newest lines that fit a Slack section and says how many were cut', async () => {
    const lines = Array.from({ length: 200 }, (_, i) => `line ${String(i).padStart(3, '0')} ${'x'.repeat(60)}`);
    const r = await logs.execute!(ctxFor({ withNode: withNode(lines), args: { cluster: C, node: 'node2', lines: '200' } }));
    const shown = r.notes!.filter((n) => n.startsWith('line '));
    expect(shown[shown.length - 1]).toContain('line 199');
    expect(shown.join('\n').length).toBeLessThan(2500);
    const cut = 200 - shown.length;
    expect(cut).toBeGreaterThan(0);
    expect(r.verdict?.text).toContain(`${cut} older lines cut`);
  });

  it('leaves non-JSON and odd JSON as it is', () => {
    expect(compact('  {"not":"etcd"} ')).toBe('{"not":"etcd"}');
    expect(compact('{broken')).toBe('{broken');
  });
});

describe('plans on a systemd cluster', () => {
  it('name the same steps; the config step says it edits the systemd environment file', () => {
    const state = planState({ down: ['node3'] });
    const systemd = { ...state, cluster: { ...state.cluster, runtime: 'systemd' as const } };
    const kubeadmPlan = plan(replaceMember, state, { cluster: C, node: 'node3' });
    const systemdPlan = plan(replaceMember, systemd, { cluster: C, node: 'node3' });
    expect(stepList(systemdPlan)).toEqual(stepList(kubeadmPlan));
    const write = systemdPlan.steps.find((s) => s.action === 'node.writeConfig')!;
    expect(write.describe).toContain('(systemd: /etc/default/etcd)');
    expect(systemdPlan.steps.find((s) => s.action === 'node.stopEtcd')!.describe).toContain('systemctl stop etcd.service');
  });
});
