/**
 * `/etcd status`: ask every configured member, in parallel, what it sees.
 * Each node gets cluster.statusTimeoutMs: a dead node shows up as unreachable after it
 * and never holds back the others' answers.
 */
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { ClusterConfig, NodeConfig } from '../config/schema';
import { describeError, isMedicError, MedicError } from '../engine/errors';
import { createEtcdMemberClient, EtcdMemberClient, EtcdTls } from './etcd-client';
import { SshPool, SshSession, SshTarget, SshTunnel } from './ssh';
import { ClusterSnapshot, NodeProbe } from './types';

export interface ProbeDeps {
  /** The job's pool; the probe reuses its sessions and leaves them open. */
  ssh: SshPool;
  /** Reads the bot's own TLS files (etcd.auth.mode client-cert). @defaultValue fs.promises.readFile */
  secrets?: { readFile(path: string): Promise<Buffer> };
  /** @defaultValue () => new Date() */
  now?: () => Date;
  /** Told how long each node's probe took and whether the node answered (metrics). */
  onNode?: (node: string, reachable: boolean, ms: number) => void;
}

/** Bound on one TLS file read from a node (certificates and keys are a few KiB). */
const MAX_TLS_FILE = 64 * 1024;

export function sshTargetFor(cluster: ClusterConfig, node: NodeConfig): SshTarget {
  return {
    node: node.name,
    host: node.ssh.host,
    port: node.ssh.port,
    user: node.ssh.user ?? cluster.ssh.user,
    hostKey: node.ssh.hostKey,
    connectTimeoutMs: cluster.ssh.connectTimeoutMs,
    commandTimeoutMs: cluster.ssh.commandTimeoutMs,
  };
}

/**
 * The client certificate for a cluster's members: the bot's own files (etcd.auth client-cert,
 * read once), or kubeadm's healthcheck-client certificate read from the node's PKI dir —
 * read-only in etcd's RBAC and present on every control-plane node.
 */
export function createTlsSource(cluster: ClusterConfig, readLocal: (path: string) => Promise<Buffer> = (p) => readFile(p)) {
  let localTls: Promise<EtcdTls> | undefined;
  return async (session: SshSession): Promise<EtcdTls> => {
    const auth = cluster.etcd.auth;
    if (auth.mode === 'client-cert') {
      localTls ??= Promise.all([readLocal(auth.ca), readLocal(auth.cert), readLocal(auth.key)]).then(([ca, cert, key]) => ({ ca, cert, key }));
      return localTls;
    }
    const pki = cluster.paths.pki;
    const [ca, cert, key] = await Promise.all(
      ['ca.crt', 'healthcheck-client.crt', 'healthcheck-client.key'].map((f) => session.readFile(`${pki}/${f}`, { maxBytes: MAX_TLS_FILE })),
    );
    return { ca, cert, key };
  };
}

/** An etcd client for `node`'s member through a tunnel dialled from the node itself. */
export function memberClientThrough(cluster: ClusterConfig, node: NodeConfig, tunnel: SshTunnel, tls: EtcdTls | undefined): EtcdMemberClient {
  const url = new URL(node.clientUrl);
  return createEtcdMemberClient({
    endpoint: `${url.protocol === 'https:' ? 'https' : 'http'}://127.0.0.1:${tunnel.localPort}`,
    tls,
    servername: url.hostname,
    deadlineMs: cluster.etcd.callTimeoutMs,
    label: node.name,
  });
}

export async function probeCluster(cluster: ClusterConfig, deps: ProbeDeps): Promise<ClusterSnapshot> {
  const collectedAt = (deps.now?.() ?? new Date()).toISOString();
  const tlsFor = createTlsSource(cluster, deps.secrets?.readFile);
  const probes = await Promise.all(cluster.nodes.map(async (node) => {
    const started = Date.now();
    const p = await probeNode(cluster, node, deps.ssh, tlsFor);
    deps.onNode?.(node.name, p.reachable, Date.now() - started);
    return p;
  }));
  return { cluster: cluster.name, collectedAt, probes };
}

