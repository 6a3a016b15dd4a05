/**
 * Plan states from a short description, for planner and policy tests: a cluster config
 * parsed by the real schema, one NodeProbe per node shaped like the probe's output, and
 * the summary from the real summarize().
 *
 *   planState({ down: ['node3'] })                    // node3's etcd refuses, node1 leads
 *   planState({ sshUnreachable: ['node3'], leader: 'node2' })
 *   planState({ learners: ['node3'], dbSize: { node1: 1.9 * GiB } })
 */
import type { CommandDef } from '../../src/engine/command';
import { basisOf, Plan, PlanState, planHash } from '../../src/engine/plan';
import { summarize } from '../../src/engine/status-summary';
import { ClusterConfig, configSchema } from '../../src/config/schema';
import type { Alarm, ClusterSnapshot, MemberInfo, NodeProbe } from '../../src/exec/types';

export const MiB = 1024 ** 2;
export const GiB = 1024 ** 3;

/** Member ids of node1…node5, 16 hex digits as etcdctl prints them. */
export const MEMBER_IDS = ['8e9e05c52164694d', '91bc3c398fb3c146', 'fd422379fda50e48', '2f4a5e6b7c8d9e01', '3a5b7c9d1e2f4a6b'];

export interface ClusterDescription {
  /** Configured nodes node1…nodeN. @defaultValue 3 */
  nodes?: number;
  /** The leader (healthy voters agree on it). @defaultValue the first healthy voter; none when no voter is healthy */
  leader?: string;
  /** etcd not answering (connection refused through the tunnel); SSH works. */
  down?: string[];
  /** etcd answers status but fails the linearizable health read (no quorum behind it). */
  unhealthy?: string[];
  /** The bot can't even log in (SSH_UNREACHABLE); nothing known of its etcd. */
  sshUnreachable?: string[];
  /** Members added as learners. */
  learners?: string[];
  /** Configured nodes that are not members (never joined, or removed). */
  notMembers?: string[];
  /** Members no configured node stands for (left behind after a rebuild). */
  strangers?: Array<{ id: string; name: string; ip: string; learner?: boolean }>;
  /** DB file size per node, bytes. @defaultValue 40 MiB */
  dbSize?: Record<string, number>;
  /** DB size in use per node, bytes. @defaultValue 25 MiB */
  dbInUse?: Record<string, number>;
  /** Alarms raised (cluster-wide, every member returns them). */
  alarms?: Array<{ node: string; alarm: 'NOSPACE' | 'CORRUPT' | string } | { memberId: string; alarm: string }>;
  /** The cluster's access block, as in clusters.yaml. */
  access?: Record<string, unknown>;
  /** Channels allowed. @defaultValue ['C0INCIDENT', 'console'] */
  channels?: string[];
}

export const nodeName = (i: number) => `node${i}`;
const ipOf = (i: number) => `10.0.0.${10 + i}`;

/** The cluster config, through configSchema (defaults filled as the loader fills them). */
export function clusterConfig(d: ClusterDescription = {}): ClusterConfig {
  const n = d.nodes ?? 3;
  const parsed = configSchema.parse({
    clusters: [{
      name: 'prod-eu1',
      channels: d.channels ?? ['C0INCIDENT', 'console'],
      ...(d.access ? { access: d.access } : {}),
      nodes: Array.from({ length: n }, (_, k) => ({
        name: nodeName(k + 1),
        ssh: { host: ipOf(k + 1), hostKey: `SHA256:${String.fromCharCode(65 + k).repeat(43)}` },
        clientUrl: `https://${ipOf(k + 1)}:2379`,
        peerUrl: `https://${ipOf(k + 1)}:2380`,
      })),
    }],
  });
  return parsed.clusters[0];
}

