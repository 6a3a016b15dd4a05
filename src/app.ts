import { commands as allCommands } from '../commands';
import { collectJobsView } from '../commands/jobs';
import type { ClusterConfig, MedicConfig } from './config/schema';
import type { CommandDef } from './engine/command';
import { createRequestLimiter, Engine, RequestLimitOptions } from './engine/engine';
import { createJobRunner } from './engine/runner';
import type { Notifier } from './engine/types';
import { MemberLinks, probeCluster } from './exec/probe';
import type { ClusterSnapshot } from './exec/types';
import { createSshPool, SshPool } from './exec/ssh';
import { createJobQueue, JobQueue } from './queue/queue';
import { createJobWorker, JobWorker } from './queue/worker';
import { createSlackApp, createSlackWebNotifier } from './adapters/slack/app';
import type { Logger } from './log';
import IORedis, { Redis } from 'ioredis';
import { createAuditLog, AuditLog } from './audit/audit-log';
import { createAnchorSink, formatAnchor } from './audit/anchor';
import { createApprovalStore } from './engine/approvals';
import { createClusterMemory } from './engine/cluster-memory';
import { summarize } from './engine/status-summary';
import { createClusterLocks } from './locks/cluster-lock';
import { createWorkflow, ExecutionResources, maxRevision } from './engine/workflow';
import { createJobResources, JobResources } from './actions/context';
import { runAction } from './actions/actions';
import { createSnapshotStore } from './snapshot/store';
import { createOffsite, type OffsiteOptions } from './snapshot/offsite';
import { withOffsite } from './snapshot/tiered';
import type { ChatSurface } from './engine/types';
import { groupIdsIn } from './adapters/slack/groups';
import { scheduleSnapshots } from './queue/scheduler';
import { createMetrics, type MedicMetrics, type PromMetrics } from './metrics/metrics';
import { startOpsServer } from './metrics/ops-server';

export interface MedicOptions {
  config: MedicConfig;
  redisUrl: string;
  /** @defaultValue 'etcd-medic' (tests use a fresh name each) */
  queueName?: string;
  /** Run a worker in this process (needs sshKey). */
  worker: boolean;
  sshKey?: Buffer;
  /**
   * Slack: `serve` answers slash commands over HTTP (or Socket Mode) in this process;
   * without it, the process only posts its workers' results with the bot token.
   */
  slack?: {
    serve: boolean;
    botToken: string; signingSecret: string; apiUrl?: string; port: number; host?: string;
    appToken?: string; socketMode?: boolean; webClientRetries?: number;
  };
  commands?: readonly CommandDef[];
  log: Logger;
  /** Worker lock duration; equal on every worker of the queue. @defaultValue 30000 */
  lockDurationMs?: number;
  /** The bot's snapshot store. @defaultValue '/var/lib/etcd-medic/snapshots' */
  snapshotDir?: string;
  /**
   * Audit log key in Redis, optional HMAC key, and the append-only file where the signed
   * chain head is written with each plan's final report. @defaultValue { key: 'etcd-medic:audit' }
   */
  audit?: { key: string; hmacKey?: Buffer; anchorFile?: string };
  /** Lease of the per-cluster lock; a crashed job's lock frees itself after it. @defaultValue 30000 */
  clusterLeaseMs?: number;
  /** Prefix of plan ids (the console's queue numbers its jobs apart from Slack's). @defaultValue '' */
  planIdPrefix?: string;
  /** Clock of approvals and plans (tests move it to expire approvals). @defaultValue () => new Date() */
  now?: () => Date;
  /** Requests per user and window (shared by every web process through Redis); false: none (benchmarks). @defaultValue 20 a minute */
  requestLimit?: RequestLimitOptions | false;
  /** On stop (SIGTERM), how long a running step may go on before it is aborted and handed over. @defaultValue 20000 */
  shutdownGraceMs?: number;
  /**
   * Status probes keep their SSH connections and etcd links this long for the next probe
   * (shared by every job of this process). 0: each probe opens its own and closes them.
   * @defaultValue 60000
   */
  keepConnectionsMs?: number;
  /**
   * Serve /metrics, /healthz and /readyz on this port (0: any free one, see `opsUrl`).
   * @defaultValue not served (the metrics are still kept, in `metrics`)
   */
  ops?: { port: number; host?: string };
  /** Also keep every snapshot in an S3-API object store (read back and checked). @defaultValue none */
  offsite?: OffsiteOptions;
}

