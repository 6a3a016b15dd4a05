import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { auditOptionsFromEnv } from './audit/audit-log';
import { MedicError } from './engine/errors';
import { parseKey, type OffsiteOptions } from './snapshot/offsite';

export type Role = 'all' | 'web' | 'worker' | 'console';

/** Everything the process reads from its environment. Secrets never come from clusters.yaml. */
export interface Settings {
  configPath: string;
  role: Role;
  redisUrl: string;
  queueName: string;
  port: number;
  host: string;
  slack?: { botToken: string; signingSecret: string; apiUrl?: string; appToken?: string; socketMode: boolean };
  sshKey?: Buffer;
  /** Who types at the console (console role only). */
  console?: ConsoleIdentity;
  logLevel: string;
  /** Where the bot keeps snapshots (safety snapshots before destructive steps). */
  snapshotDir: string;
  /** BullMQ lock of a running job; equal on every worker. A killed worker's job resumes elsewhere after it. */
  workerLockMs: number;
  /** Lease of the per-cluster lock; renewed every third of it while a plan runs. */
  clusterLeaseMs: number;
  /** Requests per user per minute; 0 turns the limit off. */
  requestLimit: number;
  /** On SIGTERM, how long a running step may go on before it is aborted and the plan handed over. */
  shutdownGraceMs: number;
  /** How long a status job's SSH connections and etcd links stay open for the next one (0: closed after each). */
  keepConnectionsMs: number;
  audit: { key: string; hmacKey?: Buffer; anchorFile?: string };
  /** MEDIC_METRICS_PORT (and MEDIC_METRICS_HOST, default 0.0.0.0): /metrics, /healthz, /readyz; unset: not served. */
  ops?: { port: number; host: string };
  /** MEDIC_OFFSITE_S3_*: every snapshot also uploaded to an S3-API store and read back; unset: none. */
  offsite?: OffsiteOptions;
}

/**
 * A secret from VAR, or from the file named by VAR_FILE. Tokens are trimmed; a private key
 * (`trim: false`) is kept byte for byte.
 */
function secret(env: NodeJS.ProcessEnv, name: string, { trim = true } = {}): string | undefined {
  const direct = env[name];
  if (direct) return trim ? direct.trim() : direct;
  const file = env[`${name}_FILE`];
  if (!file) return undefined;
  try {
    const text = readFileSync(file, 'utf8');
    return trim ? text.trim() : text;
  } catch (e) {
    throw new MedicError('CONFIG_INVALID', `${name}_FILE=${file}: ${(e as Error).message}`);
  }
}

