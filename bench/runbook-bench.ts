/**
 * npm run bench:runbooks — not part of the tests. On the lab, in one run, each runbook two
 * ways, side by side:
 *  1. scripted by hand: the seed's commands, as an expert would script them — host-side
 *     etcdctl/etcdutl, and ssh to the nodes (one multiplexed connection per node, the
 *     fastest an expert gets): no checks, no approvals, no safety snapshot, one step after
 *     another;
 *  2. the bot: the signed slash command → the last approval click → "done" in the thread,
 *     with its per-step times;
 * and the ratio bot / by hand, with the time etcd itself made each wait shown apart.
 * Runbooks (BENCH_ONLY, comma-separated; default all): replace, restore-all,
 * restore-single, force-new-cluster. BENCH_RUNS rounds each (default 1). BENCH_CLUSTER: lab
 * (etcd reached with the node's healthcheck-client certificate, the default) or lab-botcert
 * (the bot's own client certificate): the two etcd auth modes. Starts its own
 * Redis on a private port; brings the lab up and leaves it up.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createEtcdMemberClient } from '../src/exec/etcd-client';
import { saveSnapshot } from '../src/snapshot/save';
import { createSnapshotStore, SnapshotRecord } from '../src/snapshot/store';
import { Harness, startHarness, TEST_SNAPSHOT_DIR } from '../test/support/harness';
import { startRedis } from '../test/support/redis';
import {
  endpointHealth, hostEtcdctl, hostEtcdctlRaw, LAB_BOT_CERT, LAB_BOT_KEY, LAB_KNOWN_HOSTS, LAB_NODES, LAB_SSH_PORT,
  labNode, labSh, labUp, memberIdsByName, memberList, run, useLabTools, waitLabHealthy,
} from '../test/support/lab';
import { click, threadOf, threadText, waitPlanMessage } from '../test/support/plans';

const REDIS_PORT = Number(process.env.BENCH_REDIS_PORT ?? 6397);
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 1));
const ALL = ['replace', 'restore-all', 'restore-single', 'force-new-cluster'] as const;
type Runbook = typeof ALL[number];
const ONLY = (process.env.BENCH_ONLY ?? ALL.join(',')).split(',').map((s) => s.trim()).filter(Boolean) as Runbook[];
const CLUSTER = process.env.BENCH_CLUSTER ?? 'lab';
const MANIFEST = '/etc/kubernetes/manifests/etcd.yaml';
const PARKED = '/etc/kubernetes/etcd.yaml.hand';
const WORK = '/tmp/etcd-medic-bench-hand';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 120_000, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(everyMs);
  }
}

/** What one run measured: its time, and of it the time etcd made it wait. */
interface Measured { ms: number; refusedMs: number; upMs: number; steps?: string[] }

// ---- by hand ----------------------------------------------------------------------------

/** Time the hand-run spent on etcd: attempts it refused and that were retried, and waits for members to come up. */
const handWait = { refusedMs: 0, upMs: 0 };

