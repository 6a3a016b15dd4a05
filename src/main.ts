import { loadConfig } from './config/load';
import { describeError } from './engine/errors';
import { readSettings } from './settings';
import { startMedic } from './app';
import { runConsole } from './adapters/console/console';
import { createLogger } from './log';
import { safeRedisUrl } from './queue/queue';

/**
 * Process roles: all (Slack web + worker), web, worker, console (console + embedded
 * worker; the default when no Slack credentials are set).
 */
/**
 * grpc-js (under etcd3) sets the TLS server name to the member's IP address when a member
 * is dialled by IP through a tunnel; Node warns about that once (DEP0123). It is expected
 * here, and the warning would land in the middle of the console's output (as would the AWS
 * SDK's note on Node versions).
 */
function quietExpectedWarnings(): void {
  const listeners = process.listeners('warning');
  process.removeAllListeners('warning');
  process.on('warning', (w: Error & { code?: string }) => {
    if (w.code === 'DEP0123') return;
    // The AWS SDK (offsite snapshots) announces that its releases from 2027 need Node 22; the
    // lockfile pins one that runs on Node 20, what the image ships. Not for the console's output.
    if (w.message.startsWith('NodeVersionSupportWarning')) return;
    for (const l of listeners) l(w);
  });
}

async function main(): Promise<void> {
  quietExpectedWarnings();
  // A stray rejection (a chat update after Redis blinked) must not take a worker down in
  // the middle of a repair: log it and keep going.
  process.on('unhandledRejection', (e) => { process.stderr.write(`etcd-medic: unhandled rejection: ${describeError(e)}\n`); });
  const settings = readSettings();
  const log = createLogger(settings.logLevel);
  const config = loadConfig(settings.configPath);
  const role = settings.role;
  const medic = await startMedic({
    config,
    redisUrl: settings.redisUrl,
    // The console's embedded worker has no way to post to Slack: keep it off the queue that
    // Slack requests travel on, even when it shares production's Redis.
    queueName: role === 'console' ? `${settings.queueName}-console` : settings.queueName,
    worker: role !== 'web',
    sshKey: settings.sshKey,
    // Workers post their results to Slack themselves; only web roles serve requests.
    slack: settings.slack && role !== 'console'
      ? { ...settings.slack, serve: role === 'all' || role === 'web', port: settings.port, host: settings.host }
      : undefined,
    log,
    snapshotDir: settings.snapshotDir,
    lockDurationMs: settings.workerLockMs,
    clusterLeaseMs: settings.clusterLeaseMs,
    shutdownGraceMs: settings.shutdownGraceMs,
    keepConnectionsMs: settings.keepConnectionsMs,
    requestLimit: settings.requestLimit === 0 ? false : { limit: settings.requestLimit },
    // Console plans get their own ids: their queue counts jobs separately from Slack's.
    planIdPrefix: role === 'console' ? 'c' : '',
    audit: settings.audit,
    ops: settings.ops,
    offsite: settings.offsite,
  });
  log.info({ role, clusters: config.clusters.map((c) => c.name), redis: safeRedisUrl(settings.redisUrl), metrics: medic.opsUrl }, 'etcd-medic started');

  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ why }, 'stopping');
    // Bounded: the grace for the step in flight, then the hand-over and closing connections.
    setTimeout(() => { log.warn({ why }, 'did not stop in time: exiting'); process.exit(1); }, settings.shutdownGraceMs + 15_000).unref();
    await medic.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));

  if (role === 'console' && settings.console) {
    await runConsole({
      engine: medic.engine,
      waitForReport: (id, ms, onProgress) => medic.queue.waitForReport(id, ms, onProgress),
      input: process.stdin,
      output: process.stdout,
      user: settings.console.user,
      identity: settings.console.identity,
      osLogin: settings.console.osLogin,
    });
    await stop('console closed');
  }
}

main().catch((e) => {
  process.stderr.write(`etcd-medic: ${describeError(e)}\n`);
  process.exit(1);
});
