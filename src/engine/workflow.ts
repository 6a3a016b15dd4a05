/**
 * Plan, approve, execute. A mutating command becomes a plan computed from the live cluster,
 * posted for approval; approvals are counted atomically in Redis; the approved plan runs in
 * a worker under the cluster's lock, one checkpointed step at a time. Every event goes to
 * the audit log and to the plan's thread.
 */
import type { AuditLog } from '../audit/audit-log';
import type { ClusterConfig, MedicConfig } from '../config/schema';
import type { ClusterSnapshot } from '../exec/types';
import type { ClusterLocks, Lease } from '../locks/cluster-lock';
import type { ApprovalStore, PlanRecord, PlanView } from './approvals';
import type { CommandDef } from './command';
import { describeError, isMedicError, MedicError } from './errors';
import { basisOf, Plan, planDiff, planHash } from './plan';
import { planReport } from './plan-report';
import { matches } from './policy';
import { errorReport, Report } from './report';
import { summarize } from './status-summary';
import type { ChatSurface, Decision, DecisionResult, ExecCheckpoint, JobRequest, Origin } from './types';
import type { ActionContext, StepOutcome } from '../actions/actions';
import type { CommandRecord } from '../actions/context';

/** What one execution needs from the outside world, opened per job. */
export interface ExecutionResources {
  /** Runs one step. */
  run(step: Plan['steps'][number], ctx: Omit<ActionContext, 'res'>): Promise<StepOutcome>;
  /** Commands run on nodes since the last call. */
  takeCommands(): CommandRecord[];
  close(): Promise<void>;
}

export interface WorkflowDeps {
  config: MedicConfig;
  commands: readonly CommandDef[];
  probe(cluster: ClusterConfig): Promise<ClusterSnapshot>;
  approvals: ApprovalStore;
  locks: ClusterLocks;
  audit: AuditLog;
  /** Queues the execution of an approved plan (custom job id: a double click queues once). */
  enqueueExecution(job: JobRequest, jobId: string): Promise<string>;
  /** Chat surfaces per adapter; the console has none (it reads job results and progress). */
  surfaces: Partial<Record<Origin['adapter'], ChatSurface>>;
  /** Opens SSH/etcd resources for one execution. */
  openResources?(cluster: ClusterConfig, planId: string): ExecutionResources;
  snapshots?: ActionContext['snapshots'];
  /** @defaultValue () => new Date() */
  now?: () => Date;
  /** Lease renewal interval of the cluster lock. @defaultValue 10000 */
  renewEveryMs?: number;
  /** Least time between two edits of a plan message (chat.update is rate-limited). @defaultValue 1500 */
  updateEveryMs?: number;
}

/** What the worker hands an execution: checkpointing and progress for the console. */
export interface JobIo {
  checkpoint(exec: ExecCheckpoint): Promise<void>;
  progress(text: string): Promise<void>;
}

const noSurface: ChatSurface = { post: async () => undefined, update: async () => undefined, thread: async () => undefined };

