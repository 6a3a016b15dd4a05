/**
 * npm run bench — not part of the tests. On the lab, in one run, each measure beside its
 * baseline, as ratios:
 *  1. signed `/etcd status <cluster>` -> status message at the fake Slack API (end to end),
 *     warm (the worker's kept connections) and cold (MEDIC_KEEP_CONNECTIONS_MS=0), for both
 *     etcd auth modes (lab: the node's healthcheck-client cert; lab-botcert: the bot's own),
 *     beside a direct host-side `etcdctl endpoint status` over all members;
 *  2. ack latency (HTTP answer to the slash command) of the web role in its own process, as
 *     deployed (a worker process beside it draining the jobs), at 1, 50 and 200 concurrent
 *     signed requests from different users;
 *  3. `/etcd status all` over 10 and 50 clusters (named copies of the lab's members) beside
 *     the same number of direct `etcdctl endpoint status` calls, one after another and 32 at
 *     a time.
 * The lab's key type (LAB_KEY at `lab.sh up`: rsa, kubeadm's default, or ec) is printed: run
 * it once per lab to compare. Starts its own Redis on a private port; brings the lab up if it isn't.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startHarness, TEST_SNAPSHOT_DIR, SIGNING_SECRET, LAB_CHANNEL } from '../test/support/harness';
import { startRedis } from '../test/support/redis';
import { FakeSlack } from '../test/support/fake-slack';
import { freePort } from '../test/support/sshd';
import { startBot, stopProcess } from '../test/support/processes';
import { signedSlashCommand } from '../test/support/slack-sign';
import { mapBounded } from '../commands/fleet';
import { hostEtcdctl, LAB_DIR, labConfigPath, labUp, waitLabHealthy } from '../test/support/lab';

const RUNS = Number(process.env.BENCH_RUNS ?? 20);
const REDIS_PORT = Number(process.env.BENCH_REDIS_PORT ?? 6397);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}
const median = (xs: number[]) => pct(xs, 50);
const ms = (x: number) => `${x.toFixed(1)} ms`;
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;

async function timed(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

function labKeyType(): string {
  const pem = readFileSync(join(LAB_DIR, 'pki', 'ca.crt'), 'utf8');
  // An RSA CA's certificate is much longer than a P-256 one.
  return pem.length > 1000 ? 'RSA-2048' : 'P-256';
}

function printTable(title: string, rows: string[][]): void {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  console.log(`\n${title}`);
  for (const r of rows) console.log(r.map((c, i) => (c ?? '').padEnd(widths[i])).join('  '));
}

/** 1: status end to end, warm and cold, both auth modes, beside etcdctl. */
async function statusRows(redisUrl: string): Promise<string[][]> {
  const direct = await (async () => {
    await hostEtcdctl(['endpoint', 'status']);
    return timed(RUNS, () => hostEtcdctl(['endpoint', 'status']));
  })();
  const rows: string[][] = [
    ['measure', 'runs', 'p50', 'p99', 'vs etcdctl (p50)'],
    ['etcdctl endpoint status (direct, 3 members)', String(RUNS), ms(median(direct)), ms(pct(direct, 99)), '1.00x'],
  ];
  for (const keep of [60_000, 0]) {
    const h = await startHarness({ redisUrl, requestLimit: false, keepConnectionsMs: keep });
    try {
      for (const cluster of ['lab', 'lab-botcert']) {
        const once = async () => { await h.slash(`status ${cluster}`); await h.nextMessage(new RegExp(`etcd status — ${cluster}\\b`)); };
        await once(); // JIT, Redis scripts, and for warm: the connections
        const e2e = await timed(RUNS, once);
        rows.push([`/etcd status ${cluster}, ${keep ? 'warm' : 'cold'} (slash -> message)`, String(RUNS), ms(median(e2e)), ms(pct(e2e, 99)), ratio(median(e2e), median(direct))]);
      }
    } finally {
      await h.stop();
    }
  }
  return rows;
}