export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const botToken = secret(env, 'SLACK_BOT_TOKEN');
  const signingSecret = secret(env, 'SLACK_SIGNING_SECRET');
  const appToken = secret(env, 'SLACK_APP_TOKEN');
  const socketMode = env.SLACK_SOCKET_MODE === '1' || env.SLACK_SOCKET_MODE === 'true';
  if (socketMode && !appToken) throw new MedicError('CONFIG_INVALID', 'SLACK_SOCKET_MODE=1 needs SLACK_APP_TOKEN (xapp-…)');
  if ((signingSecret || appToken) && !botToken) {
    throw new MedicError('CONFIG_INVALID', 'Slack needs SLACK_BOT_TOKEN (xoxb-…) too; set it, or unset the Slack variables to use the console');
  }
  const slack = botToken
    ? { botToken, signingSecret: signingSecret ?? '', apiUrl: env.SLACK_API_URL || undefined, appToken, socketMode }
    : undefined;
  /** Can this process serve Slack requests (HTTP needs the signing secret, Socket Mode the app token)? */
  const canServe = !!slack && (socketMode ? !!appToken : !!signingSecret);

  const role = (env.MEDIC_ROLE || (canServe ? 'all' : 'console')) as Role;
  if (!['all', 'web', 'worker', 'console'].includes(role)) {
    throw new MedicError('CONFIG_INVALID', `MEDIC_ROLE=${role}: must be all, web, worker or console`);
  }
  if ((role === 'all' || role === 'web') && !canServe) {
    throw new MedicError('CONFIG_INVALID', `MEDIC_ROLE=${role} serves Slack: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN with SLACK_SOCKET_MODE=1), or use MEDIC_ROLE=console`);
  }
  if (env.MEDIC_QUEUE && !/^[A-Za-z0-9_-]{1,64}$/.test(env.MEDIC_QUEUE)) {
    throw new MedicError('CONFIG_INVALID', `MEDIC_QUEUE=${env.MEDIC_QUEUE}: letters, digits, "_" and "-" only (BullMQ forbids ":")`);
  }
  const port = Number(env.PORT ?? 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new MedicError('CONFIG_INVALID', `PORT=${env.PORT}: not a port number`);

  let ops: Settings['ops'];
  if (env.MEDIC_METRICS_PORT !== undefined && env.MEDIC_METRICS_PORT !== '') {
    const p = Number(env.MEDIC_METRICS_PORT);
    if (!Number.isInteger(p) || p < 0 || p > 65535) throw new MedicError('CONFIG_INVALID', `MEDIC_METRICS_PORT=${env.MEDIC_METRICS_PORT}: not a port number`);
    if (p !== 0 && p === port && (role === 'all' || role === 'web')) {
      throw new MedicError('CONFIG_INVALID', `MEDIC_METRICS_PORT=${p} is PORT, where Slack requests are served: pick another port for /metrics`);
    }
    ops = { port: p, host: env.MEDIC_METRICS_HOST || '0.0.0.0' };
  }

  const offsite = offsiteFromEnv(env);

  const key = secret(env, 'MEDIC_SSH_KEY', { trim: false });
  const sshKey = key === undefined ? undefined : Buffer.from(key);
  if (role !== 'web' && !sshKey) {
    throw new MedicError('CONFIG_INVALID', `MEDIC_ROLE=${role} runs jobs on the nodes: set MEDIC_SSH_KEY_FILE to the bot's SSH private key`);
  }
  return {
    configPath: env.MEDIC_CONFIG || '/etc/etcd-medic/clusters.yaml',
    role,
    redisUrl: env.REDIS_URL || 'redis://127.0.0.1:6379',
    queueName: env.MEDIC_QUEUE || 'etcd-medic',
    port,
    host: env.HOST || '0.0.0.0',
    slack,
    sshKey,
    // Only the console acts as a person; a worker in a container may have no passwd entry.
    console: role === 'console' ? consoleIdentity(env) : undefined,
    // The console shares the terminal with the logs: only warnings and errors there by default.
    logLevel: env.LOG_LEVEL || (role === 'console' ? 'warn' : 'info'),
    snapshotDir: absDir(env, 'MEDIC_SNAPSHOT_DIR', '/var/lib/etcd-medic/snapshots'),
    workerLockMs: intIn(env, 'MEDIC_WORKER_LOCK_MS', 30000, 2000, 600000),
    clusterLeaseMs: intIn(env, 'MEDIC_CLUSTER_LEASE_MS', 30000, 3000, 600000),
    shutdownGraceMs: intIn(env, 'MEDIC_SHUTDOWN_GRACE_MS', 20000, 0, 600000),
    keepConnectionsMs: intIn(env, 'MEDIC_KEEP_CONNECTIONS_MS', 60000, 0, 3600000),
    requestLimit: intIn(env, 'MEDIC_REQUEST_LIMIT', 20, 0, 100000),
    audit: auditOptionsFromEnv(env),
    ops,
    offsite,
  };
}

/**
 * The offsite store from MEDIC_OFFSITE_S3_BUCKET (and _ENDPOINT, _REGION, _PREFIX,
 * _PATH_STYLE), with MEDIC_OFFSITE_KEY_FILE for encryption at rest. Credentials come from
 * the AWS SDK's own chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_SHARED_CREDENTIALS_FILE,
 * instance roles), never from clusters.yaml.
 */
export function offsiteFromEnv(env: NodeJS.ProcessEnv): OffsiteOptions | undefined {
  const bucket = env.MEDIC_OFFSITE_S3_BUCKET;
  const named = Object.keys(env).filter((k) => k.startsWith('MEDIC_OFFSITE_') && env[k]);
  if (!bucket) {
    if (named.length) throw new MedicError('CONFIG_INVALID', `${named.join(', ')} set without MEDIC_OFFSITE_S3_BUCKET: name the bucket, or unset them`);
    return undefined;
  }
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new MedicError('CONFIG_INVALID', `MEDIC_OFFSITE_S3_BUCKET=${bucket}: not an S3 bucket name (3-63 of a-z, 0-9, ".", "-")`);
  const endpoint = env.MEDIC_OFFSITE_S3_ENDPOINT || undefined;
  if (endpoint && !/^https?:\/\/[^\s/]+(\/.*)?$/.test(endpoint)) throw new MedicError('CONFIG_INVALID', `MEDIC_OFFSITE_S3_ENDPOINT=${endpoint}: an http(s) URL, e.g. https://minio.example.com:9000`);
  const prefix = env.MEDIC_OFFSITE_S3_PREFIX || 'etcd-medic';
  if (!/^[A-Za-z0-9._/-]{1,200}$/.test(prefix)) throw new MedicError('CONFIG_INVALID', `MEDIC_OFFSITE_S3_PREFIX=${prefix}: letters, digits, ".", "_", "-" and "/" only`);
  const pathStyle = env.MEDIC_OFFSITE_S3_PATH_STYLE;
  let key: Buffer | undefined;
  if (env.MEDIC_OFFSITE_KEY_FILE) {
    let data: Buffer;
    try {
      data = readFileSync(env.MEDIC_OFFSITE_KEY_FILE);
    } catch (e) {
      throw new MedicError('CONFIG_INVALID', `MEDIC_OFFSITE_KEY_FILE=${env.MEDIC_OFFSITE_KEY_FILE}: ${(e as Error).message}`);
    }
    key = parseKey(data, env.MEDIC_OFFSITE_KEY_FILE);
  }
  return {
    bucket, endpoint, prefix, key,
    region: env.MEDIC_OFFSITE_S3_REGION || 'us-east-1',
    forcePathStyle: pathStyle === undefined || pathStyle === '' ? undefined : pathStyle === '1' || pathStyle === 'true',
  };
}

