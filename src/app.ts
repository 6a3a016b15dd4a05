import { commands as allCommands } from '../commands';
import type { ClusterConfig, MedicConfig } from './config/schema';
import type { CommandDef } from './engine/command';
import { Engine } from './engine/engine';
import { createJobRunner } from './engine/runner';
import type { Notifier } from './engine/types';
import { probeCluster } from './exec/probe';
import { createSshPool } from './exec/ssh';
import { createJobQueue, JobQueue } from './queue/queue';
import { createJobWorker, JobWorker } from './queue/worker';
import { createSlackApp, createSlackWebNotifier } from './adapters/slack/app';
import type { Logger } from './log';

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
}

export interface Medic {
  engine: Engine;
  queue: JobQueue;
  worker?: JobWorker;
  /** The Slack HTTP endpoint (…/slack/events), when serving Slack over HTTP. */
  slackUrl?: string;
  stop(): Promise<void>;
}

/** One SSH pool per probe: connections are reused within the job and closed at its end. */
export function createProbe(sshKey: Buffer) {
  return async (cluster: ClusterConfig) => {
    const ssh = createSshPool({
      privateKey: sshKey,
      connectTimeoutMs: cluster.ssh.connectTimeoutMs,
      commandTimeoutMs: cluster.ssh.commandTimeoutMs,
    });
    try {
      return await probeCluster(cluster, { ssh });
    } finally {
      await ssh.closeAll();
    }
  };
}

/** Wire engine, queue, worker and adapters for the roles this process plays. */
export async function startMedic(opts: MedicOptions): Promise<Medic> {
  const commands = opts.commands ?? allCommands;
  const queue = createJobQueue({ redisUrl: opts.redisUrl, name: opts.queueName });
  const engine = new Engine({ config: opts.config, commands, queue });
  const notifiers: Partial<Record<'slack' | 'console', Notifier>> = {};
  const stops: Array<() => Promise<void>> = [];
  let slackUrl: string | undefined;

  if (opts.slack && !opts.slack.serve) {
    notifiers.slack = createSlackWebNotifier({
      botToken: opts.slack.botToken, slackApiUrl: opts.slack.apiUrl, webClientRetries: opts.slack.webClientRetries, logger: opts.log,
    });
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
    });
    notifiers.slack = slack.notifier;
    await slack.start();
    stops.push(() => slack.stop());
    slackUrl = slack.address()?.url;
    opts.log.info({ url: slackUrl, socketMode: !!opts.slack.socketMode }, 'slack adapter started');
  }

  let worker: JobWorker | undefined;
  if (opts.worker) {
    if (!opts.sshKey) throw new Error('a worker needs the SSH key');
    const runner = createJobRunner({ config: opts.config, commands, probe: createProbe(opts.sshKey) });
    worker = createJobWorker({
      redisUrl: opts.redisUrl, runner, notifiers, name: opts.queueName, lockDurationMs: opts.lockDurationMs,
      log: (msg, extra) => opts.log.warn(extra ?? {}, msg),
    });
    // Stop the worker first: it waits for running jobs, which may still post to Slack.
    stops.unshift(async () => { await worker!.close(); });
  }
  stops.push(() => queue.close());

  return {
    engine,
    queue,
    worker,
    slackUrl,
    async stop() {
      for (const s of stops) {
        try { await s(); } catch (e) { opts.log.warn({ error: String(e) }, 'error while stopping'); }
      }
    },
  };
}
