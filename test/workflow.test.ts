/**
 * The plan/approve/execute workflow against a real Redis (approvals, lock, audit chain),
 * with the cluster and the executor actions replaced: the probe returns a described
 * state and each step is a controllable stand-in. What is checked is what the workflow
 * decides — who may approve, when it stops, where it resumes — and what it records.
 */
import IORedis, { Redis } from 'ioredis';
import { createAuditLog } from '../src/audit/audit-log';
import { commands } from '../commands';
import { configSchema, MedicConfig } from '../src/config/schema';
import { createApprovalStore } from '../src/engine/approvals';
import { MedicError } from '../src/engine/errors';
import type { StepSpec } from '../src/engine/plan';
import type { ChatSurface, ExecCheckpoint, JobRequest, Origin } from '../src/engine/types';
import { createWorkflow, ExecutionResources, stepDoneKey } from '../src/engine/workflow';
import type { CommandRecord } from '../src/actions/context';
import type { StepOutcome } from '../src/actions/actions';
import { createClusterLocks } from '../src/locks/cluster-lock';
import { clusterConfig, snapshotOf, ClusterDescription } from './support/plan-state';
import { TEST_REDIS_URL } from './support/harness';

const slack = (user: string, channel = 'C0INCIDENT'): Origin => ({ adapter: 'slack', channel, user });

interface Fixture {
  redis: Redis;
  wf: ReturnType<typeof createWorkflow>;
  ran: string[];
  ranAt: number[];
  posted: string[];
  enqueued: Array<{ job: JobRequest; id: string }>;
  gates: Map<number, Promise<void>>;
  state: { d: ClusterDescription };
  config: MedicConfig;
  prefix: string;
  audit: ReturnType<typeof createAuditLog>;
  approvals: ReturnType<typeof createApprovalStore>;
  locks: ReturnType<typeof createClusterLocks>;
  /** Delay of each plan-message edit by its text (a 429 retried by the Web client), ms. */
  editDelay: { fn?: (verdict: string) => number };
}

let n = 0;
function fixture(access: Record<string, unknown>): Fixture {
  const redis = new IORedis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  const prefix = `wf-${process.pid}-${Date.now()}-${n++}`;
  const cluster = clusterConfig({ access });
  const config = configSchema.parse({ clusters: [{ ...cluster }] });
  const state = { d: {} as ClusterDescription };
  const ran: string[] = [];
  const posted: string[] = [];
  const enqueued: Fixture['enqueued'] = [];
  const gates = new Map<number, Promise<void>>();
  const ranAt: number[] = [];
  const editDelay: Fixture['editDelay'] = {};
  const surface: ChatSurface = {
    post: async (_o, r) => { posted.push(`post ${r.title}: ${r.verdict?.text}`); return { channel: 'C0INCIDENT', ts: `${Date.now()}.000100` }; },
    update: async (_m, r) => {
      const ms = editDelay.fn?.(r.verdict?.text ?? '') ?? 0;
      if (ms) await new Promise((res) => setTimeout(res, ms));
      posted.push(`update ${r.verdict?.text}`);
    },
    thread: async (_o, _m, r) => { posted.push(`thread ${typeof r === 'string' ? r : `${r.title}: ${r.verdict?.text}`}`); },
  };
  const audit = createAuditLog(redis, { key: `${prefix}:audit` });
  const approvals = createApprovalStore(redis, prefix);
  const locks = createClusterLocks(redis, 2000);
  const resources = (): ExecutionResources => ({
    async run(step: StepSpec, ctx) {
      const i = ctx.outputs.count ? Number(ctx.outputs.count) : 0;
      await gates.get(ran.length);
      ran.push(`${step.action} ${step.node ?? ''}`.trim());
      ranAt.push(Date.now());
      return { status: 'done', detail: `ran ${step.action}`, outputs: { count: String(i + 1) } };
    },
    takeCommands: () => [],
    close: async () => undefined,
  });
  const wf = createWorkflow({
    config, commands, approvals, locks, audit, surfaces: { slack: surface },
    probe: async (c) => snapshotOf(c, state.d),
    // Like BullMQ with a custom job id: adding the same id twice queues it once.
    enqueueExecution: async (job, id) => { if (!enqueued.some((e) => e.id === id)) enqueued.push({ job, id }); return id; },
    openResources: resources,
    renewEveryMs: 500,
  });
  return { redis, wf, ran, ranAt, posted, enqueued, gates, state, config, prefix, audit, approvals, locks, editDelay };
}

