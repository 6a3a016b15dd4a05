/**
 * `/etcd status`: ask every configured member, in parallel, what it sees.
 * Each node gets cluster.statusTimeoutMs: a dead node shows up as unreachable after it
 * and never holds back the others' answers.
 */
import { readFile } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
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
  /**
   * Tunnels and etcd clients kept from one probe to the next (a worker's status jobs).
   * Without it each probe opens its own and closes them at its end.
   */
  links?: MemberLinks;
}

/** What a probe needs to ask one member: the tunnel through its node, a client and TLS on it. */
interface MemberLink {
  session: SshSession;
  tunnel: SshTunnel;
  client: EtcdMemberClient;
  tls?: EtcdTls;
  /** Keeps the HTTPS connection of /metrics and /version open between probes. */
  agent: HttpAgent;
  born: number;
  lastUsed: number;
  closed?: boolean;
  /** The member's backend quota and when it was read: /metrics is 150 KiB, the quota changes only with a restart. */
  quota?: { bytes: number | undefined; at: number };
}

/** How long a link reuses the quota it read from the member's /metrics. */
const QUOTA_TTL_MS = 60_000;

function closeLink(l: MemberLink): void {
  if (l.closed) return;
  l.closed = true;
  l.client.close();
  l.agent.destroy();
  void l.tunnel.close().catch(() => undefined);
}

export interface MemberLinksOptions {
  /** A link unused this long is closed. @defaultValue 60 s */
  idleMs?: number;
  /** A link is opened anew after this long (certificates read from the node again). @defaultValue 5 min */
  maxAgeMs?: number;
}

/**
 * Kept member links, one per cluster node. Only a link whose last probe was answered in full
 * is kept: after any failure the next probe dials afresh (a gRPC channel that saw its member
 * go away backs off for seconds before it tries again).
 */
