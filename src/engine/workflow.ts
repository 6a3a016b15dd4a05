/**
 * Plan, approve, execute. A mutating command becomes a plan computed from the live cluster,
 * posted for approval; approvals are counted atomically in Redis; the approved plan runs in
 * a worker under the cluster's lock, one checkpointed step at a time. Every event goes to
 * the audit log and to the plan's thread.
 */
import { hostname } from 'node:os';
import type { AuditLog } from '../audit/audit-log';
import type { ClusterConfig, MedicConfig } from '../config/schema';
import type { ClusterSnapshot } from '../exec/types';
import { hostTools, HostTool } from '../exec/host-tools';
import type { ClusterMemory } from './cluster-memory';
import type { ClusterLocks, Lease } from '../locks/cluster-lock';
import { keepAlive } from '../locks/keep-alive';
import type { ApprovalStore, PlanRecord, PlanView } from './approvals';
import type { CommandDef } from './command';
import { abortableSleep, abortReason, untilAborted } from './abort';
import { describeError, isMedicError, MedicError } from './errors';
import { basisOf, batchEnd, canonicalJson, membersChanged, Plan, planDiff, planHash } from './plan';
import { planReport } from './plan-report';
import { matches } from './policy';
import { errorReport, Report } from './report';
import { summarize } from './status-summary';
import type { ChatSurface, Decision, DecisionResult, ExecCheckpoint, JobRequest, Origin } from './types';
import type { ActionContext, StepOutcome } from '../actions/actions';
import type { CommandRecord, Fence } from '../actions/context';
import type { MedicMetrics } from '../metrics/metrics';

/** What one execution needs from the outside world, opened per job. */
export interface ExecutionResources {
  /** Runs one step. */
  run(step: Plan['steps'][number], ctx: Omit<ActionContext, 'res'>): Promise<StepOutcome>;
  /** Commands run on nodes since the last call. */
  takeCommands(): CommandRecord[];
  /**
   * The same connections with their own command record and step binding, for steps that
   * run at the same time (a batch). Without it, a batch's steps run one after another.
   */
  fork?(): ExecutionResources;
  close(): Promise<void>;
  /** The job ended well (or was cancelled between steps): connections a worker keeps may stay. @defaultValue close() */
  release?(): Promise<void>;
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
  /** Opens SSH/etcd resources for one execution, fenced by its lease. */
  openResources?(cluster: ClusterConfig, planId: string, fence: Fence): ExecutionResources;
  /**
   * Signs the audit chain's head and keeps it outside Redis (the anchor file); returns the
   * line posted with each plan's final report. @defaultValue none: no anchor is posted
   */
  anchor?(): Promise<string>;
  /** Names this worker in the audit trail (which process ran which steps). @defaultValue `<hostname>:<pid>` */
  workerId?: string;
  /** Where events go that can't wait for Redis (a lost lease). */
  log?: (msg: string, extra?: Record<string, unknown>) => void;
  snapshots?: ActionContext['snapshots'];
  /** What the bot remembers of each cluster (reset when a restore or force-new-cluster completes). */
  memory?: ClusterMemory;
  /** The etcd tools on this worker's host (restores are made with them). @defaultValue hostTools() */
  hostTools?: () => Promise<HostTool[]>;
  /** @defaultValue () => new Date() */
  now?: () => Date;
  /** Lease renewal interval of the cluster lock. @defaultValue a third of the lease */
  renewEveryMs?: number;
  /** Least time between two edits of a plan message (chat.update is rate-limited). @defaultValue 1500 */
  updateEveryMs?: number;
  /** Prefix of plan ids (the console's are "c12"). @defaultValue '' */
  planIdPrefix?: string;
  /** Name of the queue planning jobs come from: with the job id, it keys the plan id. @defaultValue 'queue' */
  queueName?: string;
  /** Where steps, plan outcomes, approval waits and lost leases are counted. @defaultValue not counted */
  metrics?: MedicMetrics;
}

/**
 * How long one step keeps being tried again while it fails for a transient reason (a node
 * rebooting, sshd restarting, a member unavailable): waits of 1, 2, 4, 8, 8… s up to this.
 */
const STEP_RETRY_BUDGET_MS = 30_000;
const retryDelayMs = (attempt: number) => Math.min(8000, 1000 * 2 ** (attempt - 1));

/**
 * Failures worth running the same step again for: the error says so (a connection that
 * dropped, a member that didn't answer), and it is not the step's own timeout, a refusal,
 * or this worker losing its right to act.
 */
function isTransient(e: unknown): boolean {
  return isMedicError(e) && e.retryable && !['TIMEOUT', 'UNSAFE', 'LEASE_LOST', 'FENCED', 'SHUTDOWN', 'CANCELLED'].includes(e.code);
}

/** What the worker hands an execution: checkpointing and progress for the console. */
export interface JobIo {
  checkpoint(exec: ExecCheckpoint): Promise<void>;
  progress(text: string): Promise<void>;
}

const noSurface: ChatSurface = { post: async () => undefined, update: async () => undefined, thread: async () => undefined };