function io(checkpoints: ExecCheckpoint[] = []) {
  return { checkpoint: async (e: ExecCheckpoint) => { checkpoints.push(JSON.parse(JSON.stringify(e))); }, progress: async () => undefined };
}

const DESTRUCTIVE = { destructive: { requesters: ['*'], approvers: ['U0BOB', 'U0CAROL'] }, mutating: { requesters: ['*'], approvers: ['U0BOB'] } };

describe('workflow', () => {
  const fixtures: Fixture[] = [];
  const make = (access: Record<string, unknown> = DESTRUCTIVE) => { const f = fixture(access); fixtures.push(f); return f; };
  afterAll(async () => { for (const f of fixtures) f.redis.disconnect(); });

  /** Whether step `index` has started: recorded after its boundary checks (cancel, shutdown, lease). */
  async function stepStarted(f: Fixture, index: number): Promise<boolean> {
    return (await f.audit.recent({ limit: 100 })).some((e) => e.type === 'step.started' && e.data?.index === index);
  }

  /** A second workflow on the same Redis state as `f` (another worker), with its own step runner. */
  function workflowWith(f: Fixture, openResources: () => ExecutionResources) {
    return createWorkflow({
      config: f.config, commands, approvals: f.approvals, locks: f.locks, audit: f.audit,
      surfaces: { slack: { post: async () => undefined, update: async () => undefined, thread: async () => undefined } },
      probe: async (c) => snapshotOf(c, f.state.d), enqueueExecution: async (_j, id) => id,
      openResources,
    });
  }

  /** replace-member node3 planned by Alice and approved by Bob: its execution is queued. */
  async function approvedReplace(): Promise<Fixture> {
    const f = make();
    f.state.d = { down: ['node3'] };
    await planned(f, 'replace-member node3');
    await f.wf.decide({ action: 'approve', planId: '1', origin: slack('U0BOB') });
    return f;
  }

  async function planned(f: Fixture, text: string, user = 'U0ALICE', jobId = '7') {
    const [command, ...args] = text.split(' ');
    const def = commands.find((c) => c.id === command)!;
    const values = ['prod-eu1', ...args];
    const named = Object.fromEntries(def.args.map((a, i) => [a.name, values[i] ?? a.default]).filter(([, v]) => v !== undefined));
    const job: JobRequest = { command, args: named, cluster: 'prod-eu1', origin: slack(user), requestedAt: new Date().toISOString(), phase: 'plan' };
    return f.wf.planJob(job, jobId);
  }

  it('counts distinct approvals atomically: two approvers at once start the plan exactly once', async () => {
    const f = make({ ...DESTRUCTIVE, destructive: { requesters: ['*'], approvers: ['U0BOB', 'U0CAROL'], approvals: 1 } });
    f.state.d = { down: ['node3'] };
    await planned(f, 'replace-member node3');
    const [a, b] = await Promise.all([
      f.wf.decide({ action: 'approve', planId: '1', origin: slack('U0BOB') }),
      f.wf.decide({ action: 'approve', planId: '1', origin: slack('U0CAROL') }),
    ]);
    const texts = [a.text, b.text].join('\n');
    expect(texts).toMatch(/you approved plan 1: it runs now/);
    expect(texts).toMatch(/already approved|is approved: it can't be approved any more/);
    expect(f.enqueued).toHaveLength(1);
    expect(f.enqueued[0].id).toBe('x1');
    const granted = (await f.audit.recent({ limit: 50 })).filter((e) => e.type === 'approval.granted');
    expect(granted).toHaveLength(1);
  });

  it('runs an approved plan step by step, checkpointing each (a batch once), and records every step in a chain that verifies', async () => {
    const f = make();
    f.state.d = { down: ['node3'] };
    await planned(f, 'replace-member node3');
    expect((await f.wf.decide({ action: 'approve', planId: '1', origin: slack('U0BOB') })).ok).toBe(true);
    const checkpoints: ExecCheckpoint[] = [];
    const report = await f.wf.executeJob(f.enqueued[0].job, 'x1', io(checkpoints));
    expect(report.verdict?.text).toMatch(/^done: all 11 steps ran/);
    expect(f.ran).toHaveLength(11);
    expect(f.ran[1]).toBe('etcd.memberRemove node3');
    // Steps 4 and 5 (data aside, PKI) are one batch: checkpointed together.
    expect(checkpoints.map((c) => c.cursor)).toEqual([0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11]);
    expect((await f.approvals.get('1'))!.status).toBe('succeeded');
    expect(await f.locks.holder('prod-eu1')).toBeUndefined();
    const v = await f.audit.verify();
    expect(v.problems).toEqual([]);
    const types = (await f.audit.recent({ limit: 100 })).map((e) => e.type);
    expect(types.filter((t) => t === 'step.succeeded')).toHaveLength(11);
    expect(types).toEqual(expect.arrayContaining(['job.requested', 'job.planned', 'approval.granted', 'job.started', 'job.succeeded']));
  });

  it('the plan message ends showing the end: an edit held back (a 429 retried) never lands after the final one', async () => {
    const f = await approvedReplace();
    // The first "running" edit takes 700 ms to get through; the plan's 11 stand-in steps take less.
    let slowed = false;
    f.editDelay.fn = (text) => (!slowed && /running/.test(text) ? ((slowed = true), 700) : 0);
    const report = await f.wf.executeJob(f.enqueued[0].job, 'x1', io());
    expect(report.verdict?.text).toMatch(/^done/);
    expect(slowed).toBe(true);
    await new Promise((r) => setTimeout(r, 900));
    const edits = f.posted.filter((p) => p.startsWith('update '));
    expect(edits[edits.length - 1]).toMatch(/done/);
  });

  it('an approval holds while the leader moves and the lost member flaps; a member added meanwhile forces a new plan', async () => {
    const f = make();
    f.state.d = { down: ['node3'], leader: 'node1' };
    await planned(f, 'replace-member node3');
    await f.wf.decide({ action: 'approve', planId: '1', origin: slack('U0BOB') });
    // Between approval and start: another leader, and node3 answering but unhealthy (crash loop).
    f.state.d = { unhealthy: ['node3'], leader: 'node2' };
    const report = await f.wf.executeJob(f.enqueued[0].job, 'x1', io());
    expect(report.verdict?.text).toMatch(/^done: all 11 steps ran/);
    expect(f.posted.join('\n')).not.toMatch(/changed after approval/);

    // A learner joined between approval and start: same steps, another membership.
    const g = make();
    g.state.d = { alarms: [{ node: 'node1', alarm: 'NOSPACE' }] };
    await planned(g, 'alarm-disarm', 'U0ONCALL');
    await g.wf.decide({ action: 'approve', planId: '1', origin: slack('U0ONCALL') });
    g.state.d = { alarms: [{ node: 'node1', alarm: 'NOSPACE' }], strangers: [{ id: 'ab12cd34ef567890', name: 'cp4', ip: '10.0.0.14', learner: true }] };
    const again = await g.wf.executeJob(g.enqueued[0].job, 'x1', io());
    expect(g.ran).toEqual([]);
    expect(g.posted.join('\n')).toMatch(/The cluster changed after approval \(new members: ab12cd34ef567890 cp4 learner[;)].*nothing ran/);
    expect(again.notes?.[0]).toMatch(/approve plan 1-r1 to go on/);
  });

  it('cancel stops a running plan between steps and reports what ran', async () => {
    const f = make();
    f.state.d = { down: ['node3'] };
    await planned(f, 'replace-member node3');
    await f.wf.decide({ action: 'approve', planId: '1', origin: slack('U0BOB') });
    let release!: () => void;
    f.gates.set(2, new Promise<void>((r) => { release = r; }));
    const running = f.wf.executeJob(f.enqueued[0].job, 'x1', io());
    // Step 3 is in flight (past its boundary check), not merely step 2 done.
    while (!(await stepStarted(f, 3))) await new Promise((r) => setTimeout(r, 20));
    const c = await f.wf.decide({ action: 'cancel', planId: '1', origin: slack('U0ALICE') });
    expect(c.text).toMatch(/will stop after its current step/);
    release();
    const report = await running;
    expect(f.ran).toHaveLength(3);
    expect(report.verdict?.text).toMatch(/cancelled before steps 4-5\/11 at once: node\.moveDataAside node3, node\.ensurePki node3; steps 1-3 ran, the rest did not/);
    expect((await f.approvals.get('1'))!.status).toBe('stopped');
    expect(await f.locks.holder('prod-eu1')).toBeUndefined();
  });

  it('a second mutating request while one holds the cluster is told busy, and nothing of it is planned', async () => {
    const f = make();
    const lease = await f.locks.acquire('prod-eu1', { jobId: '41', requester: 'U0DAVE', progress: 'step 3/7: node.startEtcd node2' });
    try {
      const r = await planned(f, 'defrag', 'U0ALICE', '8');
      expect(r.verdict?.text).toBe('cluster busy: job 41 by U0DAVE, step 3/7: node.startEtcd node2. Nothing of your request ran; try again when it has finished (/etcd jobs prod-eu1)');
      expect(await f.approvals.recent('prod-eu1', 10)).toEqual([]);
    } finally {
      await lease.release();
    }
  });

  it('a resumed job waits for the dead worker\'s lease to lapse, then continues at the checkpoint without repeating finished steps', async () => {
    const f = make();
    f.state.d = { down: ['node3'] };
    await planned(f, 'replace-member node3');
    await f.wf.decide({ action: 'approve', planId: '1', origin: slack('U0BOB') });
    // The dead worker's lease is still there (nobody renews it), and the job's data says
    // steps 1-4 finished.
    await f.approvals.transition('1', ['approved'], 'running');
    await f.locks.acquire('prod-eu1', { jobId: '1', requester: 'U0ALICE', progress: 'step 5/11' });
    const heldAt = Date.now();
    const job = { ...f.enqueued[0].job, exec: { cursor: 4, outputs: {}, resumes: 0, startedAt: new Date().toISOString(), states: [] } };
    const report = await f.wf.executeJob(job, 'x1', io());
    expect(report.verdict?.text).toMatch(/^done/);
    // Not before the old lease (2 s) lapsed.
    expect(f.ranAt[0] - heldAt).toBeGreaterThanOrEqual(1500);
    expect(f.ran).toHaveLength(7);
    expect(f.ran[0]).toBe('node.ensurePki node3');
    const resumed = (await f.audit.recent({ limit: 100 })).find((e) => e.type === 'job.resumed');
    expect(resumed?.data).toMatchObject({ fromStep: 5, total: 11 });
  });

  it.each([
    ['died before recording it: the resuming worker records it, once, and says so in the thread', false],
    ['had recorded it: nothing is recorded twice', true],
  ])('a step checkpointed by a worker that then %s', async (_what, recorded) => {
    const f = make();
    f.state.d = { down: ['node3'] };
    await planned(f, 'replace-member node3');
    await f.wf.decide({ action: 'approve', planId: '1', origin: slack('U0BOB') });
    await f.approvals.transition('1', ['approved'], 'running');
    // The dead worker checkpointed step 4 (cursor 4); whether its record made it is the question.
    if (recorded) {
      await f.audit.append({ type: 'step.succeeded', cluster: 'prod-eu1', jobId: '1', actor: 'bot', data: { step: 'node.moveDataAside', index: 4, total: 11 } }, { once: stepDoneKey('1', 4) });
    }
    const states = ['done (0.2 s)', 'done (0.2 s)', 'done (0.1 s)', 'skipped (0.0 s)'];
    const job = { ...f.enqueued[0].job, exec: { cursor: 4, outputs: {}, resumes: 0, startedAt: new Date().toISOString(), states } };
    const report = await f.wf.executeJob(job, 'x1', io());
    expect(report.verdict?.text).toMatch(/^done/);
    expect(f.ran[0]).toBe('node.ensurePki node3');
    const fourth = (await f.audit.recent({ limit: 200 })).filter((e) => ['step.succeeded', 'step.skipped'].includes(e.type) && e.data?.index === 4);
    expect(fourth).toHaveLength(1);
    if (recorded) {
      expect(fourth[0].data?.recovered).toBeUndefined();
      expect(f.posted.join('\n')).not.toMatch(/recorded on resume/);
    } else {
      // Its state was "skipped": recorded as such.
      expect(fourth[0]).toMatchObject({ type: 'step.skipped', data: { index: 4, recovered: true } });
      expect(f.posted.join('\n')).toMatch(/⏭ step 4\/11: node\.moveDataAside node3 — skipped \(0\.0 s\) — recorded on resume/);
    }
    // Every step of the plan accounted for exactly once from step 4 on.
    const done = (await f.audit.recent({ limit: 200 })).filter((e) => ['step.succeeded', 'step.skipped'].includes(e.type));
    for (let i = 4; i <= 11; i++) expect({ i, n: done.filter((e) => e.data?.index === i).length }).toEqual({ i, n: 1 });
    expect((await f.audit.verify()).problems).toEqual([]);
  });

  it.each([
    ['refused (a learner appeared)', true, /before running, the cluster no longer allows this: .*Nothing ran/],
  ])('a plan %s before it ran lets its connections go as a job that ended well (kept ones stay), not as a failed one', async (_what, learner, says) => {
    const f = await approvedReplace();
    const calls: string[] = [];
    const wf = workflowWith(f, () => ({
      run: async () => ({ status: 'done', detail: 'ran' }), takeCommands: () => [],
      close: async () => { calls.push('close'); }, release: async () => { calls.push('release'); },
    }));
    f.state.d = { down: ['node3'], strangers: [{ id: 'ab12cd34ef567890', name: 'cp4', ip: '10.0.0.14', learner }] };
    const report = await wf.executeJob(f.enqueued[0].job, 'x1', io());
    expect([report.verdict?.text, ...(report.notes ?? [])].join('\n')).toMatch(says);
    expect(calls[0]).toBe('release');
  });

  describe('a batch: steps 4-5 of replace-member (data aside, PKI) run at the same time', () => {
    const BATCH = ['node.moveDataAside', 'node.ensurePki'];
    /**
     * Resources with fork(); every step records one command of its own. `behave` runs the
     * batch's steps (both must have started before either may finish); others just succeed.
     */
    function batchRun(f: Fixture, behave: (action: string, attempt: number) => Promise<StepOutcome>) {
      const runs: string[] = [];
      let bothStarted!: () => void;
      const both = new Promise<void>((r) => { bothStarted = r; });
      const resources = (): ExecutionResources => {
        const cmds: CommandRecord[] = [];
        return {
          async run(step) {
            runs.push(step.action);
            cmds.push({ node: step.node ?? '-', command: `cmd of ${step.action} #${runs.filter((a) => a === step.action).length}`, exit: 0, durationMs: 1, output: '' });
            if (!BATCH.includes(step.action)) return { status: 'done', detail: `ran ${step.action}` };
            if (BATCH.every((a) => runs.includes(a))) bothStarted();
            await Promise.race([both, new Promise((_r, reject) => setTimeout(() => reject(new Error('the other step of the batch did not start meanwhile')), 5000))]);
            return behave(step.action, runs.filter((a) => a === step.action).length);
          },
          takeCommands: () => cmds.splice(0),
          fork: () => resources(),
          close: async () => undefined,
        };
      };
      return { runs, wf: workflowWith(f, resources) };
    }
    const ofIndex = async (f: Fixture, type: string, index: number) => (await f.audit.recent({ limit: 300 })).filter((e) => e.type === type && e.data?.index === index);

    it('both steps start before either ends; each records its own commands; one checkpoint for both', async () => {
      const f = await approvedReplace();
      const { runs, wf } = batchRun(f, async (a) => ({ status: 'done', detail: `ran ${a}` }));
      const checkpoints: ExecCheckpoint[] = [];
      const report = await wf.executeJob(f.enqueued[0].job, 'x1', io(checkpoints));
      expect(report.verdict?.text).toMatch(/^done: all 11 steps ran/);
      expect(runs).toHaveLength(11);
      expect(checkpoints.map((c) => c.cursor)).toEqual([0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11]);
      for (const [index, action] of [[4, 'node.moveDataAside'], [5, 'node.ensurePki']] as const) {
        const done = await ofIndex(f, 'step.succeeded', index);
        expect(done).toHaveLength(1);
        expect(done[0].data?.commands).toEqual([expect.objectContaining({ command: `cmd of ${action} #1` })]);
      }
      expect((await f.audit.verify()).problems).toEqual([]);
    });

    it('a transient failure of one step runs that step again, not the other', async () => {
      const f = await approvedReplace();
      const { runs, wf } = batchRun(f, async (a, attempt) => {
        if (a === 'node.ensurePki' && attempt === 1) throw new MedicError('SSH_UNREACHABLE', 'node3: connection dropped', true);
        return { status: 'done', detail: `ran ${a}` };
      });
      const report = await wf.executeJob(f.enqueued[0].job, 'x1', io());
      expect(report.verdict?.text).toMatch(/^done: all 11 steps ran/);
      expect(runs.filter((a) => a === 'node.moveDataAside')).toHaveLength(1);
      expect(runs.filter((a) => a === 'node.ensurePki')).toHaveLength(2);
      expect(await ofIndex(f, 'step.retried', 5)).toHaveLength(1);
      expect(await ofIndex(f, 'step.retried', 4)).toHaveLength(0);
      expect(await ofIndex(f, 'step.succeeded', 4)).toHaveLength(1);
      expect(await ofIndex(f, 'step.succeeded', 5)).toHaveLength(1);
    }, 20_000);

    it('a step that fails lets the other finish; the report says which ran; the plan stops before the batch', async () => {
      const f = await approvedReplace();
      const { runs, wf } = batchRun(f, async (a) => {
        if (a === 'node.ensurePki') throw new MedicError('REMOTE_FAILED', 'node3: peer.crt does not match its key');
        await new Promise((r) => setTimeout(r, 300));
        return { status: 'done', detail: `ran ${a}` };
      });
      const checkpoints: ExecCheckpoint[] = [];
      const report = await wf.executeJob(f.enqueued[0].job, 'x1', io(checkpoints));
      expect(report.verdict?.text).toMatch(/failed at step 5\/11: node\.ensurePki node3: node3: peer\.crt does not match its key\. steps 1-3 ran, and of the steps run at once with it, step 4; later steps did not run/);
      expect(runs).toHaveLength(5);
      expect(await ofIndex(f, 'step.succeeded', 4)).toHaveLength(1);
      expect(await ofIndex(f, 'step.failed', 5)).toHaveLength(1);
      expect(checkpoints[checkpoints.length - 1]).toMatchObject({ cursor: 3 });
      expect((await f.approvals.get('1'))!.status).toBe('failed');
    });

    it('checkpointed by a worker that died before recording it: the resuming worker records both steps, once', async () => {
      const f = await approvedReplace();
      await f.approvals.transition('1', ['approved'], 'running');
      const states = ['done (0.2 s)', 'done (0.2 s)', 'done (0.1 s)', 'skipped (0.0 s)', 'done (0.1 s)'];
      const job = { ...f.enqueued[0].job, exec: { cursor: 5, outputs: {}, resumes: 0, startedAt: new Date().toISOString(), states } };
      const report = await f.wf.executeJob(job, 'x1', io());
      expect(report.verdict?.text).toMatch(/^done/);
      expect(f.ran[0]).toBe('etcd.memberAddLearner node3');
      expect(await ofIndex(f, 'step.skipped', 4)).toEqual([expect.objectContaining({ data: expect.objectContaining({ recovered: true }) })]);
      expect(await ofIndex(f, 'step.succeeded', 5)).toEqual([expect.objectContaining({ data: expect.objectContaining({ recovered: true }) })]);
      expect(f.posted.join('\n')).toMatch(/step 4\/11: node\.moveDataAside node3 — skipped \(0\.0 s\) — recorded on resume[\s\S]*step 5\/11: node\.ensurePki node3 — done \(0\.1 s\) — recorded on resume/);
    });
  });

  it('a worker whose lease was lost stops before its next step and leaves the plan to the new holder', async () => {
    const f = make();
    f.state.d = { down: ['node3'] };
    await planned(f, 'replace-member node3');
    await f.wf.decide({ action: 'approve', planId: '1', origin: slack('U0BOB') });
    let release!: () => void;
    f.gates.set(1, new Promise<void>((r) => { release = r; }));
    const running = f.wf.executeJob(f.enqueued[0].job, 'x1', io());
    while (f.ran.length < 1) await new Promise((r) => setTimeout(r, 20));
    // Another worker took the cluster (this one was presumed dead and its lease lapsed).
    await f.redis.del('etcd-medic:lock:prod-eu1');
    const other = await f.locks.acquire('prod-eu1', { jobId: '1', requester: 'U0ALICE', progress: 'resumed elsewhere' });
    release();
    const report = await running;
    expect(report.verdict?.text).toMatch(/lost the lock on prod-eu1/);
    expect(f.ran.length).toBeLessThanOrEqual(2);
    expect((await f.approvals.get('1'))!.status).toBe('running');
    expect((await f.locks.holder('prod-eu1'))?.progress).toBe('resumed elsewhere');
    await other.release();
  });

  it('a mutating plan is confirmed by its requester; a destructive one needs someone else', async () => {
    const f = make();
    await planned(f, 'defrag');
    const r = await f.wf.decide({ action: 'approve', planId: '1', origin: slack('U0ALICE') });
    expect(r.text).toMatch(/it runs now/);
    const g = make();
    g.state.d = { down: ['node3'] };
    await planned(g, 'remove-member node3');
    expect((await g.wf.decide({ action: 'approve', planId: '1', origin: slack('U0ALICE') })).text).toMatch(/someone else must approve it/);
    expect((await g.wf.decide({ action: 'reject', planId: '1', origin: slack('U0MALLORY') })).text).toMatch(/only the requester or an approver/);
    expect((await g.wf.decide({ action: 'reject', planId: '1', origin: slack('U0CAROL') })).text).toMatch(/you rejected plan 1; nothing ran/);
    expect((await g.wf.decide({ action: 'approve', planId: '1', origin: slack('U0BOB') })).text).toMatch(/is rejected/);
    expect(g.enqueued).toHaveLength(0);
  });

  it('on shutdown, hands a running plan over at the next step boundary: checkpointed, lease released, resumed elsewhere', async () => {
    const f = await approvedReplace();
    let release!: () => void;
    f.gates.set(2, new Promise<void>((r) => { release = r; }));
    const checkpoints: ExecCheckpoint[] = [];
    const running = f.wf.executeJob(f.enqueued[0].job, 'x1', io(checkpoints)).then(() => undefined, (e: unknown) => e);
    // Step 3 is in flight (its start is recorded after the boundary checks, so none is pending).
    while (!(await stepStarted(f, 3))) await new Promise((r) => setTimeout(r, 20));
    // SIGTERM while step 3 runs: it may finish (within the grace), then nothing new starts.
    f.wf.shutdown(10_000);
    release();
    const e = await running as { code?: string; handOver?: boolean };
    expect(e).toMatchObject({ code: 'SHUTDOWN', handOver: true });
    expect(f.ran).toHaveLength(3);
    const last = checkpoints[checkpoints.length - 1];
    expect(last.cursor).toBe(3);
    expect(last.handedOver).toMatch(/shut down/);
    expect((await f.approvals.get('1'))!.status).toBe('running');
    // The lease is released at once: the next worker need not wait for it to lapse.
    expect(await f.locks.holder('prod-eu1')).toBeUndefined();
    const types = (await f.audit.recent({ limit: 100 })).map((x) => x.type);
    expect(types).toContain('job.handed-over');
    expect(types).not.toContain('job.failed');

    // Another worker resumes at step 4 and finishes; no step ran twice.
    const resumedWf = workflowWith(f, () => ({
        async run(step: StepSpec) { f.ran.push(`${step.action} ${step.node ?? ''}`.trim()); return { status: 'done', detail: 'ran' }; },
        takeCommands: () => [], close: async () => undefined,
    }));
    const startedAt = Date.now();
    const report = await resumedWf.executeJob({ ...f.enqueued[0].job, exec: last }, 'x1', io());
    expect(report.verdict?.text).toMatch(/^done/);
    expect(Date.now() - startedAt).toBeLessThan(1500); // no wait for a lapsed lease
    expect(f.ran).toHaveLength(11);
    expect(new Set(f.ran.map((r, i) => `${i}:${r}`)).size).toBe(11);
    const resumed = (await f.audit.recent({ limit: 100 })).find((x) => x.type === 'job.resumed');
    expect(resumed?.data).toMatchObject({ fromStep: 4, handedOver: expect.stringMatching(/shut down/) });
  });

  it('a step still running after the shutdown grace is aborted and handed over to run again', async () => {
    const f = await approvedReplace();
    f.gates.set(1, new Promise<void>(() => undefined)); // step 2 never ends by itself
    const checkpoints: ExecCheckpoint[] = [];
    const running = f.wf.executeJob(f.enqueued[0].job, 'x1', io(checkpoints)).then(() => undefined, (e: unknown) => e);
    // Wait until step 2 is running (not merely step 1 checkpointed): the grace is for a step in flight.
    while (!(await stepStarted(f, 2))) await new Promise((r) => setTimeout(r, 20));
    const t0 = Date.now();
    f.wf.shutdown(300);
    const e = await running as { code?: string; handOver?: boolean };
    expect(e).toMatchObject({ code: 'SHUTDOWN', handOver: true });
    expect(Date.now() - t0).toBeLessThan(3000);
    const last = checkpoints[checkpoints.length - 1];
    expect(last.cursor).toBe(1); // step 2 did not finish: it runs again on resume
    expect(last.states[1]).toMatch(/^interrupted/);
    expect(await f.locks.holder('prod-eu1')).toBeUndefined();
  });

  it('a cancel that races the start of execution is never lost', async () => {
    for (let round = 0; round < 5; round++) {
      const f = await approvedReplace();
      // Cancel and the worker's claim of the plan at the same moment; step 5 holds until the
      // cancel has answered, so the plan can't simply finish first.
      let release!: () => void;
      f.gates.set(4, new Promise<void>((r) => { release = r; }));
      const execution = f.wf.executeJob(f.enqueued[0].job, 'x1', io());
      const cancel = await f.wf.decide({ action: 'cancel', planId: '1', origin: slack('U0ALICE') });
      release();
      const report = await execution;
      expect(cancel.ok).toBe(true);
      const status = (await f.approvals.get('1'))!.status;
      // Either it never ran, or it stopped at a step boundary: never ran to the end.
      expect(['cancelled', 'stopped']).toContain(status);
      expect(f.ran.length).toBeLessThan(11);
      expect(report.verdict?.text ?? '').not.toMatch(/^done/);
    }
  });

  it('a step that fails for a transient reason runs again on fresh connections; a refusal does not', async () => {
    const f = await approvedReplace();
    let opened = 0;
    let failures = 2;
    const wf = workflowWith(f, () => {
        opened++;
        return {
          async run(step: StepSpec) {
            // Step 3 loses its SSH connection twice (sshd restarted under it), then works.
            if (step.action === 'node.stopEtcd' && failures-- > 0) throw new MedicError('SSH_UNREACHABLE', 'ssh root@node3: connection lost', true);
            f.ran.push(`${step.action} ${step.node ?? ''}`.trim());
            return { status: 'done', detail: 'ran' };
          },
          takeCommands: () => [], close: async () => undefined,
        };
    });
    const report = await wf.executeJob(f.enqueued[0].job, 'x1', io());
    expect(report.verdict?.text).toMatch(/^done/);
    expect(f.ran).toHaveLength(11);
    expect(opened).toBe(3); // fresh connections for each retry
    const retried = (await f.audit.recent({ limit: 100 })).filter((e) => e.type === 'step.retried');
    expect(retried.map((e) => e.data?.attempt)).toEqual([1, 2]);

    const g = await approvedReplace();
    const refusing = workflowWith(g, () => ({
        async run(step: StepSpec) {
          if (step.action === 'etcd.memberRemove') throw new MedicError('UNSAFE', 'removing it would lose quorum');
          return { status: 'done', detail: 'ran' };
        },
        takeCommands: () => [], close: async () => undefined,
    }));
    const refused = await refusing.executeJob(g.enqueued[0].job, 'x1', io());
    expect(refused.verdict?.text).toMatch(/failed at step 2\/11.*would lose quorum/);
    expect((await g.audit.recent({ limit: 100 })).filter((e) => e.type === 'step.retried')).toHaveLength(0);
  });

  it('a node that refuses the fence while the lease is still this job\'s fails the plan with the remedy (no one else carries it on)', async () => {
    const f = await approvedReplace();
    const wf = workflowWith(f, () => ({
        async run(step: StepSpec) {
          if (step.action === 'node.stopEtcd') throw new MedicError('FENCED', 'node3: this node has seen lock token 99999999999999, this worker holds 5: … remove /etc/kubernetes/etcd-medic/fence on node3');
          return { status: 'done', detail: 'ran' };
        },
        takeCommands: () => [], close: async () => undefined,
    }));
    const report = await wf.executeJob(f.enqueued[0].job, 'x1', io());
    expect(report.verdict?.text).toMatch(/failed at step 3\/11.*remove \/etc\/kubernetes\/etcd-medic\/fence on node3/);
    expect((await f.approvals.get('1'))!.status).toBe('failed');
    const types = (await f.audit.recent({ limit: 100 })).map((e) => e.type);
    expect(types).toContain('job.failed');
    expect(types).not.toContain('job.lease-lost');
  });
});
