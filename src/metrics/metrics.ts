/**
 * What the bot counts and times, for Prometheus. The engine, workflow, probes and chat
 * adapters report through this small interface (noMetrics where nobody scrapes); only this
 * file knows prom-client. Label values are bounded: command ids, action names, outcomes,
 * configured cluster and node names, Slack method names.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface MedicMetrics {
  /** A chat or console request answered: queued, replied, decided, refused, rate-limited, queue-unavailable. */
  request(command: string, outcome: string): void;
  /** A job finished on a worker: succeeded, failed, lease-lost, handed-over (plans), done/error (reads). */
  job(command: string, outcome: string): void;
  /** One plan step ended: done, skipped, failed. */
  step(action: string, outcome: string, seconds: number): void;
  /** From a plan's posting to its last approval. */
  approvalWait(command: string, seconds: number): void;
  /** One node's probe (SSH, tunnel, etcd status) within a cluster probe. */
  probeNode(cluster: string, node: string, reachable: boolean, seconds: number): void;
  /** The verdict of a cluster's latest probe: healthy, degraded, quorum-lost, unknown, data-lost. */
  verdict(cluster: string, verdict: string): void;
  /** A Slack Web API call that failed (error code or HTTP status). */
  slackError(method: string, error: string): void;
  /** A Slack Web API call answered 429 (retried after Retry-After). */
  slackRateLimited(method: string): void;
  /** A worker lost a cluster's lease while running a plan. */
  leaseLost(cluster: string): void;
}

/** For processes and tests nobody scrapes. */
export const noMetrics: MedicMetrics = {
  request: () => undefined, job: () => undefined, step: () => undefined, approvalWait: () => undefined,
  probeNode: () => undefined, verdict: () => undefined, slackError: () => undefined, slackRateLimited: () => undefined,
  leaseLost: () => undefined,
};

export const VERDICTS = ['healthy', 'degraded', 'quorum-lost', 'unknown', 'data-lost'] as const;

export interface MetricsOptions {
  /** Job counts by state (waiting, active, delayed, failed…), read at each scrape. */
  queueDepth?: () => Promise<Record<string, number>>;
  /** Node.js process metrics (CPU, memory, event loop lag) too. @defaultValue true */
  processMetrics?: boolean;
  /** SSH connections status probes keep open for the next probe, read at each scrape. */
  keptConnections?: () => number;
}

export interface PromMetrics extends MedicMetrics {
  registry: Registry;
  /** The exposition text of every series (what /metrics serves). */
  text(): Promise<string>;
}

export function createMetrics(o: MetricsOptions = {}): PromMetrics {
  const registry = new Registry();
  if (o.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'medic_' });
  const requests = new Counter({ name: 'medic_requests_total', help: 'Requests answered, by command and outcome', labelNames: ['command', 'outcome'], registers: [registry] });
  const jobs = new Counter({ name: 'medic_jobs_total', help: 'Jobs finished on this worker, by command and outcome', labelNames: ['command', 'outcome'], registers: [registry] });
  const steps = new Histogram({
    name: 'medic_step_duration_seconds', help: 'Duration of plan steps, by action and outcome', labelNames: ['action', 'outcome'], registers: [registry],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
  });
  const approvals = new Histogram({
    name: 'medic_approval_wait_seconds', help: 'From a plan posted to its last approval, by command', labelNames: ['command'], registers: [registry],
    buckets: [5, 15, 30, 60, 120, 300, 600, 900],
  });
  const probes = new Histogram({
    name: 'medic_probe_duration_seconds', help: 'Probe of one node (SSH, tunnel, etcd status), by cluster, node and result', labelNames: ['cluster', 'node', 'result'], registers: [registry],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20],
  });
  const verdicts = new Gauge({ name: 'medic_cluster_verdict', help: '1 for the verdict of the cluster\'s latest probe, 0 for the others', labelNames: ['cluster', 'verdict'], registers: [registry] });
  const slackErrors = new Counter({ name: 'medic_slack_api_errors_total', help: 'Slack Web API calls that failed, by method and error', labelNames: ['method', 'error'], registers: [registry] });
  const slack429 = new Counter({ name: 'medic_slack_rate_limited_total', help: 'Slack Web API calls answered 429, by method', labelNames: ['method'], registers: [registry] });
  const leases = new Counter({ name: 'medic_lease_lost_total', help: 'Cluster leases lost by this worker while running a plan', labelNames: ['cluster'], registers: [registry] });
  const queueDepth = o.queueDepth;
  if (queueDepth) {
    new Gauge({
      name: 'medic_queue_jobs', help: 'Jobs in the bot\'s queue, by state', labelNames: ['state'], registers: [registry],
      async collect() {
        // A scrape while Redis is down shows no queue series rather than failing the whole scrape.
        const counts = await queueDepth().catch(() => undefined);
        this.reset();
        for (const [state, n] of Object.entries(counts ?? {})) this.set({ state }, n);
      },
    });
  }
  const kept = o.keptConnections;
  if (kept) {
    new Gauge({
      name: 'medic_ssh_kept_connections', help: 'SSH connections status probes keep open for the next probe (MEDIC_KEEP_CONNECTIONS_MS)', registers: [registry],
      collect() { this.set(kept()); },
    });
  }
  return {
    registry,
    text: () => registry.metrics(),
    request: (command, outcome) => requests.inc({ command, outcome }),
    job: (command, outcome) => jobs.inc({ command, outcome }),
    step: (action, outcome, seconds) => steps.observe({ action, outcome }, seconds),
    approvalWait: (command, seconds) => approvals.observe({ command }, seconds),
    probeNode: (cluster, node, reachable, seconds) => probes.observe({ cluster, node, result: reachable ? 'reachable' : 'unreachable' }, seconds),
    verdict: (cluster, verdict) => { for (const v of VERDICTS) verdicts.set({ cluster, verdict: v }, v === verdict ? 1 : 0); },
    slackError: (method, error) => slackErrors.inc({ method, error }),
    slackRateLimited: (method) => slack429.inc({ method }),
    leaseLost: (cluster) => leases.inc({ cluster }),
  };
}