const sshOpts = (node: string) => [
  '-i', LAB_BOT_KEY, '-p', String(LAB_SSH_PORT), '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes',
  '-o', `UserKnownHostsFile=${LAB_KNOWN_HOSTS}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes',
  '-o', 'LogLevel=ERROR', '-o', 'ControlMaster=auto', '-o', `ControlPath=${WORK}/ssh-%C`, '-o', 'ControlPersist=yes',
  `root@${labNode(node).ip}`,
];

async function ssh(node: string, command: string): Promise<string> {
  const r = await run('ssh', [...sshOpts(node), command], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`ssh ${node} ${command}: exit ${r.code ?? r.signal}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Ends the multiplexed ssh connections (the master processes) the hand-runs opened. */
async function closeSsh(): Promise<void> {
  for (const n of LAB_NODES) await run('ssh', [...sshOpts(n.name).slice(0, -1), '-O', 'exit', `root@${n.ip}`], { timeoutMs: 10_000 }).catch(() => undefined);
}

/** `tar` of a host directory's `member` into the node's data dir, over ssh. */
function sendData(node: string, dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const quoted = [...sshOpts(node), 'tar -C /var/lib/etcd -xf -'].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
    const p = spawn('bash', ['-c', `set -o pipefail; tar -C '${dir}' -cf - member | ssh ${quoted}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => { err += String(d); });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`copying data to ${node}: exit ${code}: ${err.trim()}`))));
  });
}

/** Like until(), but the time from the first refused attempt to the accepted one counts as etcd's. */
async function untilEtcdAccepts(what: string, fn: () => Promise<boolean>): Promise<void> {
  const first = performance.now();
  let refused = false;
  await until(what, async () => {
    if (await fn()) return true;
    refused = true;
    return undefined;
  });
  if (refused) handWait.refusedMs += performance.now() - first;
}

/** Polls (every 100 ms, as a script would) until `fn` holds; the time counts as waiting for etcd to come up. */
async function untilUp(what: string, fn: () => Promise<boolean>): Promise<void> {
  const t = performance.now();
  await until(what, async () => ((await fn()) ? true : undefined));
  handWait.upMs += performance.now() - t;
}

const allHealthy = async (names = LAB_NODES.map((n) => n.name)) => {
  const h = await endpointHealth(names.map((n) => labNode(n).clientUrl));
  if (!Object.values(h).every(Boolean)) return false;
  const members = await memberList([labNode(names[0]).clientUrl]);
  return members.length === names.length && members.every((m) => m.status === 'started' && !m.isLearner);
};

const stopAndAside = (move = true) => `mv ${MANIFEST} ${PARKED} && while pgrep -x etcd >/dev/null; do sleep 0.1; done${move
  ? ' && if [ -d /var/lib/etcd/member ]; then mv /var/lib/etcd/member /var/lib/etcd/member.hand-$(date +%s%N); fi' : ''}`;

/** The manifest edits of a join (runbook §4): state existing, the --initial-cluster etcd printed. */
const joinManifest = (initialCluster: string) => `sed -i -e 's#^\\(\\s*- --initial-cluster=\\).*#\\1${initialCluster}#' -e 's#--initial-cluster-state=new#--initial-cluster-state=existing#' ${PARKED} && mv ${PARKED} ${MANIFEST}`;

/** Runbook §4 for one node: member add (a voter, as the seed does), its manifest, start, wait. */
async function joinByHand(node: string, from: string[]): Promise<void> {
  const n = labNode(node);
  let out = '';
  await untilEtcdAccepts(`member add ${node}`, async () => {
    const r = await hostEtcdctlRaw(['member', 'add', node, `--peer-urls=${n.peerUrl}`], from.map((x) => labNode(x).clientUrl));
    out = r.stdout;
    return r.code === 0;
  });
  const initial = /ETCD_INITIAL_CLUSTER="([^"]+)"/.exec(out)?.[1];
  if (!initial) throw new Error(`member add ${node} printed no ETCD_INITIAL_CLUSTER: ${out}`);
  await ssh(node, joinManifest(initial));
  await untilUp(`${node} joined`, () => allHealthy([...from, node]));
}

/** restore with the host's tool for the lab's etcd: etcdutl (3.5+) or etcdctl (3.4). */
async function restoreOnHost(snap: string, node: string, initialCluster: string, token: string): Promise<string> {
  const dir = join(WORK, `restore-${node}`);
  rmSync(dir, { recursive: true, force: true });
  const n = labNode(node);
  const args = ['snapshot', 'restore', snap, `--name=${node}`, `--initial-cluster=${initialCluster}`, `--initial-cluster-token=${token}`,
    `--initial-advertise-peer-urls=${n.peerUrl}`, `--data-dir=${dir}`];
  const utl = await run('etcdutl', ['version'], { timeoutMs: 10_000 }).catch(() => undefined);
  const r = utl?.code === 0 ? await run('etcdutl', args, { timeoutMs: 60_000 })
    : await run('etcdctl', args, { timeoutMs: 60_000, env: { ...process.env, ETCDCTL_API: '3' } });
  if (r.code !== 0) throw new Error(`snapshot restore for ${node}: ${r.stderr.trim()}`);
  return dir;
}

const byHand: Record<Runbook, (snap: string) => Promise<void>> = {
  // Runbook §3 + §4 for node3.
  async replace() {
    const id = (await memberIdsByName()).node3;
    await untilEtcdAccepts('member remove', async () => (await hostEtcdctlRaw(['member', 'remove', id], [labNode('node1').clientUrl])).code === 0);
    await ssh('node3', stopAndAside());
    await joinByHand('node3', ['node1', 'node2']);
  },
  // Runbook §6, all at once: stop everywhere, restore each node's data, start everywhere.
  async 'restore-all'(snap) {
    for (const n of LAB_NODES) await ssh(n.name, stopAndAside());
    const initial = LAB_NODES.map((n) => `${n.name}=${n.peerUrl}`).join(',');
    const token = `hand-${Date.now()}`;
    for (const n of LAB_NODES) await sendData(n.name, await restoreOnHost(snap, n.name, initial, token));
    for (const n of LAB_NODES) await ssh(n.name, `mv ${PARKED} ${MANIFEST}`);
    await untilUp('3 restored members', () => allHealthy());
  },
  // Runbook §6, single then join: node1 restored alone, then node2 and node3 as in §4.
  async 'restore-single'(snap) {
    for (const n of LAB_NODES) await ssh(n.name, stopAndAside());
    const n1 = labNode('node1');
    await sendData('node1', await restoreOnHost(snap, 'node1', `node1=${n1.peerUrl}`, `hand-${Date.now()}`));
    await ssh('node1', `mv ${PARKED} ${MANIFEST}`);
    await untilUp('node1 alone', () => allHealthy(['node1']));
    await joinByHand('node2', ['node1']);
    await joinByHand('node3', ['node1', 'node2']);
  },
  // Runbook §7: --force-new-cluster on the survivor, the flag out again, the others added back.
  async 'force-new-cluster'() {
    await ssh('node1', `${stopAndAside(false)} && sed -i 's#^\\(\\s*\\)- --name=#\\1- --force-new-cluster\\n\\1- --name=#' ${PARKED} && mv ${PARKED} ${MANIFEST}`);
    await untilUp('node1 alone', () => allHealthy(['node1']));
    await ssh('node1', `${stopAndAside(false)} && sed -i '/--force-new-cluster/d' ${PARKED} && mv ${PARKED} ${MANIFEST}`);
    await untilUp('node1 without the flag', () => allHealthy(['node1']));
    for (const n of ['node2', 'node3']) await ssh(n, `mv /etc/kubernetes/etcd.yaml.lab-stopped ${PARKED}`);
    await joinByHand('node2', ['node1']);
    await joinByHand('node3', ['node1', 'node2']);
  },
};

// ---- the bot ----------------------------------------------------------------------------

const REQUEST: Record<Runbook, (snapId: string) => string> = {
  replace: () => `replace-member ${CLUSTER} node3`,
  'restore-all': (id) => `restore ${CLUSTER} ${id} --mode all`,
  'restore-single': (id) => `restore ${CLUSTER} ${id} --mode single`,
  'force-new-cluster': () => `force-new-cluster ${CLUSTER} node1`,
};
const TITLE: Record<Runbook, RegExp> = {
  replace: new RegExp(`etcd replace-member — ${CLUSTER} `), 'restore-all': new RegExp(`etcd restore — ${CLUSTER} `),
  'restore-single': new RegExp(`etcd restore — ${CLUSTER} `), 'force-new-cluster': new RegExp(`etcd force-new-cluster — ${CLUSTER} `),
};

async function byBot(h: Harness, rb: Runbook, snapId: string): Promise<Measured> {
  const before = h.fake.messages().length;
  await h.slash(REQUEST[rb](snapId), { user: 'U0ALICE' });
  const plan = await waitPlanMessage(h, TITLE[rb], before, 120_000);
  await click(h, plan, 'approve', 'U0BOB');
  const t0 = performance.now();
  await click(h, plan, 'approve', 'U0CAROL');
  await until('bot done', async () => (/done: all \d+ steps ran/.test(threadText(h, plan.ts)) ? true : undefined), 300_000)
    .catch((e) => { throw new Error(`${(e as Error).message}; thread so far:\n${threadText(h, plan.ts)}`); });
  const ms = performance.now() - t0;
  const thread = threadText(h, plan.ts);
  const timed = [...thread.matchAll(/step (\d+)\/\d+: (\S+)(?: (node\d))? — ([\d.]+) s/g)];
  const refusedMs = [...thread.matchAll(/etcd refused it for ([\d.]+) s first/g)].reduce((n, m) => n + Number(m[1]) * 1000, 0);
  // Waiting for etcd to come up: the steps that wait for members (a learner catching up, a
  // member forming, the members of a restore or join becoming healthy) and check them.
  const upMs = timed.filter((m) => /^etcd\.wait|^(restore|cluster)\.verify$/.test(m[2])).reduce((n, m) => n + Number(m[4]) * 1000, 0);
  const steps = timed.map((m) => `  ${m[1].padStart(2)}. ${`${m[2]}${m[3] ? ` ${m[3]}` : ''}`.padEnd(30)} ${m[4]} s`);
  if (process.env.BENCH_TIMELINE) {
    // When each thread line was posted, from the click: the time between the steps.
    const clickedAt = performance.timeOrigin + t0;
    for (const m of threadOf(h, plan.ts)) console.log(`    +${((Number(m.ts) * 1000 - clickedAt) / 1000).toFixed(2)} s  ${(m.text ?? '').split('\n')[0].slice(0, 90)}`);
  }
  return { ms, refusedMs, upMs, steps };
}

// ---- the lab before each run --------------------------------------------------------------

const KEYS = 100;

async function writeKeys(): Promise<void> {
  for (let i = 0; i < KEYS; i += 20) {
    await Promise.all(Array.from({ length: 20 }, (_, k) => hostEtcdctl(['put', `/bench/${i + k}`, `v${i + k}`])));
  }
}

/** Quorum lost as in the quorum e2e: node2 and node3 stopped and their data gone; node1 alone without quorum. */
async function loseQuorum(): Promise<void> {
  for (const n of ['node2', 'node3']) {
    await labSh('stop-etcd', n);
    await labSh('exec', n, '--', 'rm', '-rf', '/var/lib/etcd/member');
  }
  await until('node1 without quorum', async () => ((await endpointHealth([labNode('node1').clientUrl]))[labNode('node1').clientUrl] === false ? true : undefined), 60_000, 250);
}

/** A healthy lab with the keys, settled (etcd refuses membership changes for 5 s after a join). */
async function ready(rb: Runbook): Promise<void> {
  await waitLabHealthy(120_000);
  await sleep(6000);
  if (rb === 'force-new-cluster') await loseQuorum();
}

async function takeSnapshot(): Promise<SnapshotRecord> {
  const store = createSnapshotStore({ dir: TEST_SNAPSHOT_DIR });
  const client = createEtcdMemberClient({
    endpoint: labNode('node1').clientUrl, deadlineMs: 10_000, label: 'node1',
    tls: { ca: readFileSync(LAB_BOT_CERT.ca), cert: readFileSync(LAB_BOT_CERT.cert), key: readFileSync(LAB_BOT_CERT.key) },
  });
  try {
    return await saveSnapshot({ client, store, cluster: CLUSTER, node: 'node1', requester: 'U0ALICE', reason: 'runbook bench', kind: 'manual' });
  } finally {
    client.close();
  }
}

const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

async function main(): Promise<void> {
  await labUp();
  await useLabTools();
  await waitLabHealthy();
  mkdirSync(WORK, { recursive: true });
  const redis = await startRedis(REDIS_PORT);
  const h = await startHarness({
    redisUrl: redis.url,
    mutateConfig: (c) => {
      const lab = c.clusters.find((x) => x.name === CLUSTER)!;
      lab.access.destructive.approvers = ['U0BOB', 'U0CAROL'];
      lab.access.destructive.approvals = 2;
    },
  });
  const version = (await labSh('version')).trim();
  const key = (await run('openssl', ['x509', '-noout', '-text', '-in', LAB_BOT_CERT.ca])).stdout.match(/Public Key Algorithm: (\S+)/)?.[1] ?? '?';
  console.log(`lab (cluster ${CLUSTER}): etcd ${version}, layout ${(await labSh('layout')).trim()}, certificates ${key}; ${RUNS} run(s) each, the median shown`);
  try {
    await writeKeys();
    const snap = await takeSnapshot();
    const snapFile = createSnapshotStore({ dir: TEST_SNAPSHOT_DIR }).path(snap);
    for (const rb of ONLY) {
      const hands: Measured[] = [];
      const bots: Measured[] = [];
      for (let r = 0; r < RUNS; r++) {
        await ready(rb);
        handWait.refusedMs = 0;
        handWait.upMs = 0;
        const t0 = performance.now();
        await byHand[rb](snapFile);
        hands.push({ ms: performance.now() - t0, ...handWait });
        await closeSsh();
        await ready(rb);
        bots.push(await byBot(h, rb, snap.id));
      }
      const pick = (ms: Measured[]) => ms.find((m) => m.ms === median(ms.map((x) => x.ms)))!;
      const hand = pick(hands);
      const bot = pick(bots);
      const own = (m: Measured) => m.ms - m.refusedMs - m.upMs;
      console.log(`\n${rb} (${CLUSTER}, 3 members)`);
      console.log(`  scripted by hand (etcdctl + ssh, no checks)  ${secs(hand.ms).padStart(8)}  (etcd refusing ${secs(hand.refusedMs)}, members coming up ${secs(hand.upMs)})`);
      console.log(`  etcd-medic, last approval -> done in thread  ${secs(bot.ms).padStart(8)}  (etcd refusing ${secs(bot.refusedMs)}, waiting on and checking members ${secs(bot.upMs)})`);
      console.log(`  ratio bot / by hand: ${(bot.ms / hand.ms).toFixed(2)}x; without etcd's waits ${(own(bot) / own(hand)).toFixed(2)}x (${secs(own(bot))} vs ${secs(own(hand))})`);
      if (RUNS > 1) console.log(`  all runs: by hand ${hands.map((m) => secs(m.ms)).join(', ')}; bot ${bots.map((m) => secs(m.ms)).join(', ')}`);
      console.log('  bot steps:');
      for (const s of bot.steps ?? []) console.log(s);
    }
  } finally {
    await closeSsh();
    await h.stop();
    await redis.stop();
    rmSync(WORK, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