export interface Medic {
  engine: Engine;
  queue: JobQueue;
  audit: AuditLog;
  /** Redis for approvals, locks and the audit log. */
  state: Redis;
  worker?: JobWorker;
  /** The Slack HTTP endpoint (…/slack/events), when serving Slack over HTTP. */
  slackUrl?: string;
  /** This process's counters and timings (Prometheus). */
  metrics: PromMetrics;
  /** Where /metrics, /healthz and /readyz are served, when `ops` was given. */
  opsUrl?: string;
  stop(): Promise<void>;
}

export interface Probe {
  (cluster: ClusterConfig): Promise<ClusterSnapshot>;
  /** Connections open now (kept and in use). */
  connections(): number;
  /** The kept SSH pool (keepMs > 0), which the worker's plan jobs share. */
  readonly ssh?: SshPool;
  close(): Promise<void>;
}


/** A job's resources as the workflow runs steps on them; a fork is a view for a step run beside others. */
function executionOf(res: JobResources): ExecutionResources {
  return {
    run: (step, ctx) => runAction(step, { ...ctx, res }),
    takeCommands: () => res.takeCommands(),
    fork: () => executionOf(res.view()),
    close: () => res.close(),
    release: () => res.release(),
  };
}
/**
 * Status probes. With keepMs > 0 one SSH pool and one set of member links serve every probe
 * of this process: a warm status opens nothing. A connection that sat unused is checked
 * before reuse; every new one has its host key checked; unused ones close after keepMs.
 * With keepMs 0 each probe opens its own and closes them at its end.
 */
export function createProbe(sshKey: Buffer, metrics?: MedicMetrics, keepMs = 60_000): Probe {
  // Each target carries its cluster's timeouts: these only fill the pool's defaults.
  const poolOf = (idleMs?: number) => createSshPool({ privateKey: sshKey, connectTimeoutMs: 10_000, commandTimeoutMs: 30_000, idleMs });
  const kept = keepMs > 0 ? { ssh: poolOf(keepMs), links: new MemberLinks({ idleMs: keepMs }) } : undefined;
  const probe = async (cluster: ClusterConfig) => {
    const onNode = (node: string, reachable: boolean, ms: number) => metrics?.probeNode(cluster.name, node, reachable, ms / 1000);
    if (kept) return probeCluster(cluster, { ...kept, onNode });
    const ssh = poolOf();
    try {
      return await probeCluster(cluster, { ssh, onNode });
    } finally {
      await ssh.closeAll();
    }
  };
  return Object.assign(probe, {
    ssh: kept?.ssh,
    connections: () => kept?.ssh.size() ?? 0,
    async close() {
      kept?.links.closeAll();
      await kept?.ssh.closeAll();
    },
  });
}

