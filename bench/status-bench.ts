/**
 * npm run bench — not part of the tests. On the lab, in one run:
 *  1. signed `/etcd status lab` -> status message at the fake Slack API (end to end),
 *     beside a direct host-side `etcdctl endpoint status` over all members, as a ratio;
 *  2. ack latency (HTTP response to the slash command) p50/p99 at 1 and 50 concurrent requests.
 * Starts its own Redis on a private port; brings the lab up if it isn't.
 */
import { performance } from 'node:perf_hooks';
import { startHarness } from '../test/support/harness';
import { startRedis } from '../test/support/redis';
import { hostEtcdctl, labUp, waitLabHealthy } from '../test/support/lab';

const RUNS = Number(process.env.BENCH_RUNS ?? 10);
const REDIS_PORT = Number(process.env.BENCH_REDIS_PORT ?? 6397);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}
const median = (xs: number[]) => pct(xs, 50);
const ms = (x: number) => `${x.toFixed(1)} ms`;

async function main(): Promise<void> {
  await labUp();
  await waitLabHealthy();
  const redis = await startRedis(REDIS_PORT);
  // Hundreds of requests from one user: the per-user limit would refuse most of them.
  const h = await startHarness({ redisUrl: redis.url, requestLimit: false });
  try {
    // Warm up: SSH handshakes, JIT, Redis scripts.
    await h.slash('status lab');
    await h.nextMessage(/etcd status — lab/);
    await hostEtcdctl(['endpoint', 'status']);

    const e2e: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      await h.slash('status lab');
      await h.nextMessage(/etcd status — lab/);
      e2e.push(performance.now() - t0);
    }
    const direct: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      await hostEtcdctl(['endpoint', 'status']);
      direct.push(performance.now() - t0);
    }

    const ack = async (concurrency: number, rounds: number): Promise<number[]> => {
      const out: number[] = [];
      for (let r = 0; r < rounds; r++) {
        await Promise.all(Array.from({ length: concurrency }, async () => {
          const t0 = performance.now();
          const res = await h.slash('status lab');
          if (res.status !== 200) throw new Error(`ack failed: ${res.status} ${res.body}`);
          out.push(performance.now() - t0);
        }));
      }
      return out;
    };
    const ack1 = await ack(1, 50);
    const ack50 = await ack(50, 2);
    // Let the queued status jobs drain before tearing down.
    await h.fake.waitFor((f) => f.messages().length >= 1 + RUNS + ack1.length + ack50.length, 300000).catch(() => undefined);

    const rows: string[][] = [
      ['measure', 'runs', 'p50', 'p99', 'note'],
      ['slash command -> status message (e2e)', String(RUNS), ms(median(e2e)), ms(pct(e2e, 99)), 'Bolt + BullMQ + SSH tunnels + etcd, 3 members'],
      ['etcdctl endpoint status (direct)', String(RUNS), ms(median(direct)), ms(pct(direct, 99)), 'host-side etcdctl, all 3 members'],
      ['ratio e2e / direct (p50)', '', `${(median(e2e) / median(direct)).toFixed(2)}x`, '', ''],
      ['ack latency, 1 concurrent', String(ack1.length), ms(median(ack1)), ms(pct(ack1, 99)), 'HTTP answer to the slash command'],
      ['ack latency, 50 concurrent', String(ack50.length), ms(median(ack50)), ms(pct(ack50, 99)), 'Slack wants < 3000 ms'],
    ];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i])).join('  '));
  } finally {
    await h.stop();
    await redis.stop();
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