/** 2: the web role's ack latency, in its own process as deployed, a worker process beside it. */
async function ackRows(redisUrl: string): Promise<string[][]> {
  const fake = new FakeSlack();
  await fake.start();
  const port = await freePort();
  const env = {
    MEDIC_CONFIG: labConfigPath(), REDIS_URL: redisUrl, MEDIC_QUEUE: `bench-ack-${process.pid}`, MEDIC_AUDIT_KEY: `bench-audit-${process.pid}`,
    SLACK_BOT_TOKEN: fake.token, SLACK_API_URL: fake.url, SLACK_SIGNING_SECRET: SIGNING_SECRET, PORT: String(port), HOST: '127.0.0.1',
    MEDIC_SSH_KEY_FILE: join(LAB_DIR, 'bot_id_ed25519'), MEDIC_SNAPSHOT_DIR: TEST_SNAPSHOT_DIR, LOG_LEVEL: 'warn',
  };
  const web = startBot(env, 'web');
  // BENCH_ACK_WORKER=0: the web role alone (its jobs wait in the queue).
  const worker = process.env.BENCH_ACK_WORKER === '0' ? undefined : startBot(env, 'worker');
  const url = `http://127.0.0.1:${port}/slack/events`;
  let user = 0;
  const slash = async () => {
    const t0 = performance.now();
    const res = await signedSlashCommand({
      url, signingSecret: SIGNING_SECRET,
      fields: { command: '/etcd', text: 'status lab', user_id: `U0B${String(++user).padStart(6, '0')}`, channel_id: LAB_CHANNEL, team_id: 'T0MEDIC', response_url: fake.responseUrl() },
    });
    if (res.status !== 200) throw new Error(`ack failed: ${res.status} ${res.body}`);
    return performance.now() - t0;
  };
  try {
    const end = Date.now() + 30_000;
    for (;;) {
      try { await slash(); break; } catch (e) { if (Date.now() > end) throw new Error(`the web process did not answer: ${String(e)}\n${web.log()}`); }
      await new Promise((r) => setTimeout(r, 200));
    }
    for (let i = 0; i < 20; i++) await slash(); // warm up
    const burst = async (concurrency: number, rounds: number) => {
      const lat: number[] = [];
      let wall = 0;
      for (let r = 0; r < rounds; r++) {
        const t0 = performance.now();
        lat.push(...await Promise.all(Array.from({ length: concurrency }, slash)));
        wall += performance.now() - t0;
        // Let the worker drain before the next round: each round starts from an idle web role.
        await new Promise((res) => setTimeout(res, 500));
      }
      return { lat, perSecond: (concurrency * rounds) / (wall / 1000) };
    };
    const rows: string[][] = [['concurrent signed requests', 'requests', 'p50', 'p99', 'acks/s', 'note']];
    for (const [c, rounds] of [[1, 100], [50, 4], [200, 3]] as const) {
      const { lat, perSecond } = await burst(c, rounds);
      rows.push([String(c), String(lat.length), ms(median(lat)), ms(pct(lat, 99)), c === 1 ? '-' : perSecond.toFixed(0), c === 200 ? 'target p99 <= 100 ms, >= 2000 acks/s' : '']);
    }
    return rows;
  } finally {
    await Promise.all([stopProcess(web.child), worker && stopProcess(worker.child)]);
    await fake.stop();
  }
}

/** 3: the fleet view over n clusters, beside n direct etcdctl calls. */
async function fleetRows(redisUrl: string): Promise<string[][]> {
  const rows: string[][] = [['clusters', 'runs', 'status all p50', 'p99', 'etcdctl x n, in turn', '32 at a time', 'bot vs in turn', 'bot vs 32 at a time']];
  for (const n of [10, 50]) {
    const h = await startHarness({
      redisUrl, requestLimit: false,
      mutateConfig: (c) => {
        const lab = c.clusters.find((x) => x.name === 'lab')!;
        c.clusters = Array.from({ length: n }, (_, i) => ({ ...structuredClone(lab), name: `fleet-${String(i + 1).padStart(2, '0')}` }));
      },
    });
    try {
      const once = async () => { await h.slash('status all'); await h.nextMessage(/etcd status — every cluster/, 120_000); };
      await once();
      const bot = await timed(Math.max(3, Math.round(RUNS / 4)), once);
      const calls = Array.from({ length: n }, (_, i) => i);
      const inTurn = (await timed(1, async () => { for (const _ of calls) await hostEtcdctl(['endpoint', 'status']); }))[0];
      const parallel = (await timed(1, () => mapBounded(calls, 32, () => hostEtcdctl(['endpoint', 'status']))))[0];
      rows.push([String(n), String(bot.length), ms(median(bot)), ms(pct(bot, 99)), ms(inTurn), ms(parallel), ratio(median(bot), inTurn), ratio(median(bot), parallel)]);
    } finally {
      await h.stop();
    }
  }
  return rows;
}

async function main(): Promise<void> {
  // BENCH_ONLY=ack: one part (status, ack or fleet).
  const only = process.env.BENCH_ONLY;
  await labUp();
  await waitLabHealthy();
  const redis = await startRedis(REDIS_PORT);
  try {
    console.log(`lab: ${labKeyType()} certificates; ${RUNS} runs per measure`);
    if (!only || only === 'status') printTable('1. status, end to end', await statusRows(redis.url));
    if (!only || only === 'ack') printTable(`2. ack latency of the web role (own process${process.env.BENCH_ACK_WORKER === '0' ? ', no worker' : ', one worker process beside it'})`, await ackRows(redis.url));
    if (!only || only === 'fleet') printTable('3. /etcd status all', await fleetRows(redis.url));
  } finally {
    await redis.stop();
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