/** Wire engine, queue, worker and adapters for the roles this process plays. */
export async function startMedic(opts: MedicOptions): Promise<Medic> {
  const commands = opts.commands ?? allCommands;
  const queue = createJobQueue({ redisUrl: opts.redisUrl, name: opts.queueName });
  let keptProbe: Probe | undefined;
  const metrics = createMetrics({
    queueDepth: () => queue.queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'failed') as Promise<Record<string, number>>,
    keptConnections: () => keptProbe?.connections() ?? 0,
  });
  // Approvals, locks and the audit trail: shared by every process through Redis. Commands
  // fail after one retry instead of queueing forever while Redis is down.
  const state = new IORedis(opts.redisUrl, {
    maxRetriesPerRequest: 1, connectTimeout: 3000, commandTimeout: 5000,
    retryStrategy: (times) => Math.min(200 * times, 2000),
  });
  state.on('error', () => undefined);
  const audit = createAuditLog(state, opts.audit ?? {});
  const anchorSink = opts.audit?.anchorFile ? createAnchorSink(opts.audit.anchorFile) : undefined;
  // The chain head, signed, kept in the anchor file and posted with each plan's final report.
  const anchor = async () => {
    const a = await audit.anchor();
    await anchorSink?.append(a).catch((e: unknown) => opts.log.warn({ error: String(e), anchor: formatAnchor(a) }, 'could not write the audit anchor file'));
    return `\`${formatAnchor(a)}\``;
  };
  const approvals = createApprovalStore(state);
  const locks = createClusterLocks(state, opts.clusterLeaseMs ?? 30000);
  const surfaces: Partial<Record<'slack' | 'console', ChatSurface>> = {};
  keptProbe = opts.sshKey ? createProbe(opts.sshKey, metrics, opts.keepConnectionsMs) : undefined;
  const rawProbe = keptProbe ?? (async (): Promise<ClusterSnapshot> => { throw new Error('this process has no SSH key (MEDIC_SSH_KEY_FILE)'); });
  // One memory per deployment (its queue): what the bot has seen of each cluster.
  const memory = createClusterMemory(state, opts.queueName ?? 'etcd-medic');
  // Every probe notes the highest revision seen (a restore bumps past it) and is compared
  // with what the bot saw before: data that vanished or was replaced is named, not "healthy".
  const probe = async (cluster: ClusterConfig) => {
    const snap = await rawProbe(cluster);
    void approvals.noteRevision(cluster.name, maxRevision(snap.probes.map((p) => p.status?.revision ?? '0'))).catch(() => undefined);
    const summary = summarize(cluster, snap);
    const seen = await memory.observe(snap, summary).catch((e: unknown) => {
      opts.log.warn({ cluster: cluster.name, error: String(e) }, 'could not compare the probe with the cluster memory (Redis?)');
      return undefined;
    });
    if (seen) snap.memory = seen;
    metrics.verdict(cluster.name, seen?.findings.length ? 'data-lost' : summary.verdict);
    return snap;
  };
  const sshKey = opts.sshKey;
  const localStore = createSnapshotStore({ dir: opts.snapshotDir ?? '/var/lib/etcd-medic/snapshots' });
  const snapshots = {
    store: opts.offsite
      ? withOffsite(localStore, createOffsite(opts.offsite), { log: (msg, extra) => opts.log.warn(extra ?? {}, msg) })
      : localStore,
  };
  const workflow = createWorkflow({
    config: opts.config, commands, probe, approvals, locks, audit, surfaces, snapshots, memory, now: opts.now, planIdPrefix: opts.planIdPrefix, queueName: opts.queueName ?? 'etcd-medic',
    enqueueExecution: (job, jobId) => queue.add(job, { jobId }),
    openResources: sshKey ? (cluster, _planId, fence): ExecutionResources => {
      const res = createJobResources({ cluster, sshKey, fence, pool: keptProbe?.ssh });
      res.warm();
      return executionOf(res);
    } : undefined,
    log: (msg, extra) => opts.log.warn(extra ?? {}, msg),
    anchor,
    metrics,
  });
  const limiter = opts.requestLimit === false ? undefined : createRequestLimiter(state, { prefix: opts.queueName ?? 'etcd-medic', ...opts.requestLimit });
  const engine = new Engine({ config: opts.config, commands, queue, decide: (d) => workflow.decide(d), limiter, metrics });
  const notifiers: Partial<Record<'slack' | 'console', Notifier>> = {};
  const stops: Array<() => Promise<void>> = [];
  let slackUrl: string | undefined;

  if (opts.slack && !opts.slack.serve) {
    const web = createSlackWebNotifier({
      botToken: opts.slack.botToken, slackApiUrl: opts.slack.apiUrl, webClientRetries: opts.slack.webClientRetries, logger: opts.log, metrics,
    });
    notifiers.slack = web;
    surfaces.slack = web.surface;
  } else if (opts.slack) {
    const slack = createSlackApp({
      engine,
      signingSecret: opts.slack.signingSecret,
      botToken: opts.slack.botToken,
      slackApiUrl: opts.slack.apiUrl,
      port: opts.slack.port,
      host: opts.slack.host,
      socketMode: opts.slack.socketMode && opts.slack.appToken ? { appToken: opts.slack.appToken } : undefined,
      webClientRetries: opts.slack.webClientRetries,
      logger: opts.log,
      groupIds: groupIdsIn(opts.config),
      metrics,
    });
    notifiers.slack = slack.notifier;
    surfaces.slack = slack.surface;
    await slack.start();
    stops.push(() => slack.stop());
    slackUrl = slack.address()?.url;
    opts.log.info({ url: slackUrl, socketMode: !!opts.slack.socketMode }, 'slack adapter started');
  }

  let worker: JobWorker | undefined;
  if (opts.worker) {
    if (!opts.sshKey) throw new Error('a worker needs the SSH key');
    const key = opts.sshKey;
    const runner = createJobRunner({
      config: opts.config, commands, probe, audit,
      jobs: (cluster) => collectJobsView({
        lockHolder: (c) => locks.holder(c),
        queued: (c, n) => queue.jobsForCluster(c, n),
        plans: (c, n) => approvals.recentPlans(c, n),
      }, cluster),
      snapshots: snapshots.store,
      memory,
      openResources: (cluster) => createJobResources({ cluster, sshKey: key }),
      withNode: async (cluster, node, fn) => {
        const res = createJobResources({ cluster, sshKey: key });
        try {
          return await fn(await res.runtime(node));
        } finally {
          await res.close();
        }
      },
    });
    worker = createJobWorker({
      redisUrl: opts.redisUrl, runner, workflow, notifiers, name: opts.queueName, lockDurationMs: opts.lockDurationMs,
      log: (msg, extra) => opts.log.warn(extra ?? {}, msg), metrics,
    });
    // Every worker sets the same schedules from the same config (upserts are idempotent).
    void scheduleSnapshots(queue.queue, opts.config).then(
      (r) => opts.log.info(r, 'snapshot schedules set'),
      (e) => opts.log.warn({ error: String(e) }, 'could not set snapshot schedules'),
    );
    // Stop the worker first: no new job is taken, a running plan is handed over at its next
    // step boundary (its step aborted after the grace), and close() waits for that.
    stops.unshift(async () => {
      workflow.shutdown(opts.shutdownGraceMs ?? 20_000);
      await worker!.close();
    });
  }
  let opsUrl: string | undefined;
  let closeOps: (() => Promise<void>) | undefined;
  if (opts.ops) {
    const w = worker;
    const ops = await startOpsServer({
      metrics, port: opts.ops.port, host: opts.ops.host,
      checks: [
        { name: 'redis', check: async () => ((await state.ping()) === 'PONG' ? undefined : 'Redis did not answer PONG') },
        { name: 'config', check: async () => (opts.config.clusters.length ? undefined : 'no clusters configured') },
        ...(w ? [{ name: 'worker', check: async () => (w.worker.isRunning() ? undefined : 'the worker is not taking jobs') }] : []),
      ],
    });
    opsUrl = ops.url;
    opts.log.info({ url: opsUrl }, 'metrics and health endpoints started');
    closeOps = () => ops.close();
  }
  stops.push(() => queue.close());
  const probeToClose = keptProbe;
  if (probeToClose) stops.push(() => probeToClose.close());
  stops.push(async () => { state.disconnect(); });
  // Last: /healthz answers until the process has stopped everything else.
  if (closeOps) stops.push(closeOps);

  return {
    engine,
    queue,
    audit,
    state,
    worker,
    slackUrl,
    metrics,
    opsUrl,
    async stop() {
      for (const s of stops) {
        try { await s(); } catch (e) { opts.log.warn({ error: String(e) }, 'error while stopping'); }
      }
    },
  };
}
