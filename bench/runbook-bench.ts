/**
 * npm run bench:runbooks — not part of the tests. On the lab, in one run, replacing node3's
 * member three ways and printing the times side by side:
 *  1. scripted by hand: host-side etcdctl plus shell commands on the node (no checks, no
 *     approvals, no safety snapshot): the floor;
 *  2. the bot: signed `/etcd replace-member lab node3` → approval click → "done" in the
 *     thread, with its per-step times;
 * and the ratio bot / by hand. Starts its own Redis on a private port; brings the lab up.
 */
import { performance } from 'node:perf_hooks';
import { startHarness } from '../test/support/harness';
import { startRedis } from '../test/support/redis';
import { hostEtcdctl, hostEtcdctlRaw, labNode, labSh, labUp, memberIdsByName, memberList, waitLabHealthy } from '../test/support/lab';
import { click, threadText, waitPlanMessage } from '../test/support/plans';

const REDIS_PORT = Number(process.env.BENCH_REDIS_PORT ?? 6397);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(100);
  }
}

/** Time spent waiting on etcd: attempts it refused ("unhealthy cluster" right after a join), in ms. */
let handEtcdWaitMs = 0;

/** Like until(), but the time between the first refused attempt and the accepted one counts as etcd's wait. */
async function untilEtcdAccepts(what: string, fn: () => Promise<boolean>): Promise<void> {
  const first = performance.now();
  let refused = false;
  await until(what, async () => {
    if (await fn()) return true;
    refused = true;
    return undefined;
  });
  if (refused) handEtcdWaitMs += performance.now() - first;
}

/** The runbook's §3 + §4 as one would script them, for node3. */
async function byHand(): Promise<number> {
  const n3 = labNode('node3');
  const t0 = performance.now();
  const id = (await memberIdsByName()).node3;
  await untilEtcdAccepts('member remove', async () => (await hostEtcdctlRaw(['member', 'remove', id], [labNode('node1').clientUrl])).code === 0);
  await labSh('exec', 'node3', '--', 'sh', '-c', 'mv /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/etcd.yaml.hand && while pgrep -x etcd >/dev/null; do sleep 0.1; done && mv /var/lib/etcd/member /var/lib/etcd/member.hand-$(date +%s%N)');
  await untilEtcdAccepts('member add', async () => (await hostEtcdctlRaw(['member', 'add', 'node3', `--peer-urls=${n3.peerUrl}`, '--learner'], [labNode('node1').clientUrl])).code === 0);
  await labSh('exec', 'node3', '--', 'sh', '-c', 'sed -i s/--initial-cluster-state=new/--initial-cluster-state=existing/ /etc/kubernetes/etcd.yaml.hand && mv /etc/kubernetes/etcd.yaml.hand /etc/kubernetes/manifests/etcd.yaml');
  const learner = await until('learner id', async () => (await memberList([labNode('node1').clientUrl])).find((m) => m.peerUrls.includes(n3.peerUrl))?.id);
  await untilEtcdAccepts('promote', async () => (await hostEtcdctlRaw(['member', 'promote', learner], [labNode('node1').clientUrl])).code === 0);
  await waitLabHealthy(120_000);
  return performance.now() - t0;
}

async function main(): Promise<void> {
  await labUp();
  await waitLabHealthy();
  const redis = await startRedis(REDIS_PORT);
  const h = await startHarness({
    redisUrl: redis.url,
    mutateConfig: (c) => { c.clusters.find((x) => x.name === 'lab')!.access.destructive.approvers = ['U0BOB']; },
  });
  try {
    for (let i = 0; i < 100; i++) await hostEtcdctl(['put', `/bench/${i}`, `v${i}`]);
    const hand = await byHand();
    // etcd refuses a member removal while a member joined less than 5 s ago ("unhealthy
    // cluster"): let the hand-run's join settle, so the bot's run starts where the script's did.
    await sleep(6000);

    const before = h.fake.messages().length;
    await h.slash('replace-member lab node3', { user: 'U0ALICE' });
    const plan = await waitPlanMessage(h, /etcd replace-member — lab/, before);
    const t0 = performance.now();
    await click(h, plan, 'approve', 'U0BOB');
    await until('bot done', async () => (/done: all \d+ steps ran/.test(threadText(h, plan.ts)) ? true : undefined), 240_000)
      .catch((e) => { throw new Error(`${(e as Error).message}; thread so far:\n${threadText(h, plan.ts)}`); });
    const bot = performance.now() - t0;
    const steps = [...threadText(h, plan.ts).matchAll(/step (\d+)\/\d+: (\S+)(?: (node\d))? — ([\d.]+) s/g)]
      .map((m) => `  ${m[1].padStart(2)}. ${`${m[2]}${m[3] ? ` ${m[3]}` : ''}`.padEnd(30)} ${m[4]} s`);

    console.log('replace node3 (lab, 3 members, etcd 3.4)');
    console.log(`  scripted by hand (etcdctl + shell, no checks)   ${(hand / 1000).toFixed(2)} s (of it etcd refusing and retried: ${(handEtcdWaitMs / 1000).toFixed(2)} s)`);
    const botEtcdWait = [...threadText(h, plan.ts).matchAll(/etcd refused it for ([\d.]+) s first/g)].reduce((n, m) => n + Number(m[1]), 0);
    console.log(`  etcd-medic, approval click -> done in thread     ${(bot / 1000).toFixed(2)} s (of it etcd refusing and retried: ${botEtcdWait.toFixed(2)} s)`);
    console.log(`  ratio bot / by hand                              ${(bot / hand).toFixed(1)}x; without etcd's waits ${((bot - botEtcdWait * 1000) / (hand - handEtcdWaitMs)).toFixed(1)}x`);
    console.log('  bot steps:');
    for (const s of steps) console.log(s);
  } finally {
    await h.stop();
    await redis.stop();
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