/** Who types at the console, and how the bot knows it. */
export interface ConsoleIdentity {
  /** "console:<name>", matched by access rules. */
  user: string;
  /**
   * os: the OS login running the process. override: MEDIC_CONSOLE_USER under MEDIC_DRILL=1,
   * for tests and drills; recorded as such in every request's origin.
   */
  identity: 'os' | 'override';
  /** The OS login, also under an override. */
  osLogin: string;
}

const CONSOLE_NAME = /^[a-z0-9._-]{1,32}$/;

/**
 * The console identity is the OS login (console:<login>): whoever can type at the console
 * already holds that account, and access rules name console users as approvers, so a
 * name anyone can set in the environment would let one person approve their own plan.
 * MEDIC_CONSOLE_USER may claim another name only with MEDIC_DRILL=1, and it says so.
 */
export function consoleIdentity(env: NodeJS.ProcessEnv, osUser: () => { username: string } = userInfo): ConsoleIdentity {
  let login: string;
  try {
    login = osUser().username;
  } catch (e) {
    throw new MedicError('CONFIG_INVALID', `cannot tell which OS user runs the console (${(e as Error).message}): the console identity is the OS login; run it as a user with a passwd entry`);
  }
  // Names are compared as they are: lowercasing or dropping characters could make two logins one identity.
  if (!CONSOLE_NAME.test(login)) {
    throw new MedicError('CONFIG_INVALID', `OS login ${JSON.stringify(login)} can't be a console identity: console:<name> takes 1-32 lowercase letters, digits, ".", "_" or "-"; run the console as a user whose login fits`);
  }
  const os = `console:${login}`;
  const drill = env.MEDIC_DRILL;
  if (drill !== undefined && drill !== '' && drill !== '1') {
    throw new MedicError('CONFIG_INVALID', `MEDIC_DRILL=${drill}: 1 (tests and drills) or unset`);
  }
  const v = env.MEDIC_CONSOLE_USER;
  if (!v) return { user: os, identity: 'os', osLogin: login };
  const named = v.startsWith('console:') ? v : `console:${v}`;
  if (!CONSOLE_NAME.test(named.slice('console:'.length))) {
    throw new MedicError('CONFIG_INVALID', `MEDIC_CONSOLE_USER=${v}: "console:<name>" with a name of lowercase letters, digits, ".", "_" or "-"`);
  }
  if (named === os) return { user: os, identity: 'os', osLogin: login };
  if (drill !== '1') {
    throw new MedicError('CONFIG_INVALID', `MEDIC_CONSOLE_USER=${v}: the console acts as your OS login (${os}); another identity is for tests and drills only, since access rules trust console names: set MEDIC_DRILL=1 as well (the override is then shown and recorded as one), or unset MEDIC_CONSOLE_USER`);
  }
  return { user: named, identity: 'override', osLogin: login };
}

function absDir(env: NodeJS.ProcessEnv, name: string, def: string): string {
  const v = env[name] || def;
  if (!/^\/[A-Za-z0-9._/-]*$/.test(v)) throw new MedicError('CONFIG_INVALID', `${name}=${v}: an absolute path of letters, digits, ".", "_", "-" and "/"`);
  return v;
}

function intIn(env: NodeJS.ProcessEnv, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new MedicError('CONFIG_INVALID', `${name}=${raw}: a whole number from ${min} to ${max}`);
  return n;
}
