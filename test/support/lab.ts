import { existsSync } from 'node:fs';
/**
 * Helpers for tests that use the lab (lab/lab.sh): a real 3-node etcd 3.4 cluster shaped like
 * kubeadm's stacked etcd, each node a mount namespace with its own sshd, on $LAB_NET.11-13 (127.10.0.11-13).
 */
import { spawn } from 'node:child_process';
import IORedis from 'ioredis';
import { join, resolve } from 'node:path';

/** The checkout: two levels up from test/support, three from dist/test/support (the bench). */
export const REPO_ROOT = [resolve(__dirname, '..', '..'), resolve(__dirname, '..', '..', '..')]
  .find((d) => existsSync(join(d, 'lab', 'lab.sh'))) ?? resolve(__dirname, '..', '..');
export const LAB_SH = join(REPO_ROOT, 'lab', 'lab.sh');
export const LAB_DIR = (process.env.LAB_DIR || '/var/lib/etcd-medic-lab').replace(/\/+$/, '');
export const LAB_SSH_PORT = Number(process.env.LAB_SSH_PORT || 2222);
/** The etcd version the lab runs (lab.sh up --etcd): 3.4 (Debian's) unless LAB_ETCD says otherwise. */
export const LAB_ETCD = process.env.LAB_ETCD || '3.4';
/**
 * How the lab's cluster was formed (lab.sh up --layout): `static` (every manifest lists all three
 * members, `new`) unless LAB_LAYOUT=kubeadm (node1 bootstrapped alone, the others joined as
 * kubeadm join does: `existing`, with the members known at their join).
 */
export const LAB_LAYOUT: 'static' | 'kubeadm' = process.env.LAB_LAYOUT === 'kubeadm' ? 'kubeadm' : 'static';
/** The nodes' network: node1..3 are .11-.13 of it (lab.sh's LAB_NET). */
export const LAB_NET = process.env.LAB_NET || '127.10.0';

export interface LabNode { name: string; ip: string; clientUrl: string; peerUrl: string }
export const LAB_NODES: readonly LabNode[] = ['node1', 'node2', 'node3'].map((name, i) => {
  const ip = `${LAB_NET}.${11 + i}`;
  return { name, ip, clientUrl: `https://${ip}:2379`, peerUrl: `https://${ip}:2380` };
});
export const LAB_ENDPOINTS = LAB_NODES.map((n) => n.clientUrl);

/** The bot's SSH private key (public key: + '.pub'). */
export const LAB_BOT_KEY = join(LAB_DIR, 'bot_id_ed25519');
/** known_hosts with the nodes' host keys, as `[ip]:port ssh-ed25519 …`. */
export const LAB_KNOWN_HOSTS = join(LAB_DIR, 'known_hosts');
/** The bot-side etcd client certificate (cluster `lab-botcert`). */
export const LAB_BOT_CERT = { ca: join(LAB_DIR, 'bot', 'ca.crt'), cert: join(LAB_DIR, 'bot', 'etcd-client.crt'), key: join(LAB_DIR, 'bot', 'etcd-client.key') };

export function labConfigPath(): string {
  return join(LAB_DIR, 'clusters.yaml');
}

export function labNode(name: string): LabNode {
  const n = LAB_NODES.find((x) => x.name === name);
  if (!n) throw new Error(`no lab node ${name}`);
  return n;
}