/** Closes what a node probe opened, including what arrives after its deadline. */
class Scope {
  private closers: (() => unknown)[] = [];
  private closed = false;
  add<T>(resource: T, close: (r: T) => unknown): T {
    if (this.closed) {
      void Promise.resolve().then(() => close(resource)).catch(() => undefined);
      throw new MedicError('TIMEOUT', 'probe already timed out');
    }
    this.closers.push(() => close(resource));
    return resource;
  }
  async close(): Promise<void> {
    this.closed = true;
    const cs = this.closers.reverse();
    this.closers = [];
    await Promise.all(cs.map((c) => Promise.resolve().then(c).catch(() => undefined)));
  }
}

async function probeNode(
  cluster: ClusterConfig, node: NodeConfig, ssh: SshPool, tlsFor: (s: SshSession) => Promise<EtcdTls>,
): Promise<NodeProbe> {
  const base = { node: node.name, clientUrl: node.clientUrl };
  const scope = new Scope();
  let stage = 'connecting over ssh';
  let stopped = false;
  const work = (async (): Promise<NodeProbe> => {
    const session = await connectRetrying(cluster, node, ssh, (s) => { stage = s; }, () => stopped);
    stage = 'reading TLS material';
    const url = new URL(node.clientUrl);
    const tls = url.protocol === 'https:' ? await tlsFor(session) : undefined;
    stage = 'opening the tunnel';
    // Dialled from the node, so a member bound to the node's own address is reachable.
    const tunnel = scope.add(await session.openTunnel(url.hostname, Number(url.port)), (t) => t.close());
    stage = 'asking etcd';
    const etcd = scope.add(memberClientThrough(cluster, node, tunnel, tls), (c) => c.close());
    const [probe, quota, versions] = await Promise.all([
      askMember(etcd, tunnel, base),
      backendQuota(node, tunnel, tls, cluster.etcd.callTimeoutMs),
      memberVersions(node, tunnel, tls, cluster.etcd.callTimeoutMs),
    ]);
    if (probe.status && quota) probe.status.quotaBytes = quota;
    if (probe.status && versions?.cluster) probe.status.clusterVersion = versions.cluster;
    if (probe.status && versions?.storage) probe.status.storageVersion = versions.storage;
    return probe;
  })();

  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<NodeProbe>((resolve) => {
    timer = setTimeout(() => resolve({
      ...base, reachable: false, errorCode: 'TIMEOUT',
      unreachableReason: `${node.name}: no answer within ${cluster.statusTimeoutMs} ms (while ${stage})`,
    }), cluster.statusTimeoutMs);
  });
  try {
    return await Promise.race([work.catch((e: unknown) => unreachable(base, e)), deadline]);
  } finally {
    stopped = true;
    clearTimeout(timer);
    await scope.close();
  }
}

/** Waits between connection attempts: 200, 400, 800 ms, then 1 s. */
const retryDelay = (attempt: number) => Math.min(1000, 200 * 2 ** (attempt - 1));

/**
 * An SSH session to the node, tried again while the node refuses or drops the connection
 * (sshd restarting, a node coming back), for up to ssh.connectRetryMs: a node whose SSH is up
 * a second late is not reported unreachable. A changed host key or a refused login is final.
 * The error says how long it was tried.
 */
