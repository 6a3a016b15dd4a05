/**
 * A node that runs a second etcd besides the member's (an events cluster, a CNI's
 * kvstore): replace-member stops, wipes and starts the member's own etcd only, and
 * finishes; the other etcd keeps running, untouched, with its data. End to end in the lab
 * through signed Slack requests.
 */
import { endpointHealth, ensureLabHealthy, hostEtcdctl, labNode, labSh, memberIdsByName, pollUntil, run, waitLabHealthy } from './support/lab';
import { blocksText, Harness, LAB_CHANNEL, startHarness } from './support/harness';
import { click, threadText, waitPlanMessage } from './support/plans';

jest.setTimeout(300_000);

const ALICE = 'U0ALICE';
const BOB = 'U0BOB';

describe('a second etcd on a node (lab)', () => {
  let h: Harness;
  const ip = labNode('node3').ip;
  const other = `http://${ip}:23790`;
  let otherPid = '';

  /** The other etcd's pids as node3 sees them (its own pid namespace). */
  const otherPids = async () => (await labSh('exec', 'node3', '--', 'sh', '-c', 'pgrep -f -- "--name=medic-test-othe[r]" || true')).trim();

  beforeAll(async () => {
    await ensureLabHealthy();
    h = await startHarness({
      mutateConfig: (c) => { c.clusters.find((x) => x.name === 'lab')!.access.destructive.approvers = [BOB]; },
    });
    // Another etcd on node3: its own name, data dir and ports, plain http on node3's address.
    await labSh('exec', 'node3', '--', 'sh', '-c',
      `setsid etcd --name=medic-test-other --data-dir=/tmp/medic-test-other --listen-client-urls=${other} --advertise-client-urls=${other} `
      + `--listen-peer-urls=http://${ip}:23800 --initial-advertise-peer-urls=http://${ip}:23800 --initial-cluster=medic-test-other=http://${ip}:23800 `
      + '</dev/null >/tmp/medic-test-other.log 2>&1 &');
    await pollUntil('the other etcd to serve', async () => (await run('etcdctl', [`--endpoints=${other}`, 'put', '/other/key', 'kept'], { env: { ...process.env, ETCDCTL_API: '3' } })).code === 0, 30_000, 500);
    otherPid = await otherPids();
    expect(otherPid).toMatch(/^\d+$/);
    // Two processes called etcd on node3 now.
    expect((await labSh('exec', 'node3', '--', 'pgrep', '-x', 'etcd')).trim().split('\n')).toHaveLength(2);
  });

  afterAll(async () => {
    await h?.stop();
    if (otherPid) await labSh('exec', 'node3', '--', 'kill', otherPid).catch(() => undefined);
    await labSh('exec', 'node3', '--', 'rm', '-rf', '/tmp/medic-test-other', '/tmp/medic-test-other.log').catch(() => undefined);
    await waitLabHealthy().catch(() => undefined);
  });

  it('replace-member node3 acts on the member\'s own etcd only and finishes; the other etcd runs on with its data', async () => {
    for (let i = 0; i < 10; i++) await hostEtcdctl(['put', `/medic-test/own/${i}`, `v${i}`]);
    const oldIds = await memberIdsByName();
    await labSh('wipe-data', 'node3');
    await pollUntil('node3 unhealthy', async () => (await endpointHealth())[labNode('node3').clientUrl] === false, 60_000, 500);

    const before = h.fake.messages(LAB_CHANNEL).length;
    await h.slash('replace-member lab node3', { user: ALICE });
    const plan = await waitPlanMessage(h, /etcd replace-member — lab/, before);
    expect(blocksText(plan.blocks ?? [])).toContain(oldIds.node3);
    expect((await click(h, plan, 'approve', BOB)).reply).toMatch(/it runs now/);
    await h.fake.waitFor(() => /done: all \d+ steps ran|failed at step/.test(threadText(h, plan.ts)) || undefined, 240_000);
    const thread = threadText(h, plan.ts);
    expect(thread).toMatch(/done: all 11 steps ran/);
    // The member's own process was found by its data dir (the stop waited for it, not for the other).
    expect(thread).toMatch(/step 3\/11: node\.stopEtcd node3/);

    const ids = await memberIdsByName();
    expect(ids.node3).toBeDefined();
    expect(ids.node3).not.toBe(oldIds.node3);
    expect(Object.values(await endpointHealth())).toEqual([true, true, true]);
    expect((await hostEtcdctl(['get', '--prefix', '/medic-test/own/', '--keys-only'], [labNode('node3').clientUrl])).split('\n').filter(Boolean)).toHaveLength(10);
    // The other etcd: the same process, still serving its own key.
    expect(await otherPids()).toBe(otherPid);
    const got = await run('etcdctl', [`--endpoints=${other}`, 'get', '/other/key', '--print-value-only'], { env: { ...process.env, ETCDCTL_API: '3' } });
    expect(got.stdout.trim()).toBe('kept');
    expect(await labSh('exec', 'node3', '--', 'ls', '/tmp/medic-test-other')).toContain('member');
  });
});