export class MemberLinks {
  private readonly links = new Map<string, MemberLink>();
  private sweeper?: NodeJS.Timeout;
  private readonly idleMs: number;
  private readonly maxAgeMs: number;
  constructor(o: MemberLinksOptions = {}) {
    this.idleMs = o.idleMs ?? 60_000;
    this.maxAgeMs = o.maxAgeMs ?? 300_000;
  }
  /** A kept link still worth using, marked used. */
  take(key: string): MemberLink | undefined {
    const l = this.links.get(key);
    if (!l) return undefined;
    if (!l.session.isOpen() || Date.now() - l.born > this.maxAgeMs) { this.drop(key, l); return undefined; }
    l.lastUsed = Date.now();
    return l;
  }
  keep(key: string, l: MemberLink): void {
    const old = this.links.get(key);
    if (old === l) return;
    if (old) closeLink(old);
    this.links.set(key, l);
    if (!this.sweeper) {
      this.sweeper = setInterval(() => {
        for (const [k, x] of this.links) if (Date.now() - x.lastUsed >= this.idleMs) this.drop(k, x);
      }, Math.max(50, Math.min(5000, this.idleMs / 2)));
      this.sweeper.unref();
    }
  }
  /** Closes the link, when it is still the one kept under key (a newer one stays). */
  drop(key: string, l: MemberLink): void {
    if (this.links.get(key) === l) this.links.delete(key);
    closeLink(l);
    if (!this.links.size && this.sweeper) { clearInterval(this.sweeper); this.sweeper = undefined; }
  }
  size(): number { return this.links.size; }
  closeAll(): void {
    for (const [k, l] of [...this.links]) this.drop(k, l);
  }
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
    const p = await probeNode(cluster, node, deps.ssh, tlsFor, deps.links);
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
  cluster: ClusterConfig, node: NodeConfig, ssh: SshPool, tlsFor: (s: SshSession) => Promise<EtcdTls>, links?: MemberLinks,
): Promise<NodeProbe> {
  const base = { node: node.name, clientUrl: node.clientUrl };
  const scope = new Scope();
  let stage = 'connecting over ssh';
  let stopped = false;
  const target = sshTargetFor(cluster, node);
  const key = `${cluster.name}/${node.name}/${node.clientUrl}/${target.user}@${target.host}:${target.port}/${target.hostKey}`;
  let inUse: MemberLink | undefined;

  const open = async (): Promise<MemberLink> => {
    stage = 'connecting over ssh';
    const session = await connectRetrying(cluster, node, ssh, (s) => { stage = s; }, () => stopped);
    stage = 'reading TLS material';
    const url = new URL(node.clientUrl);
    const tls = url.protocol === 'https:' ? await tlsFor(session) : undefined;
    stage = 'opening the tunnel';
    // Dialled from the node, so a member bound to the node's own address is reachable.
    const tunnel = await session.openTunnel(url.hostname, Number(url.port));
    const client = memberClientThrough(cluster, node, tunnel, tls);
    const agent = url.protocol === 'https:' ? new HttpsAgent({ keepAlive: true, maxSockets: 2 }) : new HttpAgent({ keepAlive: true, maxSockets: 2 });
    const link: MemberLink = { session, tunnel, client, tls, agent, born: Date.now(), lastUsed: Date.now() };
    // Not kept: closed with the probe, also when it arrives after the deadline.
    if (!links) scope.add(link, closeLink);
    return link;
  };
  const ask = async (link: MemberLink) => {
    inUse = link;
    stage = 'asking etcd';
    const [probe, quota, versions] = await Promise.all([
      askMember(link.client, link.tunnel, base),
      backendQuota(node, link, cluster.etcd.callTimeoutMs),
      memberVersions(node, link, cluster.etcd.callTimeoutMs),
    ]);
    if (probe.status && quota) probe.status.quotaBytes = quota;
    if (probe.status && versions?.cluster) probe.status.clusterVersion = versions.cluster;
    if (probe.status && versions?.storage) probe.status.storageVersion = versions.storage;
    return probe;
  };
  // Kept only when every question got an answer: whatever failed, the next probe dials afresh.
  const answeredInFull = (p: NodeProbe, l: MemberLink) => p.reachable && !!p.health && !!p.members && !!p.alarms && !l.tunnel.lastError();

  const work = (async (): Promise<NodeProbe> => {
    let kept = links?.take(key);
    // The pool checks a connection that sat unused; one it replaced is not this link's any more.
    if (kept && await ssh.session(target).catch(() => undefined) !== kept.session) {
      links!.drop(key, kept);
      kept = undefined;
    }
    if (kept) {
      const probe = await ask(kept).catch((e: unknown) => unreachable(base, e));
      if (answeredInFull(probe, kept)) return probe;
      // A kept link that stopped answering may only be stale (the member restarted, the
      // connection was cut): the answer comes from a fresh one.
      links!.drop(key, kept);
      if (stopped) return probe;
    }
    const link = await open();
    if (stopped) { closeLink(link); throw new MedicError('TIMEOUT', 'probe already timed out'); }
    const probe = await ask(link);
    if (links) {
      if (!stopped && answeredInFull(probe, link)) links.keep(key, link); else closeLink(link);
    }
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
    const p = await Promise.race([work.catch((e: unknown) => unreachable(base, e)), deadline]);
    // Timed out on a link: it is not trusted again.
    if (p.errorCode === 'TIMEOUT' && links && inUse) links.drop(key, inUse);
    return p;
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
 * certificate: runtime-agnostic, no manifest parsing. Undefined when it does not say. A kept
 * link reads it at most once a minute (the quota changes only with a restart).
 */
async function backendQuota(node: NodeConfig, link: MemberLink, timeoutMs: number): Promise<number | undefined> {
  if (link.quota?.bytes && Date.now() - link.quota.at < QUOTA_TTL_MS) return link.quota.bytes;
  const body = await memberGet(node, link, '/metrics', timeoutMs);
  const m = body ? /^etcd_server_quota_backend_bytes\s+([0-9.e+]+)\s*$/m.exec(body) : null;
  const n = m ? Number(m[1]) : NaN;
  const bytes = Number.isFinite(n) && n > 0 ? n : undefined;
  link.quota = { bytes, at: Date.now() };
  return bytes;
}

/**
 * The member's /version: `{"etcdserver":"3.5.30","etcdcluster":"3.5.0"}`, and from etcd 3.6 on
 * `"storage":"3.6.0"` (the storage version its data is at; the gRPC status reply carries it too,
 * in a field the etcd3 client's proto does not know). Undefined when it does not answer.
 */
async function memberVersions(node: NodeConfig, link: MemberLink, timeoutMs: number): Promise<{ cluster?: string; storage?: string } | undefined> {
  const body = await memberGet(node, link, '/version', timeoutMs);
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
function memberGet(node: NodeConfig, link: MemberLink, path: string, timeoutMs: number): Promise<string | undefined> {
  const url = new URL(node.clientUrl);
  const { tunnel, tls, agent } = link;
  return new Promise((resolve) => {
    const opts = { host: '127.0.0.1', port: tunnel.localPort, path, timeout: timeoutMs, servername: url.hostname, agent, ...(tls ? { ca: tls.ca, cert: tls.cert, key: tls.key } : {}) };
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

/**
 * How long the answers that need a leader are still waited for once the member said it sees
 * none: long enough for an election to end (etcd's default election timeout is 1 s).
 */
export const NO_LEADER_GRACE_MS = 1200;

/**
 * Partial answers are kept: under quorum loss status (and on 3.4 the member list) work,
 * health does not. A member whose status says it sees no leader can't answer what needs one
 * (health, alarms, the 3.5 member list): after NO_LEADER_GRACE_MS those stop being waited
 * for (they would wait out the call deadline) and say why.
 */
async function askMember(etcd: EtcdMemberClient, tunnel: SshTunnel, base: { node: string; clientUrl: string }): Promise<NodeProbe> {
  const start = Date.now();
  const statusP = etcd.status();
  const never = new Promise<never>(() => undefined);
  const noLeader = statusP.then((s) => (s.leader !== '0' ? never : new Promise<string>((resolve) => {
    setTimeout(() => resolve(`no leader (raft term ${s.raftTerm}): it can't serve reads or writes`), NO_LEADER_GRACE_MS).unref();
  })), () => never);
  const needsLeader = <T>(p: Promise<T>, instead: (why: string) => T) => Promise.race([p, noLeader.then(instead)]);
  const unavailable = (why: string): never => { throw new MedicError('ETCD_UNAVAILABLE', why, true); };
  const [status, health, members, alarms] = await Promise.allSettled([
    statusP,
    needsLeader(etcd.health(), (why) => ({ healthy: false, latencyMs: Date.now() - start, error: why })),
    needsLeader(etcd.memberList(), unavailable),
    needsLeader(etcd.alarms(), unavailable),
  ]);
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