export function createWorkflow(deps: WorkflowDeps) {
  let draining = false;
  const workerId = deps.workerId ?? `${hostname()}:${process.pid}`;
  const running = new Set<{ abort: AbortController }>();
  const now = () => (deps.now ?? (() => new Date()))();
  const surface = (o: Origin) => {
    const found = deps.surfaces[o.adapter];
    if (found) return found;
    // The console reads results from the job; anyone else would never see the plan.
    if (o.adapter !== 'console') throw new MedicError('INTERNAL', `this worker can't post to ${o.adapter} (set SLACK_BOT_TOKEN on workers)`);
    return noSurface;
  };
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
  const audit = async (type: string, cluster: string, jobId: string | undefined, actor: string | undefined, data?: Record<string, unknown>, once?: string) => {
    if (once) await deps.audit.append({ type, cluster, jobId, actor, data }, { once });
    else await deps.audit.append({ type, cluster, jobId, actor, data });
  };

  /** The plan message as it looks now, for the adapter to edit in place (none when it was never posted). */
  const messageUpdate = async (id: string): Promise<DecisionResult['update']> => {
    const v = await deps.approvals.get(id);
    return v?.message ? { message: v.message, report: planReport(v) } : undefined;
  };

  /** The plan for the cluster as it is now; throws UNSAFE when the command would be unsafe. */
  async function computePlan(command: CommandDef, cluster: ClusterConfig, args: Record<string, string>) {
    const snapshot = await deps.probe(cluster);
    const summary = summarize(cluster, snapshot);
    const snapshots = deps.snapshots ? await deps.snapshots.store.list(cluster.name) : undefined;
    const observedRevision = maxRevision([await deps.approvals.observedRevision(cluster.name), ...snapshot.probes.map((p) => p.status?.revision ?? '0')]);
    await deps.approvals.noteRevision(cluster.name, observedRevision);
    const tools = command.needsHostTools ? await (deps.hostTools ?? hostTools)() : undefined;
    const draft = command.plan!({ cluster, snapshot, summary, snapshots, observedRevision, hostTools: tools }, args);
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
      // The response_url is good for 30 min; the record lives for 30 days and needs none.
      requester: origin.user, origin: withoutResponseUrl(origin), required: requiredApprovals(command, cluster),
      createdAt: created.toISOString(),
      expiresAt: new Date(created.getTime() + cluster.access.approvalTtlMinutes * 60_000).toISOString(),
      supersedes,
    };
    if (!(await deps.approvals.create(rec))) {
      const existing = await deps.approvals.get(id);
      // The same planning job run again (its worker stalled): show the plan it already made.
      if (existing && existing.requester === rec.requester && existing.command === rec.command && canonicalJson(existing.plan.args) === canonicalJson(rec.plan.args)) {
        return existing;
      }
      throw new MedicError('INTERNAL', `plan id ${id} is already taken by another plan: nothing was planned; request again`);
    }
    await audit(supersedes ? 'job.replanned' : 'job.planned', cluster.name, id, 'bot', {
      command: command.id, args: plan.args, hash, required: rec.required, expiresAt: rec.expiresAt, supersedes,
      steps: plan.steps.map((s, i) => `${i + 1}. ${s.action}${s.node ? ` ${s.node}` : ''}: ${s.describe}`),
      facts: plan.facts.map((f) => `${f.label}: ${f.value}`),
    });
    const view = (await deps.approvals.get(id))!;
    let message;
    try {
      message = await surface(origin).post(origin, planReport(view));
    } catch (e) {
      // Nobody saw this plan, so nobody may approve it.
      await deps.approvals.transition(id, ['pending'], 'cancelled');
      await audit('job.failed', cluster.name, id, 'bot', { reason: `could not post the plan: ${describeError(e)}` });
      throw new MedicError('INTERNAL', `could not post plan ${id} to the channel (${describeError(e)}): it was cancelled. Invite the bot to the channel (/invite @etcd-medic) and request again`, false, { cause: e });
    }
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
    await audit('job.requested', cluster.name, jobId, job.origin.user, { command: command.id, args: job.args, channel: job.origin.channel, ...identityOf(job.origin) });
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
    const planId = `${deps.planIdPrefix ?? ''}${await deps.approvals.allocateId(`${deps.queueName ?? 'queue'}:${jobId}`)}`;
    const view = await createRecord(planId, command, cluster, job.origin, computed.plan, computed.hash);
    return planReport(view);
  }

  // ------------------------------------------------------------------------------------
  // Phase 2: decide (web process or console)

  async function decide(d: Decision): Promise<DecisionResult> {
    // "x17" is how /etcd jobs lists the execution of plan 17.
    let rec = await deps.approvals.get(d.planId) ?? (/^x./.test(d.planId) ? await deps.approvals.get(d.planId.slice(1)) : undefined);
    if (!rec) return { ok: false, text: `there is no plan ${d.planId} (or it is older than 30 days): see /etcd jobs <cluster>` };
    // A click can arrive a moment before the worker has recorded where it posted the plan.
    for (let i = 0; i < 10 && d.message && !rec.message; i++) {
      await new Promise((r) => setTimeout(r, 200));
      rec = (await deps.approvals.get(rec.id)) ?? rec;
    }
    const cluster = deps.config.clusters.find((c) => c.name === rec.cluster);
    const user = d.origin.user;
    const refuse = async (why: string): Promise<DecisionResult> => {
      await audit('approval.refused', rec.cluster, rec.id, user, { action: d.action, reason: why, channel: d.origin.channel, ...identityOf(d.origin) });
      return { ok: false, text: `:no_entry: ${why}. Nothing changed.` };
    };
    // A button payload must come from the plan's own channel and message: a click copied
    // from elsewhere (or a forged payload that passed signing) acts on nothing.
    if (d.origin.channel !== rec.origin.channel || d.origin.adapter !== rec.origin.adapter) {
      return refuse(`plan ${rec.id} belongs to another channel`);
    }
    if (d.message && (!rec.message || d.message.ts !== rec.message.ts || d.message.channel !== rec.message.channel)) {
      return refuse(`that button is not on plan ${rec.id}'s message`);
    }
    // A shared channel (Slack Connect) has members of other workspaces: only the plan's own counts.
    if (d.origin.adapter === 'slack' && rec.origin.adapter === 'slack' && d.origin.team && rec.origin.team && d.origin.team !== rec.origin.team) {
      return refuse(`plan ${rec.id} belongs to another workspace`);
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
          await audit('approval.expired', rec.cluster, rec.id, user, { expiresAt: rec.expiresAt, ...identityOf(d.origin) });
          return {
            ok: false, text: `plan ${rec.id} expired at ${rec.expiresAt}: nothing ran. Request it again: /etcd ${rec.command} ${Object.values(rec.plan.args).join(' ')}`,
            update: await messageUpdate(rec.id),
            thread: `Approval by ${user} refused: the plan expired at ${rec.expiresAt}.`,
          };
        }
        case 'status': {
          // Approved, but its execution was never queued (Redis failed right after the
          // approval): queue it now; the job id deduplicates.
          if (r.status === 'approved' && !rec.executeJobId) {
            const executeJobId = await startExecution(rec);
            return { ok: true, text: `plan ${rec.id} was already approved; its execution is queued now (job ${executeJobId})`, executeJobId };
          }
          return { ok: false, text: `plan ${rec.id} is ${r.status}: it can't be approved any more` };
        }
        case 'granted':
        case 'approved': {
          await audit('approval.granted', rec.cluster, rec.id, user, { count: r.count, required: Math.max(rec.required, 1), hash: rec.hash, ...identityOf(d.origin) }).catch(() => undefined);
          let executeJobId: string | undefined;
          if (r.kind === 'approved') {
            deps.metrics?.approvalWait(rec.command, Math.max(0, (now().getTime() - Date.parse(rec.createdAt)) / 1000));
            try {
              executeJobId = await startExecution(rec);
            } catch (e) {
              return { ok: false, text: `your approval of plan ${rec.id} counts, but its execution could not be queued: ${describeError(e)}. Press Approve again once Redis is back to queue it` };
            }
          }
          return {
            ok: true,
            text: r.kind === 'approved' ? `you approved plan ${rec.id}: it runs now (progress in the thread)` : `you approved plan ${rec.id}: ${Math.max(rec.required, 1) - r.count} more approval(s) needed`,
            update: await messageUpdate(rec.id),
            thread: `Approved by ${user} (${r.count}/${Math.max(rec.required, 1)})${r.kind === 'approved' ? ': starting.' : '.'}`,
            executeJobId,
          };
        }
      }
    }

    if (!isApprover && !isRequester) return refuse(`only the requester or an approver may ${d.action} plan ${rec.id}`);
    if (d.action === 'reject') {
      const was = await deps.approvals.transition(rec.id, ['pending'], 'rejected');
      if (!was) return { ok: false, text: `plan ${rec.id} is ${rec.status}: too late to reject${rec.status === 'running' || rec.status === 'approved' ? ` (use Cancel, or /etcd cancel ${rec.id}, to stop it)` : ''}` };
      await audit('approval.rejected', rec.cluster, rec.id, user, { ...identityOf(d.origin) });
      return { ok: true, text: `you rejected plan ${rec.id}; nothing ran`, update: await messageUpdate(rec.id), thread: `Rejected by ${user}. Nothing ran.` };
    }
    // cancel: decided in one script, so a plan that starts running meanwhile still stops.
    const c = await deps.approvals.cancel(rec.id);
    if (c.kind === 'cancelled') {
      await audit('job.cancelled', rec.cluster, rec.id, user, { before: c.was, ...identityOf(d.origin) });
      return { ok: true, text: `you cancelled plan ${rec.id}; nothing ran`, update: await messageUpdate(rec.id), thread: `Cancelled by ${user} before it ran.` };
    }
    if (c.kind === 'requested') {
      await audit('job.cancel-requested', rec.cluster, rec.id, user, { progress: rec.progress, ...identityOf(d.origin) });
      return {
        ok: true, text: `plan ${rec.id} will stop after its current step; the thread will say what state it left`,
        update: await messageUpdate(rec.id),
        thread: `Cancel requested by ${user}: stopping after the current step.`,
      };
    }
    return { ok: false, text: `plan ${rec.id} is ${c.kind === 'status' ? c.status : 'gone'}: nothing to cancel` };
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
    // Thread posts go out in order but never hold up the repair (Slack may be slow or
    // rate-limiting); the job waits for them, bounded, at its end.
    let posts = Promise.resolve();
    const thread = (r: Report | string) => { posts = posts.then(() => chat.thread(rec.origin, rec.message, r)).catch(() => undefined); };
    const flushPosts = () => withDeadline(posts, 30_000).catch(() => undefined);
    const checkpoint = (e: ExecCheckpoint) => withDeadline(io.checkpoint(e), 10_000, 'saving the job checkpoint to Redis');
    const exec: ExecCheckpoint = job.exec ?? { cursor: 0, outputs: {}, resumes: 0, states: [] };
    const resumed = !!exec.startedAt;
    const done = (i: number) => (i === 0 ? 'no step ran' : i === 1 ? 'step 1 ran' : `steps 1-${i} ran`);

    if (!resumed) {
      const was = await deps.approvals.transition(rec.id, ['approved'], 'running');
      // 'running' without a checkpoint: this job died between claiming the plan and its
      // first checkpoint; nothing ran yet, so it starts over.
      const retried = !was && rec.status === 'running' && rec.executeJobId === jobId;
      if (!was && !retried) return errorReport(title, `plan ${rec.id} is ${rec.status}, not approved: nothing ran`);
      const lastApproval = rec.approvals.map((a) => Date.parse(a.at)).sort().pop() ?? 0;
      const ttlMs = cluster.access.approvalTtlMinutes * 60_000;
      if (lastApproval && now().getTime() - lastApproval > ttlMs) {
        // Approved, but it waited (no worker?) longer than an approval is good for.
        await deps.approvals.transition(rec.id, ['running'], 'expired');
        await audit('approval.expired', cluster.name, rec.id, 'bot', { approvedAt: new Date(lastApproval).toISOString(), reason: 'not started within the approval TTL' });
        const report = errorReport(title, `plan ${rec.id} was approved at ${new Date(lastApproval).toISOString()} but could not start within ${cluster.access.approvalTtlMinutes} min: nothing ran. Request it again.`);
        thread(report);
        await updateMessage(rec.id, exec.states, true);
        await flushPosts();
        return report;
      }
    } else if (rec.status !== 'running') {
      return errorReport(title, `plan ${rec.id} is ${rec.status}: this resumed job does nothing`);
    }

    let lease: Lease;
    try {
      lease = await acquireLease(cluster, rec, resumed);
    } catch (e) {
      await audit('job.busy', cluster.name, rec.id, 'bot', { reason: describeError(e), atStep: exec.cursor + 1 });
      if (resumed) {
        // Steps already ran: say where it stopped; the plan stays 'running' for an operator.
        const report = errorReport(title, `could not resume at step ${exec.cursor + 1}/${rec.plan.steps.length}: ${describeError(e)}. ${done(exec.cursor)}; the rest did not. Check /etcd status ${cluster.name} and /etcd jobs ${cluster.name}, then cancel or request again.`);
        thread(report);
        await flushPosts();
        return report;
      }
      await deps.approvals.transition(rec.id, ['running'], 'failed');
      const report = errorReport(title, describeError(e), [`/etcd jobs ${cluster.name}`]);
      thread(report);
      await updateMessage(rec.id, exec.states, true);
      await flushPosts();
      return report;
    }

    let resources: ExecutionResources | undefined;
    // Nothing failed (all done, cancelled between steps, or nothing ran): connections the worker keeps may stay.
    const letGo = async () => { if (resources) await (resources.release ?? resources.close)().catch(() => undefined); };
    // Aborts the step in flight: a lost lease or a shutdown that ran out of grace. The step's
    // own timeout is added per step by the resources' runner.
    const abort = new AbortController();
    const active = { abort, draining: () => draining };
    running.add(active);
    const keep = keepAlive(lease, {
      leaseMs: deps.locks.leaseMs,
      everyMs: deps.renewEveryMs,
      onLost: (reason) => {
        // Another worker may take the cluster from now on: stop acting at once. Cut this
        // worker's SSH and etcd connections so the step in flight stops where it is.
        abort.abort(new MedicError('LEASE_LOST', `lost the lock on ${cluster.name}: ${reason}`));
        void resources?.close().catch(() => undefined);
        deps.log?.('lease lost: the step in flight was aborted and the connections cut', { plan: rec.id, cluster: cluster.name, reason });
      },
    });
    const fence = {
      token: lease.token,
      check: async () => {
        if (keep.lost) throw new MedicError('LEASE_LOST', `lost the lock on ${cluster.name}: ${keep.lost}`);
        if (!(await withDeadline(lease.isCurrent(), Math.max(500, keep.remainingMs()), 'checking the cluster lock'))) {
          throw new MedicError('FENCED', `the lock on ${cluster.name} is no longer this job's (token ${lease.token}): change refused`);
        }
      },
    };
    try {
      // Dialled while the plan is checked again: the first steps find their connections up.
      resources = deps.openResources?.(cluster, rec.id, fence);
      if (!resumed) {
        // The approval binds to what was shown: the same steps, facts and members (not the
        // leader, health or indexes, which flap while a cluster burns).
        const command = commandOf(rec.command);
        let fresh;
        try {
          fresh = await computePlan(command, cluster, rec.plan.args);
        } catch (e) {
          await deps.approvals.transition(rec.id, ['running'], 'failed');
          deps.metrics?.job(rec.command, 'refused');
          await audit('job.failed', cluster.name, rec.id, 'bot', { reason: `re-plan before running: ${describeError(e)}` });
          const report = errorReport(title, `before running, the cluster no longer allows this: ${describeError(e)}. Nothing ran.`, [`/etcd status ${cluster.name}`]);
          thread(report);
          await updateMessage(rec.id, exec.states, true);
          await letGo();
          return report;
        }
        if (fresh.hash !== rec.hash || membersChanged(rec.plan.basis, fresh.plan.basis)) {
          await deps.approvals.transition(rec.id, ['running'], 'superseded');
          deps.metrics?.job(rec.command, 'superseded');
          const why = planDiff(rec.plan, fresh.plan);
          const newId = `${rec.id}-r${(rec.supersedes?.split('-r').length ?? 1)}`;
          await audit('job.superseded', cluster.name, rec.id, 'bot', { reason: why, newPlan: newId, oldHash: rec.hash, newHash: fresh.hash });
          await updateMessage(rec.id, exec.states, true);
          thread(`The cluster changed after approval (${why.join('; ')}): nothing ran. A new plan ${newId} was posted; it needs approval again.`);
          await flushPosts();
          const v = await createRecord(newId, command, cluster, rec.origin, fresh.plan, fresh.hash, rec.id);
          await letGo();
          return { ...planReport(v), notes: [`the cluster changed after plan ${rec.id} was approved (${why.join('; ')}): nothing ran; approve plan ${newId} to go on`, ...(planReport(v).notes ?? [])] };
        }
        exec.startedAt = now().toISOString();
        await checkpoint(exec);
        await audit('job.started', cluster.name, rec.id, 'bot', { executeJob: jobId, approvals: rec.approvals, hash: rec.hash, token: lease.token, worker: workerId });
      } else {
        exec.resumes += 1;
        const why = exec.handedOver;
        exec.handedOver = undefined;
        await checkpoint(exec);
        await audit('job.resumed', cluster.name, rec.id, 'bot', { worker: workerId, executeJob: jobId, fromStep: exec.cursor + 1, total: rec.plan.steps.length, resumes: exec.resumes, token: lease.token, handedOver: why });
        thread(`Resumed by another worker at step ${exec.cursor + 1}/${rec.plan.steps.length} (${why ? `the previous worker ${why}` : 'the previous worker stopped mid-job'}). Each step checks before it acts.`);
        const recovered = await recordCheckpointedStep(rec, exec, cluster.name);
        if (recovered) thread(recovered);
      }
      if (!deps.openResources || !resources) throw new MedicError('INTERNAL', 'this worker has no SSH key: it cannot run plans');
      const steps = rec.plan.steps;
      const labelOf = (i: number) => `step ${i + 1}/${steps.length}: ${steps[i].action}${steps[i].node ? ` ${steps[i].node}` : ''}`;
      const commandsOf = (cmds: CommandRecord[]) => cmds.map((c) => ({ node: c.node, command: c.command, exitCode: c.exit, durationMs: c.durationMs, output: c.output }));
      for (let i = exec.cursor; i < steps.length;) {
        // A batch: one step, or adjacent steps of one group (independent of each other), run at
        // the same time. It is checkpointed once all of it is done.
        const end = batchEnd(steps, i);
        const batch = Array.from({ length: end - i }, (_, k) => i + k);
        const sameAction = batch.every((k) => steps[k].action === steps[i].action);
        const label = batch.length === 1 ? labelOf(i)
          : `steps ${i + 1}-${end}/${steps.length} at once: ${sameAction
            ? `${steps[i].action} ${batch.map((k) => steps[k].node ?? '-').join(', ')}`
            : batch.map((k) => `${steps[k].action}${steps[k].node ? ` ${steps[k].node}` : ''}`).join(', ')}`;
        // One script decides: a cancel recorded before this point stops the plan here; one
        // arriving later is seen at the next boundary (none is lost between two reads).
        if (await deps.approvals.stopIfCancelled(rec.id)) {
          deps.metrics?.job(rec.command, 'cancelled');
          await audit('job.cancelled', cluster.name, rec.id, 'bot', { atStep: i + 1, done: exec.states });
          await letGo();
          const report = await anchored(await finalReport(cluster, title, 'warn', `cancelled before ${label}; ${done(i)}, the rest did not. The cluster is as shown below.`));
          thread(report);
          await updateMessage(rec.id, exec.states, true);
          return report;
        }
        if (draining) throw new MedicError('SHUTDOWN', `this worker is shutting down: handed over before ${label}`);
        // Fencing: a worker whose lease lapsed (and may have been taken) must not act.
        if (keep.lost) throw new MedicError('LEASE_LOST', `lost the lock on ${cluster.name} before ${label}: ${keep.lost}`);
        if (!(await lease.renew())) throw new MedicError('LEASE_LOST', `lost the lock on ${cluster.name} before ${label}`);
        await lease.update(label);
        await deps.approvals.setExtra(rec.id, { progress: label });
        for (const k of batch) {
          const s = steps[k];
          await audit('step.started', cluster.name, rec.id, 'bot', { step: s.action, index: k + 1, total: steps.length, node: s.node, describe: s.describe });
          await io.progress(`▶ ${labelOf(k)} — ${s.describe}`);
        }
        // What the plan message shows meanwhile: the batch running, its steps done as they end.
        const shown = [...exec.states.slice(0, i), ...batch.map(() => 'running')];
        void updateMessage(rec.id, shown).catch(() => undefined);
        const stepCtxOf = (k: number) => ({
          planId: rec.id, requester: rec.requester, outputs: exec.outputs, snapshots: deps.snapshots, memory: deps.memory, signal: abort.signal,
          tag: `job-${rec.id}-${rec.createdAt.replace(/[-:]/g, '').slice(0, 15)}`,
          progress: (text: string) => {
            void deps.approvals.setExtra(rec.id, { progress: `${labelOf(k)} — ${text}` })
              .then(() => updateMessage(rec.id, shown)).catch(() => undefined);
            void io.progress(`  … ${text}`).catch(() => undefined);
          },
          verify: async () => verifyCluster(cluster),
        });
        const ran = new Map<number, { outcome: StepOutcome; durationMs: number; cmds: CommandRecord[] }>();
        const lineOf = (k: number): string => {
          const { outcome, durationMs, cmds } = ran.get(k)!;
          return `${outcome.status === 'skipped' ? '⏭' : '✅'} ${labelOf(k)} — ${secs(durationMs)} — ${outcome.detail}${commandLines(cmds)}`;
        };

        /** A finished step's console line and audit record (once per step of the plan). */
        const recordStep = async (k: number): Promise<void> => {
          const s = steps[k];
          const { outcome, durationMs, cmds } = ran.get(k)!;
          await io.progress(`${outcome.status === 'skipped' ? '⏭' : '✅'} ${labelOf(k)} — ${secs(durationMs)} — ${outcome.detail}`).catch(() => undefined);
          const type = outcome.status === 'skipped' ? 'step.skipped' : 'step.succeeded';
          const last = cmds[cmds.length - 1];
          const record = {
            step: s.action, index: k + 1, total: steps.length, node: s.node, durationMs, detail: outcome.detail,
            command: last?.command, output: last?.output, commands: commandsOf(cmds), exitCode: last?.exit,
          };
          // Once per step of the plan: a record Redis took although the call timed out, or the one
          // a resuming worker writes for a step whose worker died before recording it, is stored once.
          const once = stepDoneKey(rec.id, k + 1);
          try {
            await audit(type, cluster.name, rec.id, 'bot', record, once);
          } catch (e) {
            recordLater(type, cluster.name, rec.id, record, once);
            throw e;
          }
        };
        let pending = batch;
        let waited = 0;
        const started = Date.now();
        for (let attempt = 1; ; attempt++) {
          const current = resources;
          // Steps of a batch each record their own commands and stop on their own timeout; a
          // worker without fork() runs them one after another.
          const together = batch.length > 1 && !!current.fork;
          const runOne = async (k: number) => {
            const res = together ? current.fork!() : current;
            try {
              // The runner aborts on the same signal; racing it here too means no action that
              // ignores its signal can keep this job from stopping.
              const outcome = await untilAborted(abort.signal, res.run(steps[k], stepCtxOf(k)));
              if (abort.signal.aborted) throw abortReason(abort.signal);
              const durationMs = Date.now() - started;
              ran.set(k, { outcome, durationMs, cmds: res.takeCommands() });
              shown[k] = `${outcome.status} (${secs(durationMs)})`;
              if (batch.length > 1) void updateMessage(rec.id, shown).catch(() => undefined);
            } catch (e) {
              throw Object.assign(new Error('step failed'), { step: k, error: e, durationMs: Date.now() - started, cmds: res.takeCommands() });
            }
          };
          const tried: PromiseSettledResult<void>[] = [];
          if (together) tried.push(...await Promise.allSettled(pending.map(runOne)));
          else {
            for (const k of pending) {
              const [t] = await Promise.allSettled([runOne(k)]);
              tried.push(t);
              if (t.status === 'rejected') break;
            }
          }
          const failures = tried.flatMap((t) => (t.status === 'rejected' ? [t.reason as { step: number; error: unknown; durationMs: number; cmds: CommandRecord[] }] : []));
          if (!failures.length) break;
          const delay = retryDelayMs(attempt);
          if (!abort.signal.aborted && waited + delay <= STEP_RETRY_BUDGET_MS && failures.every((f) => isTransient(f.error))) {
            waited += delay;
            // A dropped SSH connection or a member blinking: the failed steps run again on fresh
            // connections once the old ones (and anything still running on them) are cut.
            await resources.close().catch(() => undefined);
            for (const f of failures) {
              const s = steps[f.step];
              await audit('step.retried', cluster.name, rec.id, 'bot', {
                step: s.action, index: f.step + 1, total: steps.length, node: s.node, attempt, error: describeError(f.error), commands: commandsOf(f.cmds),
              });
              thread(`↻ ${labelOf(f.step)}: ${describeError(f.error)}. Trying again in ${delay / 1000} s on fresh connections (attempt ${attempt + 1}; retries stop after ${STEP_RETRY_BUDGET_MS / 1000} s); the step checks before it acts.`);
            }
            if (await abortableSleep(delay, abort.signal).then(() => true, () => false)) {
              resources = deps.openResources(cluster, rec.id, fence);
              pending = pending.filter((k) => !ran.has(k));
              continue;
            }
          }
          // Whatever ended the step, nothing of it may act from here on.
          const first = failures[0];
          if (!abort.signal.aborted) abort.abort(isMedicError(first.error) ? first.error : new MedicError('CANCELLED', `the step failed: ${describeError(first.error)}`));
          await resources.close().catch(() => undefined);
          const lost = abort.signal.aborted && isMedicError(abort.signal.reason) && ['LEASE_LOST', 'SHUTDOWN'].includes(abort.signal.reason.code) ? abort.signal.reason : undefined;
          for (const f of failures) {
            const s = steps[f.step];
            const err = lost ?? f.error;
            const last = f.cmds[f.cmds.length - 1];
            const failed = {
              step: s.action, index: f.step + 1, total: steps.length, node: s.node, durationMs: f.durationMs, error: describeError(err),
              command: last?.command, exitCode: last?.exit ?? undefined, commands: commandsOf(f.cmds),
            };
            // Without the lease, Redis may be what failed: don't wait on it to let go.
            if (keep.lost) recordLater('step.failed', cluster.name, rec.id, failed);
            else await audit('step.failed', cluster.name, rec.id, 'bot', failed).catch(() => undefined);
            const how = isMedicError(err) && err.code === 'SHUTDOWN' ? 'interrupted' : 'failed';
            exec.states[f.step] = `${how} (${secs(f.durationMs)})`;
            deps.metrics?.step(s.action, how, f.durationMs / 1000);
          }
          // Steps of the batch that did finish are in the trail; the batch as a whole runs
          // again on resume (each step checks before it acts).
          const alsoDone = [...ran.keys()].sort((a, b) => a - b);
          for (const k of alsoDone) {
            const r = ran.get(k)!;
            exec.states[k] = `${r.outcome.status} (${secs(r.durationMs)})`;
            deps.metrics?.step(steps[k].action, r.outcome.status, r.durationMs / 1000);
            thread(lineOf(k));
          }
          for (const k of alsoDone) await recordStep(k).catch(() => undefined);
          const err = lost ?? first.error;
          throw Object.assign(err instanceof Error ? err : new Error(String(err)), { failedStep: labelOf(first.step), doneSteps: i, alsoDone: alsoDone.map((k) => k + 1) });
        }
        exec.cursor = end;
        for (const k of batch) {
          const r = ran.get(k)!;
          Object.assign(exec.outputs, r.outcome.outputs ?? {});
          exec.states[k] = `${r.outcome.status} (${secs(r.durationMs)})`;
          deps.metrics?.step(steps[k].action, r.outcome.status, r.durationMs / 1000);
        }
        await checkpoint(exec);
        // Checkpointed: the steps count as done. Their lines go to the thread before anything
        // else may wait on Redis, so a worker cut off right now still leaves them in the trail.
        for (const k of batch) thread(lineOf(k));
        await deps.approvals.setExtra(rec.id, { states: JSON.stringify(exec.states) }).catch(() => undefined);
        for (const k of batch) await recordStep(k);
        i = end;

      }
      // Every step done; only the holder of the lease reports it: a worker cut off from Redis
      // after the last step has been replaced by one that resumed past the end and reports.
      if (keep.lost) throw new MedicError('LEASE_LOST', `lost the lock on ${cluster.name} after the last step: ${keep.lost}`);
      keep.stop();
      if (!(await deps.approvals.transition(rec.id, ['running'], 'succeeded'))) {
        throw new MedicError('LEASE_LOST', `plan ${rec.id} is no longer running here after its last step: another worker reported it`);
      }
      await letGo();
      if (commandOf(rec.command).rebuildsCluster) {
        // A new cluster (restore) or a new membership on old data (force-new-cluster), both
        // approved: what the bot saw before is no longer what to compare with.
        await deps.memory?.forget(cluster.name).catch(() => undefined);
        await audit('cluster.memory.reset', cluster.name, rec.id, 'bot', { reason: `${rec.command} completed` });
      }
      const status = await finalReport(cluster, title, 'ok', `done: all ${steps.length} steps ran.`);
      deps.metrics?.job(rec.command, 'succeeded');
      await audit('job.succeeded', cluster.name, rec.id, 'bot', { verdict: status.verdict?.text, members: status.tables?.[0]?.rows });
      const report = await anchored(status);
      thread(report);
      await updateMessage(rec.id, exec.states, true);
      return report;
    } catch (e) {
      keep.stop();
      const failedStep = (e as { failedStep?: string }).failedStep;
      const doneSteps = (e as { doneSteps?: number }).doneSteps ?? exec.cursor;
      const alsoDone = (e as { alsoDone?: number[] }).alsoDone ?? [];
      const ranText = `${done(doneSteps)}${alsoDone.length ? `, and of the steps run at once with it, ${alsoDone.length === 1 ? 'step' : 'steps'} ${alsoDone.join(', ')}` : ''}`;
      // Stop acting on the cluster before describing it: a timed-out step may still be in flight.
      if (!abort.signal.aborted) abort.abort(new MedicError('CANCELLED', 'the job stopped'));
      await resources?.close().catch(() => undefined);
      const code = isMedicError(e) ? e.code : undefined;
      // Fenced while the lease is still ours: something else acted on the node (another
      // bot on another Redis?): a failure to report, not a hand-over to anyone.
      const fencedOut = code === 'FENCED' && !(await withDeadline(lease.isCurrent(), 3000).catch(() => false));
      if (keep.lost || code === 'LEASE_LOST' || fencedOut) {
        // Another worker holds (or may take) the cluster now: it owns the plan's status and
        // thread from here. The record is kept even while Redis is unreachable.
        recordLater('job.lease-lost', cluster.name, rec.id, { worker: workerId, step: failedStep, token: lease.token, reason: keep.lost ?? describeError(e) });
        deps.metrics?.leaseLost(cluster.name);
        deps.metrics?.job(rec.command, 'lease-lost');
        // Its BullMQ job lock lapsed with the same Redis: the stalled check gives the job to a
        // worker that waits for this lease to lapse, then resumes at the unfinished step.
        return errorReport(title, `this worker lost the lock on ${cluster.name}${failedStep ? ` at ${failedStep}` : ''}; another worker carries the plan on`);
      }
      if (code === 'SHUTDOWN') {
        // Nothing is wrong with the plan: save where it is and let another worker resume it.
        exec.handedOver = `was shut down${failedStep ? ` during ${failedStep}` : ''}`;
        deps.metrics?.job(rec.command, 'handed-over');
        await checkpoint(exec);
        await audit('job.handed-over', cluster.name, rec.id, 'bot', { worker: workerId, atStep: doneSteps + 1, interrupted: failedStep, token: lease.token }).catch(() => undefined);
        thread(`This worker is shutting down: handed over at step ${doneSteps + 1}/${rec.plan.steps.length}${failedStep ? ' (the step in flight was interrupted and runs again, checking before it acts)' : ''}; another worker resumes it.`);
        throw Object.assign(new MedicError('SHUTDOWN', `plan ${rec.id} handed over at step ${doneSteps + 1}`), { handOver: true });
      }
      if (!keep.lost) await checkpoint(exec).catch(() => undefined);
      await deps.approvals.transition(rec.id, ['running'], 'failed').catch(() => undefined);
      deps.metrics?.job(rec.command, 'failed');
      await audit('job.failed', cluster.name, rec.id, 'bot', { step: failedStep, error: describeError(e) }).catch(() => undefined);
      const report = await anchored(await finalReport(cluster, title, 'critical',
        `failed${failedStep ? ` at ${failedStep}` : ''}: ${describeError(e)}. ${ranText}; later steps did not run, and the cluster is as shown below. Fix the cause, then request again (each step checks before it acts).`));
      thread(report);
      await updateMessage(rec.id, exec.states, true).catch(() => undefined);
      return report;
    } finally {
      keep.stop();
      running.delete(active);
      await resources?.close().catch(() => undefined);
      if (!keep.lost) await lease.release().catch(() => undefined);
      await flushPosts();
    }
  }

  /**
   * The plan's final report with the audit chain's signed head (taken after the plan's last
   * event), so the thread holds an anchor that a later `audit verify --anchor` checks the
   * log against. Never holds up or fails the report.
   */
  async function anchored(report: Report): Promise<Report> {
    if (!deps.anchor) return report;
    try {
      const line = await withDeadline(deps.anchor(), 5000, 'signing the audit anchor');
      return { ...report, notes: [...(report.notes ?? []), line] };
    } catch (e) {
      deps.log?.('could not anchor the audit log in the final report', { error: describeError(e) });
      return report;
    }
  }

  /**
   * An audit event that must not be lost while Redis is unreachable (a lost lease): tried
   * now, then again every few seconds for a bounded time; always logged.
   */
  function recordLater(type: string, cluster: string, planId: string, data: Record<string, unknown>, once?: string) {
    const event = once ? data : { ...data, at: now().toISOString() };
    deps.log?.(type, { cluster, plan: planId, ...event });
    const until = Date.now() + 10 * 60_000;
    const attempt = () => {
      void withDeadline(audit(type, cluster, planId, 'bot', event, once), 5000).catch(() => {
        if (Date.now() < until) setTimeout(attempt, 2000).unref();
        else deps.log?.('audit record dropped after 10 min of retries', { type, cluster, plan: planId });
      });
    };
    attempt();
  }

  /**
   * Shutdown (SIGTERM): no new step starts; a running plan is checkpointed and handed over
   * at its next step boundary. A step still running after `graceMs` is aborted (it runs
   * again on the worker that resumes the plan; every step checks before it acts).
   */
  function shutdown(graceMs: number): void {
    draining = true;
    if (!running.size) return;
    setTimeout(() => {
      for (const r of running) r.abort.abort(new MedicError('SHUTDOWN', `this worker is shutting down: the step in flight was interrupted after ${graceMs / 1000} s of grace`));
    }, graceMs).unref();
  }

  /**
   * The cluster's lock. A resumed job waits for the lease of the worker that ran it before
   * to lapse (that worker may still be alive, only cut off): it is never taken over early.
   */
  async function acquireLease(cluster: ClusterConfig, rec: PlanView, resumed: boolean): Promise<Lease> {
    const holder = { jobId: rec.id, requester: rec.requester, progress: 'starting' };
    if (!resumed) return deps.locks.acquire(cluster.name, holder);
    const until = Date.now() + deps.locks.leaseMs * 2 + 5000;
    for (;;) {
      try {
        return await deps.locks.acquire(cluster.name, holder);
      } catch (e) {
        if (!(isMedicError(e) && e.code === 'CLUSTER_BUSY') || Date.now() > until) throw e;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  async function verifyCluster(cluster: ClusterConfig) {
    const s = summarize(cluster, await deps.probe(cluster));
    const learners = s.members.filter((m) => m.isLearner).length;
    return {
      voters: s.voters, learners, healthyVoters: s.healthyVoters, quorum: s.quorum,
      healthyVoterNodes: s.members.filter((m) => m.healthy && !m.isLearner && m.node).map((m) => m.node!),
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

  /**
   * A step is done once checkpointed; its record goes to the trail right after. A worker that
   * died between the two left the step done but unrecorded: the worker resuming the plan
   * records it (once: when the first record did make it, this one is not stored).
   */
  async function recordCheckpointedStep(rec: PlanView, exec: ExecCheckpoint, cluster: string): Promise<string | undefined> {
    const steps = rec.plan.steps;
    // The last checkpoint ended a batch: every step of it may be the one left unrecorded.
    let first = exec.cursor - 1;
    while (first > 0 && steps[first].group && steps[first - 1].group === steps[first].group) first--;
    const lines: string[] = [];
    for (let i = Math.max(first, 0); i < exec.cursor; i++) {
      const s = steps[i];
      if (!s) continue;
      const state = exec.states[i] ?? 'done';
      const type = state.startsWith('skipped') ? 'step.skipped' : 'step.succeeded';
      const label = `step ${i + 1}/${steps.length}: ${s.action}${s.node ? ` ${s.node}` : ''}`;
      const entry = await deps.audit.append({
        type, cluster, jobId: rec.id, actor: 'bot',
        data: { step: s.action, index: i + 1, total: steps.length, node: s.node, detail: `${state}; recorded on resume: the worker that ran it stopped before recording it`, recovered: true },
      }, { once: stepDoneKey(rec.id, i + 1) });
      // Its thread line went with the worker too: the thread shows it now.
      if (entry) lines.push(`${type === 'step.skipped' ? '⏭' : '✅'} ${label} — ${state} — recorded on resume: the worker that ran it stopped before recording it`);
    }
    return lines.length ? lines.join('\n') : undefined;
  }

  // Plan message edits, throttled: chat.update is rate-limited per workspace. One plan's
  // edits go out one after another, in the order they were made: an edit held back by a
  // 429 and retried must not land after the final one and show a finished plan as running.
  const lastUpdate = new Map<string, { at: number; timer?: NodeJS.Timeout }>();
  const edits = new Map<string, Promise<void>>();
  async function updateMessage(planId: string, states: string[], force = false): Promise<void> {
    // Cosmetic: a failed edit (Slack or Redis blinking) never fails the job or the process.
    const edit = async () => {
      try {
        const v = await deps.approvals.get(planId);
        if (!v?.message) return;
        await surface(v.origin).update(v.message, planReport(v, states));
      } catch {
        /* the next update, or the final one, shows the state */
      }
    };
    const doUpdate = () => {
      lastUpdate.set(planId, { at: Date.now() });
      const next = (edits.get(planId) ?? Promise.resolve()).then(edit);
      edits.set(planId, next);
      void next.then(() => { if (edits.get(planId) === next) edits.delete(planId); });
      return next;
    };
    const last = lastUpdate.get(planId);
    const every = deps.updateEveryMs ?? 1500;
    if (last?.timer) clearTimeout(last.timer);
    if (force) {
      await doUpdate();
      lastUpdate.delete(planId);
      return;
    }
    if (!last || Date.now() - last.at >= every) return doUpdate();
    const timer = setTimeout(() => { void doUpdate(); }, every - (Date.now() - last.at));
    timer.unref?.();
    lastUpdate.set(planId, { at: last.at, timer });
  }

  return { planJob, decide, executeJob, startExecution, shutdown };
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
  // A destructive plan always needs a second person, whatever the config says.
  return Math.max(policy, command.minApprovals ?? 0, risk === 'destructive' ? 1 : 0);
}

/** A console drill override is recorded as such with every request and decision. */
function identityOf(o: Origin): { identity?: 'os' | 'override' } {
  return o.adapter === 'console' && o.identity ? { identity: o.identity } : {};
}

/** The idempotency key of a step's done record: one per step of a plan, whichever worker writes it. */
export function stepDoneKey(planId: string, index: number): string {
  return `${planId}:step-done:${index}`;
}

function withoutResponseUrl(o: Origin): Origin {
  if (o.adapter !== 'slack' || !o.responseUrl) return o;
  const { responseUrl: _dropped, ...rest } = o;
  return rest;
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

/** The largest of uint64 revisions given as decimal strings. */
export function maxRevision(revisions: string[]): string {
  return revisions.filter((r) => /^\d+$/.test(r)).reduce((a, b) => (BigInt(b) > BigInt(a) ? b : a), '0');
}

function withDeadline<T>(p: Promise<T>, ms: number, what = 'waiting'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new MedicError('TIMEOUT', `${what}: no answer within ${ms / 1000} s`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

