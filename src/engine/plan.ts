/**
 * Plans: what a mutating command will do, as data. A plan is computed from the live
 * cluster state, shown verbatim before approval, hashed so an approval binds to exactly
 * what was shown, stored in the job, and executed step by step from a checkpoint.
 */
import { createHash } from 'node:crypto';
import type { ClusterConfig } from '../config/schema';
import type { ClusterSnapshot } from '../exec/types';
import type { HostTool } from '../exec/host-tools';
import { MedicError } from './errors';
import type { StatusSummary } from './status-summary';
import type { SnapshotRecord } from '../snapshot/store';
import { canonicalJson } from '../audit/verify';

/** Executor actions, named domain.verb. Each checks before it acts (safe to repeat). */
export type ActionName =
  | 'snapshot.safety'
  | 'etcd.memberRemove'
  | 'etcd.memberAddLearner'
  | 'etcd.waitLearnerSynced'
  | 'etcd.memberPromote'
  | 'etcd.defragment'
  | 'etcd.alarmDisarm'
  | 'node.stopEtcd'
  | 'node.moveDataAside'
  | 'node.ensurePki'
  | 'node.writeConfig'
  | 'node.startEtcd'
  | 'cluster.verify'
  // restore (issue 4)
  | 'snapshot.verifyFile'
  | 'restore.prepareData'
  | 'restore.installData'
  | 'node.writeRestoreConfig'
  | 'restore.verify'
  // quorum loss (issue 4)
  | 'node.copyDataAside'
  | 'node.setFlag'
  | 'etcd.waitSingleMember'
  // the bot's own state
  | 'bot.forgetMemory';

export type StepParam = string | number | boolean | string[];

export interface StepSpec {
  action: ActionName;
  /** The node this step touches, if any. */
  node?: string;
  params: Record<string, StepParam>;
  /** What it will change, in words shown in the plan. */
  describe: string;
  /**
   * Adjacent steps of one group run at the same time (independent of each other);
   * the plan says so. Without it a step runs alone.
   */
  group?: string;
}

export interface Fact {
  label: string;
  value: string;
  /** Shown but not hashed: numbers that drift with every write (DB sizes) must not void an approval. */
  volatile?: boolean;
}

/**
 * Who the plan acts on, besides its steps: the members as the plan saw them. An approval
 * binds to the steps, the non-volatile facts and these members, never to what flaps while a
 * cluster burns (leader, health, raft indexes, DB sizes, warnings): re-plan only when the
 * steps or their safety would change.
 */
export interface PlanBasis {
  /** "id name voter|learner", sorted; empty when no member answered the member list. */
  members: string[];
  /** Plans made before the approval stopped binding to the leader carry it; it is not compared. */
  leader?: string;
}

export interface Plan {
  command: string;
  cluster: string;
  args: Record<string, string>;
  steps: StepSpec[];
  facts: Fact[];
  warnings: string[];
  basis: PlanBasis;
}

/** What a command's planner returns; the engine adds command, cluster, args and basis. */
export interface PlanDraft {
  steps: StepSpec[];
  facts?: Fact[];
  warnings?: string[];
}

/** The live state a planner reads. */
export interface PlanState {
  cluster: ClusterConfig;
  snapshot: ClusterSnapshot;
  summary: StatusSummary;
  /** The cluster's snapshots in the bot's store, newest first (restore plans). */
  snapshots?: SnapshotRecord[];
  /** The highest store revision the bot has seen on this cluster (restores bump past it). */
  observedRevision?: string;
  /** The etcd tools on the planning worker's host (restore plans; unset: not known). */
  hostTools?: HostTool[];
}

export function step(action: ActionName, node: string | undefined, params: Record<string, StepParam>, describe: string, group?: string): StepSpec {
  return group ? { action, node, params, describe, group } : { action, node, params, describe };
}

/**
 * Where the batch starting at step index `i` ends (exclusive): adjacent steps of the same
 * `group` run at the same time; a step without one runs alone.
 */
