import type { ClusterConfig, MedicConfig } from '../config/schema';
import type { ClusterSnapshot } from '../exec/types';
import type { Report } from './report';
import type { PlanDraft, PlanState } from './plan';
import type { ClusterMemory } from './cluster-memory';
import type { AuditLog } from '../audit/audit-log';
import type { PlanView } from './approvals';
import type { NodeRuntime } from '../runtime/types';
import type { SnapshotStore } from '../snapshot/store';
import type { JobResources } from '../actions/context';
import type { Origin } from './types';

/** read: no change; mutating: changes membership or data safely; destructive: can lose data. */
export type Risk = 'read' | 'mutating' | 'destructive';

/** How one positional argument is checked. Every value is matched against the inventory or a strict pattern. */
export type ArgSpec = (
  | { kind: 'cluster'; name: string; help: string }
  | { kind: 'node'; name: string; help: string }
  /** A node name of the cluster, or a member id (hex) for members no node stands for. */
  | { kind: 'member'; name: string; help: string }
  /** A job or plan id as the bot printed it. */
  | { kind: 'job'; name: string; help: string }
  /** A snapshot id from /etcd snapshot list. */
  | { kind: 'snapshot'; name: string; help: string }
  | { kind: 'number'; name: string; help: string; min: number; max: number }
  | { kind: 'choice'; name: string; help: string; choices: string[] }
) & { optional?: boolean; default?: string };

export const arg = {
  /** A cluster name from clusters.yaml. */
  cluster: (name = 'cluster'): ArgSpec => ({ kind: 'cluster', name, help: 'a cluster name from /etcd clusters' }),
  /** A node of the cluster named by the preceding cluster argument. */
  node: (name = 'node'): ArgSpec => ({ kind: 'node', name, help: 'a control-plane node of that cluster' }),
  member: (name = 'member'): ArgSpec => ({ kind: 'member', name, help: 'a node name, or a member id (16 hex digits) from /etcd status' }),
  job: (name = 'job'): ArgSpec => ({ kind: 'job', name, help: 'a job id from /etcd jobs' }),
  snapshot: (name = 'snapshot'): ArgSpec => ({ kind: 'snapshot', name, help: 'a snapshot id from /etcd snapshot list' }),
  number: (name: string, min: number, max: number, def?: number): ArgSpec => ({
    kind: 'number', name, help: `a number from ${min} to ${max}`, min, max, optional: def !== undefined, default: def === undefined ? undefined : String(def),
  }),
  choice: (name: string, choices: string[], def?: string): ArgSpec => ({
    kind: 'choice', name, help: choices.join('|'), choices, optional: def !== undefined, default: def,
  }),
};

/** What a command's code may use when it runs in a worker. Built by the runner from its dependencies. */
export interface RunContext {
  config: MedicConfig;
  cluster: ClusterConfig;
  args: Record<string, string>;
  origin: Origin;
  jobId: string;
  /** Query every member in parallel, each bounded by cluster.statusTimeoutMs. */
  probe(cluster: ClusterConfig): Promise<ClusterSnapshot>;
  /** The audit trail (for /etcd audit). */
  audit?: AuditLog;
  /** Jobs and plans of a cluster (for /etcd jobs). */
  jobs?: (cluster: string) => Promise<JobsView>;
  /** The bot's snapshot store (snapshot save/list). */
  snapshots?: SnapshotStore;
  /** What the bot remembers of each cluster (forget). */
  memory?: ClusterMemory;
  /** SSH sessions, tunnels and etcd clients for one command; the caller closes them. */
  openResources?: (cluster: ClusterConfig) => JobResources;
  /** SSH to one node of the cluster (for /etcd logs); closed by the runner. */
  withNode?: <T>(cluster: ClusterConfig, node: string, fn: (rt: NodeRuntime) => Promise<T>) => Promise<T>;
}

/** What a command over every readable cluster may use (/etcd status all). */
export interface FleetContext extends Omit<RunContext, 'cluster'> {
  /** The clusters the requester may read from the request's channel. */
  clusters: ClusterConfig[];
  /** Configured clusters not readable there (counted, never named). */
  hidden: number;
}

/** What /etcd jobs shows: the cluster's lock holder, queued jobs and recent plans. */
export interface JobsView {
  lock?: { jobId: string; requester: string; progress: string };
  queued: Array<{ id: string; command: string; phase: string; state: string; requester: string; at: string }>;
  plans: PlanView[];
}

export interface ReplyContext {
  config: MedicConfig;
  commands: readonly CommandDef[];
  args: Record<string, string>;
  origin: Origin;
}

export interface CommandDef {
  /** As the user types it: "status", "replace-member". */
  id: string;
  summary: string;
  args: ArgSpec[];
  risk: Risk;
  /** Answered from configuration alone, without the queue (help, clusters). */
  reply?: (ctx: ReplyContext) => Report;
  /** Runs in a worker; read-only commands only (mutating ones declare a plan of steps). */
  execute?: (ctx: RunContext) => Promise<Report>;
  /** Runs in a worker over every cluster the requester may read from the channel; read-only, no cluster argument. */
  fleet?: (ctx: FleetContext) => Promise<Report>;
  /** Other ways to type it, of two words ("status all"). */
  aliases?: string[];
  /**
   * Mutating and destructive commands: pure, live state in, steps out. Throws
   * MedicError('UNSAFE') (see refuse()) when the change would be unsafe.
   */
  plan?: (state: PlanState, args: Record<string, string>) => PlanDraft;
  /**
   * Completing the plan replaces the cluster's identity or history (restore: a new cluster;
   * force-new-cluster: a new membership on one member's data): the bot's memory of it is reset.
   */
  rebuildsCluster?: boolean;
  /** The planner reads the etcd tools of the worker's host (restore): asked for only then. */
  needsHostTools?: boolean;
  /** approve / reject / cancel <job>: a decision on a plan, answered at once (no queue). */
  decision?: 'approve' | 'reject' | 'cancel';
  /** Approvals this command needs at least, whatever the cluster's policy says (force-new-cluster: 2). */
  minApprovals?: number;
}

export function defineCommand(def: CommandDef): CommandDef {
  if ([def.reply, def.execute, def.fleet, def.plan, def.decision].filter(Boolean).length !== 1) throw new Error(`command ${def.id}: define exactly one of reply, execute, fleet, plan or decision`);
  if (def.fleet && (def.risk !== 'read' || def.args.some((a) => a.kind === 'cluster'))) throw new Error(`command ${def.id}: a fleet command reads, over every cluster: risk read, no cluster argument`);
  if (!def.reply && !def.decision && !def.fleet && def.args[0]?.kind !== 'cluster') throw new Error(`command ${def.id}: queued commands take a cluster first`);
  if (def.aliases?.some((a) => !/^[a-z-]+ [a-z-]+$/.test(a))) throw new Error(`command ${def.id}: an alias is two lowercase words`);
  if (def.plan && def.risk === 'read') throw new Error(`command ${def.id}: a planned command changes something: risk mutating or destructive`);
  if (def.execute && def.risk !== 'read') throw new Error(`command ${def.id}: commands that change things must declare a plan`);
  return def;
}

export function usage(def: CommandDef): string {
  return ['/etcd', def.id, ...def.args.map((a) => (a.optional ? `[${a.kind === 'choice' ? a.choices.join('|') : a.name}]` : `<${a.name}>`))].join(' ');
}
