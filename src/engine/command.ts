import type { ClusterConfig, MedicConfig } from '../config/schema';
import type { ClusterSnapshot } from '../exec/types';
import type { Report } from './report';
import type { Origin } from './types';

/** read: no change; mutating: changes membership or data safely; destructive: can lose data. */
export type Risk = 'read' | 'mutating' | 'destructive';

/** How one positional argument is checked. Every value is matched against the inventory or a strict pattern. */
export type ArgSpec =
  | { kind: 'cluster'; name: string; help: string }
  | { kind: 'node'; name: string; help: string }
  | { kind: 'choice'; name: string; help: string; choices: string[] };

export const arg = {
  /** A cluster name from clusters.yaml. */
  cluster: (name = 'cluster'): ArgSpec => ({ kind: 'cluster', name, help: 'a cluster name from /etcd clusters' }),
  /** A node of the cluster named by the preceding cluster argument. */
  node: (name = 'node'): ArgSpec => ({ kind: 'node', name, help: 'a control-plane node of that cluster' }),
  choice: (name: string, choices: string[]): ArgSpec => ({ kind: 'choice', name, help: choices.join('|'), choices }),
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
  /** Runs in a worker; read-only commands only (mutating ones will declare a plan of steps). */
  execute?: (ctx: RunContext) => Promise<Report>;
}

export function defineCommand(def: CommandDef): CommandDef {
  if (!def.reply === !def.execute) throw new Error(`command ${def.id}: define exactly one of reply or execute`);
  if (def.execute && def.args[0]?.kind !== 'cluster') throw new Error(`command ${def.id}: queued commands take a cluster first`);
  return def;
}

export function usage(def: CommandDef): string {
  return ['/etcd', def.id, ...def.args.map((a) => `<${a.name}>`)].join(' ');
}