async function connectRetrying(
  cluster: ClusterConfig, node: NodeConfig, ssh: SshPool, stage: (s: string) => void, stopped: () => boolean,
): Promise<SshSession> {
  const started = Date.now();
  const budget = Math.min(cluster.ssh.connectRetryMs, cluster.statusTimeoutMs);
  for (let attempt = 1; ; attempt++) {
    try {
      return await ssh.session(sshTargetFor(cluster, node));
    } catch (e) {
      const elapsed = Date.now() - started;
      const delay = retryDelay(attempt);
      const transient = isMedicError(e) && e.code === 'SSH_UNREACHABLE';
      if (!transient || stopped() || elapsed + delay > budget) {
        if (transient && attempt > 1) throw new MedicError(e.code, `${e.message} (${attempt} tries in ${(elapsed / 1000).toFixed(1)} s)`, true, { cause: e });
        throw e;
      }
      stage(`connecting over ssh, try ${attempt + 1}: the last said ${describeError(e)}`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/**
 * The member's backend quota (--quota-backend-bytes; etcd's default 2 GiB when unset), read
 * from its own /metrics (`etcd_server_quota_backend_bytes`) through the same tunnel and
 * certificate: runtime-agnostic, no manifest parsing. Undefined when it does not say.
 */
async function backendQuota(node: NodeConfig, tunnel: SshTunnel, tls: EtcdTls | undefined, timeoutMs: number): Promise<number | undefined> {
  const body = await memberGet(node, tunnel, tls, '/metrics', timeoutMs);
  const m = body ? /^etcd_server_quota_backend_bytes\s+([0-9.e+]+)\s*$/m.exec(body) : null;
  const n = m ? Number(m[1]) : NaN;
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/**
 * The member's /version: `{"etcdserver":"3.5.30","etcdcluster":"3.5.0"}`, and from etcd 3.6 on
 * `"storage":"3.6.0"` (the storage version its data is at; the gRPC status reply carries it too,
 * in a field the etcd3 client's proto does not know). Undefined when it does not answer.
 */
async function memberVersions(node: NodeConfig, tunnel: SshTunnel, tls: EtcdTls | undefined, timeoutMs: number): Promise<{ cluster?: string; storage?: string } | undefined> {
  const body = await memberGet(node, tunnel, tls, '/version', timeoutMs);
  if (!body) return undefined;
  try {
    const v = JSON.parse(body) as Record<string, unknown>;
    const str = (x: unknown) => (typeof x === 'string' && /^\d+\.\d+\.\d+$/.test(x) ? x : undefined);
    return { cluster: str(v.etcdcluster), storage: str(v.storage) };
  } catch {
    return undefined;
  }
}

/** GET `path` of the member's client URL through the tunnel (at most 4 MiB); undefined on any failure. */
function memberGet(node: NodeConfig, tunnel: SshTunnel, tls: EtcdTls | undefined, path: string, timeoutMs: number): Promise<string | undefined> {
  const url = new URL(node.clientUrl);
  return new Promise((resolve) => {
    const opts = { host: '127.0.0.1', port: tunnel.localPort, path, timeout: timeoutMs, servername: url.hostname, ...(tls ? { ca: tls.ca, cert: tls.cert, key: tls.key } : {}) };
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(opts, (res) => {
      if (res.statusCode !== 200) { res.resume(); resolve(undefined); return; }
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { if (body.length < 4 << 20) body += d; });
      res.on('end', () => resolve(body));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/** Partial answers are kept: under quorum loss status and member list work, health does not. */
async function askMember(etcd: EtcdMemberClient, tunnel: SshTunnel, base: { node: string; clientUrl: string }): Promise<NodeProbe> {
  const [status, health, members, alarms] = await Promise.allSettled([etcd.status(), etcd.health(), etcd.memberList(), etcd.alarms()]);
  const probe: NodeProbe = {
    ...base,
    reachable: status.status === 'fulfilled',
    status: status.status === 'fulfilled' ? status.value : undefined,
    health: health.status === 'fulfilled' ? health.value : undefined,
    members: members.status === 'fulfilled' ? members.value : undefined,
    alarms: alarms.status === 'fulfilled' ? alarms.value : undefined,
  };
  if (status.status === 'rejected') {
    const u = unreachable(base, status.reason);
    // "Connection refused" on the node's side says more than gRPC's "unavailable".
    const why = tunnel.lastError();
    probe.errorCode = u.errorCode;
    probe.unreachableReason = why ? `${u.unreachableReason} (${why})` : u.unreachableReason;
  }
  return probe;
}

function unreachable(base: { node: string; clientUrl: string }, e: unknown): NodeProbe {
  return {
    ...base,
    reachable: false,
    errorCode: isMedicError(e) ? e.code : 'INTERNAL',
    unreachableReason: describeError(e),
  };
}