export interface RunResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Run a command; never rejects on exit status; kills its process group at the deadline. */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
    }, timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) reject(new Error(`${cmd} ${args.join(' ')}: timed out after ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
      else resolveRun({ code, signal, stdout, stderr });
    });
    // A child that exits without reading its input must not crash us with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Default deadline of one lab.sh call (up from nothing takes ~3-10 s). */
export const LAB_SH_TIMEOUT_MS = 120_000;

/** `bash lab/lab.sh ...args`; resolves with stdout, rejects (with stderr) on failure or timeout. */
export async function labSh(...args: string[]): Promise<string> {
  const r = await run('bash', [LAB_SH, ...args], { timeoutMs: LAB_SH_TIMEOUT_MS });
  if (r.code !== 0) {
    throw new Error(`lab.sh ${args.join(' ')} failed (exit ${r.code ?? r.signal}):\n${r.stderr.trim()}\n${r.stdout.trim()}`);
  }
  // `up` made a new cluster (not "already up and healthy"): a new cluster on purpose, so the
  // bots of the test Redis forget the old one (engine/cluster-memory: otherwise they would
  // rightly report its data as lost).
  if (args[0] === 'up' && /lab up in \d+s/.test(r.stderr)) await forgetLabClusters();
  return r.stdout;
}

/** A healthy lab (keeps the current one when it is healthy). Returns the clusters.yaml path. */
export async function labUp(): Promise<string> {
  await labSh('up', '--etcd', LAB_ETCD, '--layout', LAB_LAYOUT);
  return labConfigPath();
}

/**
 * Puts the host-side etcdctl/etcdutl matching the lab's etcd first in PATH, for the tests
 * and every bot process they start (the bot's host tooling follows the cluster's version).
 */
export async function useLabTools(): Promise<string> {
  const dir = (await labSh('tools')).trim();
  if (!(process.env.PATH ?? '').split(':').includes(dir)) process.env.PATH = `${dir}:${process.env.PATH ?? ''}`;
  return dir;
}

export async function labDown(): Promise<void> {
  await labSh('down');
}

/** A fresh, healthy lab: new data, same keys (same host keys and certificates). */
export async function labFresh(): Promise<string> {
  await labDown();
  return labUp();
}

/** Deletes every bot's memory of the lab clusters in the test Redis (keys `<queue>:memory:lab*`). */
export async function forgetLabClusters(url = process.env.TEST_REDIS_URL): Promise<void> {
  if (!url) return;
  const redis = new IORedis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', '*:memory:lab*', 'COUNT', 1000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

function etcdctlArgs(args: string[], endpoints: string[]): string[] {
  return [
    `--endpoints=${endpoints.join(',')}`,
    `--cacert=${LAB_BOT_CERT.ca}`, `--cert=${LAB_BOT_CERT.cert}`, `--key=${LAB_BOT_CERT.key}`,
    '--dial-timeout=2s', '--command-timeout=5s',
    ...args,
  ];
}

/** Host-side etcdctl (the nodes have none) with the bot's client cert; never rejects on exit status. */
export function hostEtcdctlRaw(args: string[], endpoints: string[] = LAB_ENDPOINTS, timeoutMs = 20_000): Promise<RunResult> {
  return run('etcdctl', etcdctlArgs(args, endpoints), { timeoutMs, env: { ...process.env, ETCDCTL_API: '3' } });
}

/** Host-side etcdctl against all lab endpoints; resolves with stdout, rejects on a non-zero exit. */
export async function hostEtcdctl(args: string[], endpoints: string[] = LAB_ENDPOINTS): Promise<string> {
  const r = await hostEtcdctlRaw(args, endpoints);
  if (r.code !== 0) throw new Error(`etcdctl ${args.join(' ')} failed (exit ${r.code ?? r.signal}): ${r.stderr.trim()}`);
  return r.stdout;
}

export interface LabMember { id: string; status: string; name: string; peerUrls: string[]; clientUrls: string[]; isLearner: boolean }

/**
 * `member list` parsed from `-w simple` (text: `-w json` prints uint64 ids as bare numbers that
 * JSON.parse rounds). Ids are lowercase hex without leading zeros, as etcdctl prints them.
 */
export async function memberList(endpoints: string[] = LAB_ENDPOINTS): Promise<LabMember[]> {
  const out = await hostEtcdctl(['member', 'list', '-w', 'simple'], endpoints);
  return out.split('\n').filter((l) => l.trim()).map((l) => {
    const [id, status, name, peers, clients, learner] = l.split(', ');
    return {
      id: id.trim(), status, name: name ?? '',
      peerUrls: peers ? peers.split(',') : [], clientUrls: clients ? clients.split(',') : [],
      isLearner: (learner ?? '').trim() === 'true',
    };
  });
}

/**
 * Remove every member whose peer URL is `peerUrl` (a learner a test added by hand), so a test
 * that failed before it learnt the member's id still leaves three members behind.
 */
export async function removeMembersByPeerUrl(peerUrl: string): Promise<void> {
  for (const m of await memberList()) {
    if (m.peerUrls.includes(peerUrl)) await hostEtcdctl(['member', 'remove', m.id]);
  }
}

/** Member name -> hex id (started members only: an unstarted member has no name). */
export async function memberIdsByName(endpoints: string[] = LAB_ENDPOINTS): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const m of await memberList(endpoints)) if (m.name) out[m.name] = m.id;
  return out;
}

export interface EndpointStatus { endpoint: string; node?: string; id: string; version: string; dbSize: string; isLeader: boolean; isLearner: boolean; raftTerm: number; raftIndex: number; errors: string }

/** `endpoint status -w simple` per reachable endpoint (unreachable ones are left out). */
export async function endpointStatus(endpoints: string[] = LAB_ENDPOINTS): Promise<EndpointStatus[]> {
  const r = await hostEtcdctlRaw(['endpoint', 'status', '-w', 'simple'], endpoints);
  return r.stdout.split('\n').filter((l) => l.trim()).map((l) => {
    const f = l.split(', ');
    return {
      endpoint: f[0], node: LAB_NODES.find((n) => n.clientUrl === f[0])?.name, id: f[1], version: f[2], dbSize: f[3],
      isLeader: f[4] === 'true', isLearner: f[5] === 'true', raftTerm: Number(f[6]), raftIndex: Number(f[7]),
      errors: f.slice(9).join(', ').trim(),
    };
  });
}

/** Name of the node whose member is the leader; throws when no reachable member says it leads. */
export async function leaderName(endpoints: string[] = LAB_ENDPOINTS): Promise<string> {
  const st = await endpointStatus(endpoints);
  const leader = st.find((s) => s.isLeader);
  if (!leader) throw new Error(`no leader among the reachable endpoints (${st.map((s) => s.endpoint).join(', ') || 'none reachable'})`);
  if (leader.node) return leader.node;
  const byId = Object.entries(await memberIdsByName(endpoints)).find(([, id]) => id === leader.id);
  if (!byId) throw new Error(`leader ${leader.id} at ${leader.endpoint} is not a named member`);
  return byId[0];
}

/** Endpoint -> healthy?, from `endpoint health` (etcdctl 3.4 prints the verdicts on stderr). */
export async function endpointHealth(endpoints: string[] = LAB_ENDPOINTS): Promise<Record<string, boolean>> {
  const r = await hostEtcdctlRaw(['endpoint', 'health', '--dial-timeout=1s', '--command-timeout=2s'], endpoints);
  const out: Record<string, boolean> = {};
  for (const e of endpoints) out[e] = false;
  for (const l of `${r.stdout}\n${r.stderr}`.split('\n')) {
    const m = /^(https?:\/\/\S+) is (healthy|unhealthy)/.exec(l);
    if (m) out[m[1]] = m[2] === 'healthy';
  }
  return out;
}

/** Poll `fn` until it returns a truthy value (errors count as "not yet"); throws after the deadline. */
export async function pollUntil<T>(what: string, fn: () => Promise<T> | T, timeoutMs = 30_000, intervalMs = 250): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= end) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Wait until all three lab members are started and healthy (seen from the host). */
export async function waitLabHealthy(timeoutMs = 60_000): Promise<void> {
  await pollUntil('3 healthy lab members', async () => {
    const health = await endpointHealth();
    if (!Object.values(health).every(Boolean)) return false;
    const members = await memberList();
    return members.length === LAB_NODES.length && members.every((m) => m.status === 'started' && m.name);
  }, timeoutMs, 500);
}

/**
 * Every node's data dir emptied at once (etcd stopped on all three first, then started again
 * node1 first): what the cluster then does is decided by the manifests in place, deterministically.
 * All three `new` with all three listed (lab.sh's static layout, or what a restore writes): a
 * brand-new, empty 3-member cluster ('three'). node1 `new` listing only itself (kubeadm's
 * layout): node1 bootstraps an empty 1-member cluster; node2 and node3 (`existing`) find a
 * cluster that doesn't list them ("member count is unequal") and crash-loop ('node1 alone').
 */
export async function wipeAllData(): Promise<'three' | 'node1 alone'> {
  for (const n of LAB_NODES) await labSh('stop-etcd', n.name);
  for (const n of LAB_NODES) await labSh('wipe-data', n.name);
  const node1 = [labNode('node1').clientUrl];
  const settled = await pollUntil('the wiped lab to settle (3 new members, or node1 alone)', async () => {
    if ((await endpointHealth(node1))[node1[0]] !== true) return undefined;
    const members = await memberList(node1);
    if (members.length === 1) return 'node1 alone' as const;
    if (members.length === 3 && members.every((m) => m.status === 'started') && Object.values(await endpointHealth()).every(Boolean)) return 'three' as const;
    return undefined;
  }, 90_000, 500);
  return settled!;
}

/**
 * What every lab suite starts from (issue 8, item 10): three healthy voting members, no
 * learner. Whatever an earlier suite (or a failed test) left behind is mended: `lab.sh up`
 * brings back stopped nodes and manifests; a lab that still isn't healthy is rebuilt fresh.
 */
export async function ensureLabHealthy(): Promise<void> {
  const healthy = async () => {
    const members = await memberList();
    return members.length === LAB_NODES.length && members.every((m) => m.status === 'started' && m.name && !m.isLearner)
      && Object.values(await endpointHealth()).every(Boolean);
  };
  await labSh('up', '--etcd', LAB_ETCD, '--layout', LAB_LAYOUT);
  try {
    await pollUntil('a healthy lab (3 voters, no learner)', healthy, 30_000, 500);
  } catch {
    await labFresh();
    await pollUntil('a healthy lab after a fresh start', healthy, 90_000, 500);
  }
}

/**
 * Run a command on a lab node through the real OpenSSH client, as the bot would (its key,
 * root, pinned host keys). Never rejects on the remote exit status.
 */
export function sshNode(node: string, command: string, timeoutMs = 20_000): Promise<RunResult> {
  const n = labNode(node);
  return run('ssh', [
    '-i', LAB_BOT_KEY, '-p', String(LAB_SSH_PORT),
    '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes',
    '-o', `UserKnownHostsFile=${LAB_KNOWN_HOSTS}`, '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes', '-o', 'ConnectTimeout=5', '-o', 'LogLevel=ERROR',
    `root@${n.ip}`, command,
  ], { timeoutMs });
}