export function createWorkflow(deps: WorkflowDeps) {
  const now = () => (deps.now ?? (() => new Date()))();
  const surface = (o: Origin) => deps.surfaces[o.adapter] ?? noSurface;
  const clusterOf = (name: string | undefined) => {
    const c = deps.config.clusters.find((x) => x.name === name);
    if (!c) throw new MedicError('UNKNOWN_CLUSTER', `cluster '${name}' is no longer in this worker's configuration`);
    return c;
  };
  const commandOf = (id: string) => {
    const c = deps.commands.find((x) => x.id === id);
    if (!c?.plan) throw new MedicError('INTERNAL', `this worker does not know the command '${id}' (an older version?)`);
    return c;
  };
  const audit = async (type: string, cluster: string, jobId: string | undefined, actor: string | undefined, data?: Record<string, unknown>) => {
    await deps.audit.append({ type, cluster, jobId, actor, data });
  };

  /** The plan for the cluster as it is now; throws UNSAFE when the command would be unsafe. */
  async function computePlan(command: CommandDef, cluster: ClusterConfig, args: Record<string, string>) {
    const snapshot = await deps.probe(cluster);
    const summary = summarize(cluster, snapshot);
    const draft = command.plan!({ cluster, snapshot, summary }, args);
    const plan: Plan = {
      command: command.id, cluster: cluster.name, args, steps: draft.steps,
      facts: draft.facts ?? [], warnings: draft.warnings ?? [], basis: basisOf(summary),
    };
    return { plan, hash: planHash(plan) };
  }

  async function createRecord(id: string, command: CommandDef, cluster: ClusterConfig, origin: Origin, plan: Plan, hash: string, supersedes?: string) {
    const created = now();
    const rec: PlanRecord = {
      id, cluster: cluster.name, command: command.id, risk: command.risk as 'mutating' | 'destructive', plan, hash,
      requester: origin.user, origin, required: requiredApprovals(command, cluster),
      createdAt: created.toISOString(),
      expiresAt: new Date(created.getTime() + cluster.access.approvalTtlMinutes * 60_000).toISOString(),
      supersedes,
    };
    await deps.approvals.create(rec);
    await audit(supersedes ? 'job.replanned' : 'job.planned', cluster.name, id, 'bot', {
      command: command.id, args: plan.args, hash, required: rec.required, expiresAt: rec.expiresAt, supersedes,
      steps: plan.steps.map((s, i) => `${i + 1}. ${s.action}${s.node ? ` ${s.node}` : ''}: ${s.describe}`),
      facts: plan.facts.map((f) => `${f.label}: ${f.value}`),
    });
    const view = (await deps.approvals.get(id))!;
    const message = await surface(origin).post(origin, planReport(view));
    if (message) {
      await deps.approvals.setMessage(id, message);
      await surface(origin).thread(origin, message, `Plan ${id} requested by ${origin.user}: ${command.id} ${Object.values(plan.args).join(' ')}. `
        + `Plan hash ${hash.slice(0, 12)}. ${rec.required === 0 ? 'Approve to confirm' : `${rec.required} approval(s) needed`}; open until ${rec.expiresAt}.`);
    }
    return { ...view, message };
  }

  // ------------------------------------------------------------------------------------
  // Phase 1: plan (worker)

  async function planJob(job: JobRequest, jobId: string): Promise<Report> {
    const cluster = clusterOf(job.cluster);
    const command = commandOf(job.command);
    const title = `etcd ${command.id} — ${cluster.name}`;
    await audit('job.requested', cluster.name, jobId, job.origin.user, { command: command.id, args: job.args, channel: job.origin.channel });
    const deliver = async (report: Report) => { await surface(job.origin).thread(job.origin, undefined, report); return report; };
    const risk = command.risk as 'mutating' | 'destructive';
    if (requiredApprovals(command, cluster) > 0 && cluster.access[risk].approvers.length === 0) {
      const text = `nobody may approve ${risk} plans on ${cluster.name}: list approvers under access.${risk}.approvers in clusters.yaml. Nothing ran.`;
      await audit('job.refused', cluster.name, jobId, 'bot', { reason: text });
      return deliver(errorReport(title, text));
    }
    const holder = await deps.locks.holder(cluster.name);
    if (holder) {
      const text = `cluster busy: job ${holder.jobId} by ${holder.requester}, ${holder.progress}. Nothing of your request ran; try again when it has finished (/etcd jobs ${cluster.name})`;
      await audit('job.busy', cluster.name, jobId, 'bot', { holder: holder.jobId, progress: holder.progress });
      return deliver(errorReport(title, text, [`/etcd jobs ${cluster.name}`]));
    }
    let computed;
    try {
      computed = await computePlan(command, cluster, job.args);
    } catch (e) {
      const refused = isMedicError(e) && e.code === 'UNSAFE';
      await audit(refused ? 'job.refused' : 'job.failed', cluster.name, jobId, 'bot', { reason: describeError(e) });
      return deliver(errorReport(title, `${refused ? 'refused' : 'could not plan'}: ${describeError(e)}. Nothing ran.`, [`/etcd status ${cluster.name}`]));
    }
    const view = await createRecord(jobId, command, cluster, job.origin, computed.plan, computed.hash);
    return planReport(view);
  }

  // ------------------------------------------------------------------------------------
  // Phase 2: decide (web process or console)

  async function decide(d: Decision): Promise<DecisionResult> {
    const rec = await deps.approvals.get(d.planId);
    if (!rec) return { ok: false, text: `there is no plan ${d.planId} (or it is older than 30 days): see /etcd jobs` };
    const cluster = deps.config.clusters.find((c) => c.name === rec.cluster);
    const user = d.origin.user;
    const refuse = async (why: string): Promise<DecisionResult> => {
      await audit('approval.refused', rec.cluster, rec.id, user, { action: d.action, reason: why, channel: d.origin.channel });
      return { ok: false, text: `:no_entry: ${why}. Nothing changed.` };
    };
    // A button payload must come from the plan's own channel and message: a click copied
    // from elsewhere (or a forged payload that passed signing) acts on nothing.
    if (d.origin.channel !== rec.origin.channel || d.origin.adapter !== rec.origin.adapter) {
      return refuse(`plan ${rec.id} belongs to another channel`);
    }
    if (d.message && rec.message && (d.message.ts !== rec.message.ts || d.message.channel !== rec.message.channel)) {
      return refuse(`that button is not on plan ${rec.id}'s message`);
    }
    if (!cluster) return refuse(`cluster ${rec.cluster} is no longer configured`);
    const rule = cluster.access[rec.risk];
    const isApprover = matches(rule.approvers, user, d.origin.groups);
    const isRequester = user === rec.requester;

    if (d.action === 'approve') {
      if (isRequester && rec.required > 0) return refuse(`you requested plan ${rec.id}: someone else must approve it`);
      if (!isApprover && !(rec.required === 0 && isRequester)) {
        return refuse(`you may not approve ${rec.risk} plans on ${rec.cluster} (access.${rec.risk}.approvers in clusters.yaml)`);
      }
      const r = await deps.approvals.approve(rec.required === 0 ? { ...rec, required: 1, requester: '\u0000none' } : rec, user, now());
      switch (r.kind) {
        case 'self': return refuse(`you requested plan ${rec.id}: someone else must approve it`);
        case 'again': return { ok: false, text: `you have already approved plan ${rec.id}` };
        case 'missing': return { ok: false, text: `there is no plan ${rec.id}` };
        case 'expired': {
          await audit('approval.expired', rec.cluster, rec.id, user, { expiresAt: rec.expiresAt });
          const v = (await deps.approvals.get(rec.id))!;
          return {
            ok: false, text: `plan ${rec.id} expired at ${rec.expiresAt}: nothing ran. Request it again: /etcd ${rec.command} ${Object.values(rec.plan.args).join(' ')}`,
            update: v.message ? { message: v.message, report: planReport(v) } : undefined,
            thread: `Approval by ${user} refused: the plan expired at ${rec.expiresAt}.`,
          };
        }
        case 'status': return { ok: false, text: `plan ${rec.id} is ${r.status}: it can't be approved any more` };
        case 'granted':
        case 'approved': {
          await audit('approval.granted', rec.cluster, rec.id, user, { count: r.count, required: Math.max(rec.required, 1), hash: rec.hash });
          let executeJobId: string | undefined;
          if (r.kind === 'approved') {
            executeJobId = await startExecution(rec);
          }
          const v = (await deps.approvals.get(rec.id))!;
          return {
            ok: true,
            text: r.kind === 'approved' ? `you approved plan ${rec.id}: it runs now (progress in the thread)` : `you approved plan ${rec.id}: ${Math.max(rec.required, 1) - r.count} more approval(s) needed`,
            update: v.message ? { message: v.message, report: planReport(v) } : undefined,
            thread: `Approved by ${user} (${r.count}/${Math.max(rec.required, 1)})${r.kind === 'approved' ? ': starting.' : '.'}`,
            executeJobId,
          };
        }
      }
    }

    if (!isApprover && !isRequester) return refuse(`only the requester or an approver may ${d.action} plan ${rec.id}`);
    if (d.action === 'reject') {
      const was = await deps.approvals.transition(rec.id, ['pending'], 'rejected');
      if (!was) return { ok: false, text: `plan ${rec.id} is ${rec.status}: too late to reject${rec.status === 'running' ? ' (use Cancel to stop it between steps)' : ''}` };
      await audit('approval.rejected', rec.cluster, rec.id, user, {});
      const v = (await deps.approvals.get(rec.id))!;
      return { ok: true, text: `you rejected plan ${rec.id}; nothing ran`, update: v.message ? { message: v.message, report: planReport(v) } : undefined, thread: `Rejected by ${user}. Nothing ran.` };
    }
    // cancel
    const was = await deps.approvals.transition(rec.id, ['pending'], 'cancelled');
    if (was) {
      await audit('job.cancelled', rec.cluster, rec.id, user, { before: 'pending' });
      const v = (await deps.approvals.get(rec.id))!;
      return { ok: true, text: `you cancelled plan ${rec.id}; nothing ran`, update: v.message ? { message: v.message, report: planReport(v) } : undefined, thread: `Cancelled by ${user} before it ran.` };
    }
    if (rec.status === 'approved' || rec.status === 'running') {
      await deps.approvals.requestCancel(rec.id);
      await audit('job.cancel-requested', rec.cluster, rec.id, user, { progress: rec.progress });
      return { ok: true, text: `plan ${rec.id} will stop after its current step; the thread will say what state it left`, thread: `Cancel requested by ${user}: stopping after the current step.` };
    }
    return { ok: false, text: `plan ${rec.id} is ${rec.status}: nothing to cancel` };
  }

  async function startExecution(rec: PlanRecord): Promise<string> {
    const job: JobRequest = {
      command: rec.command, args: rec.plan.args, cluster: rec.cluster, origin: rec.origin,
      requestedAt: now().toISOString(), phase: 'execute', planId: rec.id,
    };
    const id = await deps.enqueueExecution(job, `x${rec.id}`);
    await deps.approvals.setExtra(rec.id, { executeJobId: id });
    return id;
  }

  // ------------------------------------------------------------------------------------
  // Phase 3: execute (worker)

  async function executeJob(job: JobRequest, jobId: string, io: JobIo): Promise<Report> {
    const planId = job.planId ?? '';
    const rec = await deps.approvals.get(planId);
    if (!rec) return errorReport(`etcd ${job.command}`, `plan ${planId} is gone: nothing ran`);
    const cluster = clusterOf(rec.cluster);
    const title = `etcd ${rec.command} — ${rec.cluster} (job ${rec.id})`;
    const chat = surface(rec.origin);
    const thread = (r: Report | string) => chat.thread(rec.origin, rec.message, r).catch(() => undefined);
    const exec: ExecCheckpoint = job.exec ?? { cursor: 0, outputs: {}, resumes: 0, states: [] };
    const resumed = !!exec.startedAt;

    if (!resumed) {
      const was = await deps.approvals.transition(rec.id, ['approved'], 'running');
      if (!was) return errorReport(title, `plan ${rec.id} is ${rec.status}, not approved: nothing ran`);
    }

    let lease: Lease;
    try {
      lease = await deps.locks.acquire(cluster.name, { jobId: rec.id, requester: rec.requester, progress: 'starting' }, { takeoverFrom: rec.id });
    } catch (e) {
      await deps.approvals.transition(rec.id, ['running'], 'failed');
      await audit('job.busy', cluster.name, rec.id, 'bot', { reason: describeError(e) });
      const report = errorReport(title, describeError(e), [`/etcd jobs ${cluster.name}`]);
      await thread(report);
      await updateMessage(rec.id, exec.states, true);
      return report;
    }

    const renew = setInterval(() => { void lease.renew().catch(() => undefined); }, deps.renewEveryMs ?? 10_000);
    let resources: ExecutionResources | undefined;
    try {
      if (!resumed) {
        // The approval binds to what was shown: same members, same leader, same steps.
        const command = commandOf(rec.command);
        let fresh;
        try {
          fresh = await computePlan(command, cluster, rec.plan.args);
        } catch (e) {
          await deps.approvals.transition(rec.id, ['running'], 'failed');
          await audit('job.failed', cluster.name, rec.id, 'bot', { reason: `re-plan before running: ${describeError(e)}` });
          const report = errorReport(title, `before running, the cluster no longer allows this: ${describeError(e)}. Nothing ran.`, [`/etcd status ${cluster.name}`]);
          await thread(report);
          await updateMessage(rec.id, exec.states, true);
          return report;
        }
        if (fresh.hash !== rec.hash) {
          await deps.approvals.transition(rec.id, ['running'], 'superseded');
          const why = planDiff(rec.plan, fresh.plan);
          const newId = `${rec.id}-r${(rec.supersedes?.split('-r').length ?? 1)}`;
          await audit('job.superseded', cluster.name, rec.id, 'bot', { reason: why, newPlan: newId, oldHash: rec.hash, newHash: fresh.hash });
          await updateMessage(rec.id, exec.states, true);
          await thread(`The cluster changed after approval (${why.join('; ')}): nothing ran. A new plan ${newId} was posted; it needs approval again.`);
          const v = await createRecord(newId, command, cluster, rec.origin, fresh.plan, fresh.hash, rec.id);
          return { ...planReport(v), notes: [`the cluster changed after plan ${rec.id} was approved (${why.join('; ')}): nothing ran; approve plan ${newId} to go on`, ...(planReport(v).notes ?? [])] };
        }
        exec.startedAt = now().toISOString();
        await io.checkpoint(exec);
        await audit('job.started', cluster.name, rec.id, 'bot', { executeJob: jobId, approvals: rec.approvals, hash: rec.hash });
      } else {
        exec.resumes += 1;
        await io.checkpoint(exec);
        await audit('job.resumed', cluster.name, rec.id, 'bot', { worker: jobId, fromStep: exec.cursor + 1, total: rec.plan.steps.length, resumes: exec.resumes });
        await thread(`Resumed by another worker at step ${exec.cursor + 1}/${rec.plan.steps.length} (the previous worker stopped mid-job). Each step checks before it acts.`);
      }
      if (!deps.openResources) throw new MedicError('INTERNAL', 'this worker has no SSH key: it cannot run plans');
      resources = deps.openResources(cluster, rec.id);
      const steps = rec.plan.steps;
      for (let i = exec.cursor; i < steps.length; i++) {
        const s = steps[i];
        const label = `step ${i + 1}/${steps.length}: ${s.action}${s.node ? ` ${s.node}` : ''}`;
        const current = await deps.approvals.get(rec.id);
        if (current?.cancelRequested) {
          await deps.approvals.transition(rec.id, ['running'], 'stopped');
          await audit('job.cancelled', cluster.name, rec.id, 'bot', { atStep: i + 1, done: exec.states });
          const report = await finalReport(cluster, title, 'warn', `cancelled before ${label}; steps 1-${i} ran, the rest did not. The cluster is as shown below.`);
          await thread(report);
          await updateMessage(rec.id, exec.states, true);
          return report;
        }
        // Fencing: a worker whose lease was taken over must not act on the cluster.
        if (!(await lease.renew())) throw new MedicError('LEASE_LOST', `lost the lock on ${cluster.name} before ${label}: another job holds it; stopping`);
        await lease.update(label);
        await deps.approvals.setExtra(rec.id, { progress: label });
        await audit('step.started', cluster.name, rec.id, 'bot', { step: s.action, index: i + 1, total: steps.length, node: s.node, describe: s.describe });
        await io.progress(`▶ ${label} — ${s.describe}`);
        void updateMessage(rec.id, exec.states);
        const started = Date.now();
        let outcome: StepOutcome;
        try {
          outcome = await resources.run(s, {
            planId: rec.id, requester: rec.requester, outputs: exec.outputs, snapshots: deps.snapshots,
            progress: (text) => { void deps.approvals.setExtra(rec.id, { progress: `${label} — ${text}` }).then(() => updateMessage(rec.id, exec.states)); void io.progress(`  … ${text}`); },
            verify: async () => verifyCluster(cluster),
          });
        } catch (e) {
          const durationMs = Date.now() - started;
          const cmds = resources.takeCommands();
          await audit('step.failed', cluster.name, rec.id, 'bot', {
            step: s.action, index: i + 1, total: steps.length, node: s.node, durationMs, error: describeError(e),
            command: cmds.length ? cmds[cmds.length - 1].command : undefined,
            exitCode: cmds.length ? cmds[cmds.length - 1].exit ?? undefined : undefined,
            commands: cmds.map((c) => ({ node: c.node, command: c.command, exitCode: c.exit, durationMs: c.durationMs, output: c.output })),
          });
          exec.states[i] = `failed (${secs(durationMs)})`;
          await io.checkpoint(exec);
          throw Object.assign(e instanceof Error ? e : new Error(String(e)), { failedStep: label });
        }
        const durationMs = Date.now() - started;
        const cmds = resources.takeCommands();
        exec.cursor = i + 1;
        Object.assign(exec.outputs, outcome.outputs ?? {});
        exec.states[i] = `${outcome.status} (${secs(durationMs)})`;
        await io.checkpoint(exec);
        await audit(outcome.status === 'skipped' ? 'step.skipped' : 'step.succeeded', cluster.name, rec.id, 'bot', {
          step: s.action, index: i + 1, total: steps.length, node: s.node, durationMs, detail: outcome.detail,
          command: cmds.length ? cmds[cmds.length - 1].command : undefined,
          output: cmds.length ? cmds[cmds.length - 1].output : undefined,
          commands: cmds.map((c) => ({ node: c.node, command: c.command, exitCode: c.exit, durationMs: c.durationMs, output: c.output })),
          exitCode: cmds.length ? cmds[cmds.length - 1].exit : undefined,
        });
        const line = `${outcome.status === 'skipped' ? '⏭' : '✅'} ${label} — ${secs(durationMs)} — ${outcome.detail}`;
        await thread(line + commandLines(cmds));
        await io.progress(line);
      }
      await deps.approvals.transition(rec.id, ['running'], 'succeeded');
      const report = await finalReport(cluster, title, 'ok', `done: all ${steps.length} steps ran.`);
      await audit('job.succeeded', cluster.name, rec.id, 'bot', { verdict: report.verdict?.text, members: report.tables?.[0]?.rows });
      await thread(report);
      await updateMessage(rec.id, exec.states, true);
      return report;
    } catch (e) {
      const failedStep = (e as { failedStep?: string }).failedStep;
      await deps.approvals.transition(rec.id, ['running'], 'failed');
      await audit('job.failed', cluster.name, rec.id, 'bot', { step: failedStep, error: describeError(e) });
      const report = await finalReport(cluster, title, 'critical',
        `failed${failedStep ? ` at ${failedStep}` : ''}: ${describeError(e)}. Later steps did not run; the cluster is as shown below. Fix the cause, then request again (each step checks before it acts).`);
      await thread(report);
      await updateMessage(rec.id, exec.states, true);
      return report;
    } finally {
      clearInterval(renew);
      await resources?.close().catch(() => undefined);
      await lease.release().catch(() => undefined);
    }
  }

  async function verifyCluster(cluster: ClusterConfig) {
    const s = summarize(cluster, await deps.probe(cluster));
    const learners = s.members.filter((m) => m.isLearner).length;
    return {
      healthy: s.verdict === 'healthy', voters: s.voters, learners, healthyVoters: s.healthyVoters,
      text: `${s.verdict}: ${s.healthyVoters}/${s.voters} voters healthy, ${learners} learner${learners === 1 ? '' : 's'}`,
    };
  }

  /** The final status table, posted in the thread and kept in the audit log. */
  async function finalReport(cluster: ClusterConfig, title: string, level: 'ok' | 'warn' | 'critical', text: string): Promise<Report> {
    try {
      const { statusReport } = await import('../../commands/status');
      const snap = await deps.probe(cluster);
      const status = statusReport(snap, summarize(cluster, snap));
      return { ...status, title, verdict: { level, text: `${text} Cluster: ${status.verdict?.text ?? 'unknown'}` } };
    } catch (e) {
      return { title, verdict: { level, text: `${text} (status afterwards unavailable: ${describeError(e)})` } };
    }
  }

  // Plan message edits, throttled: chat.update is rate-limited per workspace.
  const lastUpdate = new Map<string, { at: number; timer?: NodeJS.Timeout }>();
  async function updateMessage(planId: string, states: string[], force = false): Promise<void> {
    const doUpdate = async () => {
      const v = await deps.approvals.get(planId);
      if (!v?.message) return;
      lastUpdate.set(planId, { at: Date.now() });
      await surface(v.origin).update(v.message, planReport(v, states)).catch(() => undefined);
    };
    const last = lastUpdate.get(planId);
    const every = deps.updateEveryMs ?? 1500;
    if (last?.timer) clearTimeout(last.timer);
    if (force || !last || Date.now() - last.at >= every) return doUpdate();
    const timer = setTimeout(() => { void doUpdate(); }, every - (Date.now() - last.at));
    timer.unref?.();
    lastUpdate.set(planId, { at: last.at, timer });
  }

  return { planJob, decide, executeJob, startExecution };
}

export type Workflow = ReturnType<typeof createWorkflow>;

/**
 * Distinct approvers a plan needs, none of them the requester. Destructive: the cluster's
 * access.destructive.approvals, default 1; mutating: default 0, meaning the requester (or
 * an approver) confirms with Approve. A command's own minimum wins (force-new-cluster: 2).
 */
export function requiredApprovals(command: Pick<CommandDef, 'risk' | 'minApprovals'>, cluster: ClusterConfig): number {
  const risk = command.risk as 'mutating' | 'destructive';
  const policy = cluster.access[risk].approvals ?? (risk === 'destructive' ? 1 : 0);
  return Math.max(policy, command.minApprovals ?? 0);
}

function secs(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function commandLines(cmds: CommandRecord[]): string {
  if (!cmds.length) return '';
  const shown = cmds.slice(-4).map((c) => `${c.node}$ ${c.command.length > 160 ? `${c.command.slice(0, 160)}…` : c.command} → exit ${c.exit ?? 'none'}`);
  return `\n${cmds.length > 4 ? `(${cmds.length - 4} earlier commands in the audit log)\n` : ''}${shown.join('\n')}`;
}

export type { PlanView };