export function batchEnd(steps: readonly StepSpec[], i: number): number {
  const g = steps[i]?.group;
  let end = i + 1;
  while (g && end < steps.length && steps[end].group === g) end++;
  return end;
}

/** The plan's batches of more than one step, as 1-based "first-last" ranges. */
export function parallelRanges(steps: readonly StepSpec[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < steps.length;) {
    const end = batchEnd(steps, i);
    if (end - i > 1) out.push(`${i + 1}-${end}`);
    i = end;
  }
  return out;
}

/** A planner's refusal: the plan would be unsafe. Nothing runs; the reason is shown. */
export function refuse(reason: string): never {
  throw new MedicError('UNSAFE', reason);
}

export function basisOf(summary: StatusSummary): PlanBasis {
  return {
    members: summary.members.filter((m) => m.id)
      .map((m) => `${m.id} ${m.name} ${m.isLearner ? 'learner' : 'voter'}`).sort(),
  };
}

// The same canonical form the audit chain hashes: the same plan always hashes the same.
export { canonicalJson };

/**
 * The hash an approval binds to: command, cluster, arguments, steps and the non-volatile
 * facts. Warnings and the member basis are shown and stored but compared apart (a member
 * list nobody answered is no change: see membersChanged).
 */
export function planHash(plan: Plan): string {
  const bound = { command: plan.command, cluster: plan.cluster, args: plan.args, steps: plan.steps, facts: plan.facts.filter((f) => !f.volatile) };
  return createHash('sha256').update(canonicalJson(bound)).digest('hex');
}

/**
 * Members added, removed or promoted since the plan was made. A side where no member
 * answered the member list (every member down or crash-looping) tells nothing: no change.
 */
export function membersChanged(before: PlanBasis, after: PlanBasis): { gone: string[]; added: string[] } | undefined {
  if (!before.members.length || !after.members.length) return undefined;
  const gone = before.members.filter((m) => !after.members.includes(m));
  const added = after.members.filter((m) => !before.members.includes(m));
  return gone.length || added.length ? { gone, added } : undefined;
}

/** Why two plans differ, in words (shown when an approval no longer matches the cluster). */
export function planDiff(before: Plan, after: Plan): string[] {
  const out: string[] = [];
  const members = membersChanged(before.basis, after.basis);
  if (members?.gone.length) out.push(`members no longer there: ${members.gone.join('; ')}`);
  if (members?.added.length) out.push(`new members: ${members.added.join('; ')}`);
  if (canonicalJson(before.steps) !== canonicalJson(after.steps)) {
    const changed = after.steps.length !== before.steps.length ? `${before.steps.length} steps before, ${after.steps.length} now`
      : `step ${after.steps.findIndex((x, i) => canonicalJson(x) !== canonicalJson(before.steps[i])) + 1} differs`;
    out.push(`the steps changed (${changed})`);
  }
  const facts = (p: Plan) => p.facts.filter((f) => !f.volatile).map((f) => `${f.label}: ${f.value}`);
  const factsGone = facts(before).filter((f) => !facts(after).includes(f));
  if (factsGone.length) out.push(`facts changed: ${factsGone.map((f) => `${f} → ${facts(after).find((g) => g.split(':')[0] === f.split(':')[0])?.slice(f.split(':')[0].length + 2) ?? 'gone'}`).join('; ')}`);
  return out.length ? out : ['the plan changed'];
}

/** Quorum arithmetic, shown in plans: voters, quorum, and failures tolerable. */
export function faultTolerance(voters: number, healthyVoters: number): string {
  const quorum = Math.floor(voters / 2) + 1;
  const tolerable = Math.max(0, healthyVoters - quorum);
  return `${healthyVoters}/${voters} healthy voters, quorum ${quorum}, ${tolerable} failure${tolerable === 1 ? '' : 's'} tolerable`;
}