export function snapshotOf(cluster: ClusterConfig, d: ClusterDescription = {}): ClusterSnapshot {
  const has = (list: string[] | undefined, node: string) => !!list?.includes(node);
  const idOf = (node: string) => MEMBER_IDS[cluster.nodes.findIndex((x) => x.name === node)];
  const members: MemberInfo[] = [
    ...cluster.nodes.filter((x) => !has(d.notMembers, x.name)).map((x) => ({
      id: idOf(x.name), name: x.name, isLearner: has(d.learners, x.name), peerUrls: [x.peerUrl], clientUrls: [x.clientUrl],
    })),
    ...(d.strangers ?? []).map((s) => ({ id: s.id, name: s.name, isLearner: !!s.learner, peerUrls: [`https://${s.ip}:2380`], clientUrls: [`https://${s.ip}:2379`] })),
  ];
  const answers = (node: string) => !has(d.down, node) && !has(d.sshUnreachable, node) && !has(d.notMembers, node);
  const healthy = (node: string) => answers(node) && !has(d.unhealthy, node);
  const leaderNode = d.leader ?? cluster.nodes.find((x) => healthy(x.name) && !has(d.learners, x.name))?.name;
  const leaderId = leaderNode ? idOf(leaderNode) : '0000000000000000';
  const alarms: Alarm[] = (d.alarms ?? []).map((a) => ('node' in a ? { memberId: idOf(a.node), alarm: a.alarm } : a));
  return {
    cluster: cluster.name,
    collectedAt: '2024-05-01T03:12:00.000Z',
    probes: cluster.nodes.map((x, k): NodeProbe => {
      const base = { node: x.name, clientUrl: x.clientUrl };
      if (has(d.sshUnreachable, x.name)) {
        return { ...base, reachable: false, errorCode: 'SSH_UNREACHABLE', unreachableReason: `ssh ${x.ssh.host}:22: connect ECONNREFUSED` };
      }
      if (!answers(x.name)) {
        return {
          ...base, reachable: false, errorCode: 'ETCD_UNAVAILABLE',
          unreachableReason: `${x.name}: etcd at ${x.clientUrl} did not answer: 14 UNAVAILABLE: No connection established (connect ECONNREFUSED ${ipOf(k + 1)}:2379)`,
        };
      }
      const ok = healthy(x.name);
      // A learner serves no linearizable read, so it never passes the health check.
      const learner = has(d.learners, x.name);
      return {
        ...base,
        reachable: true,
        status: {
          memberId: idOf(x.name), version: '3.5.15',
          dbSize: d.dbSize?.[x.name] ?? 40 * MiB, dbSizeInUse: d.dbInUse?.[x.name] ?? 25 * MiB,
          leader: ok ? leaderId : '0000000000000000', isLearner: learner,
          raftTerm: '7', raftIndex: String(1000 + k), raftAppliedIndex: String(1000 + k), errors: [],
        },
        health: learner ? { healthy: false, latencyMs: 2, error: 'etcdserver: rpc not supported for learner' }
          : ok ? { healthy: true, latencyMs: 3 } : { healthy: false, latencyMs: 3000, error: 'context deadline exceeded' },
        members,
        alarms,
      };
    }),
  };
}

/** Config, snapshot and summary of the described cluster. */
export function planState(d: ClusterDescription = {}): PlanState {
  const cluster = clusterConfig(d);
  const snapshot = snapshotOf(cluster, d);
  return { cluster, snapshot, summary: summarize(cluster, snapshot) };
}

/** The plan as the workflow builds it (computePlan), with its hash: what an approval binds to. */
export function buildPlan(command: CommandDef, state: PlanState, args: Record<string, string>): { plan: Plan; hash: string } {
  const draft = command.plan!(state, args);
  const plan: Plan = {
    command: command.id, cluster: state.cluster.name, args, steps: draft.steps,
    facts: draft.facts ?? [], warnings: draft.warnings ?? [], basis: basisOf(state.summary),
  };
  return { plan, hash: planHash(plan) };
}

/** Steps as "action node" strings: what a plan test compares. */
export function stepList(plan: { steps: Array<{ action: string; node?: string }> }): string[] {
  return plan.steps.map((s) => (s.node ? `${s.action} ${s.node}` : s.action));
}
