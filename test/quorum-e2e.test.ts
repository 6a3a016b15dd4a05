/**
 * Quorum loss end to end in the lab: two nodes' etcd destroyed, status says quorum lost and
 * names force-new-cluster; it is refused on a healthy cluster; with two approvals it
 * re-forms the cluster from the survivor, takes the flag out again and rebuilds the others.
 */
import { endpointHealth, hostEtcdctl, labFresh, labNode, labSh, memberList, pollUntil, sshNode, ensureLabHealthy } from './support/lab';
import { blocksText, Harness, LAB_CHANNEL, startHarness } from './support/harness';
import { click, threadText, waitPlanMessage, messageMatches } from './support/plans';

jest.setTimeout(300_000);

describe('quorum lost (lab)', () => {
  let h: Harness;
  beforeAll(async () => {
    await ensureLabHealthy();
    h = await startHarness({
      mutateConfig: (c) => { c.clusters.find((x) => x.name === 'lab')!.access.destructive.approvers = ['U0BOB', 'U0CAROL']; },
    });
  });
  afterAll(async () => {
    await h?.stop();
    // Whatever happened, leave the lab as lab.sh makes it: force-new-cluster rewrote every
    // manifest (node2 and node3 joined as `existing`), which a later suite's wipe can't re-form.
    await labFresh();
    await ensureLabHealthy();
  });

  it('refuses force-new-cluster while the cluster has quorum', async () => {
    const before = h.fake.messages(LAB_CHANNEL).length;
    await h.slash('force-new-cluster lab node1', { user: 'U0ALICE' });
    const msg = await h.fake.waitFor((f) => f.messages(LAB_CHANNEL).slice(before).find((m) => /force-new-cluster/.test(m.text ?? '')), 60_000);
    expect(msg.text).toMatch(/refused: lab has not lost quorum \(healthy: 3\/3 voting members healthy\)/);
    expect((msg.blocks ?? []).some((b) => (b as { type: string }).type === 'actions')).toBe(false);
  });

  it('two nodes destroyed: status says quorum lost; force-new-cluster with two approvals brings 3/3 back with the data, and no --force-new-cluster left', async () => {
    for (let i = 0; i < 50; i++) await hostEtcdctl(['put', `/medic-test/quorum/${i}`, `v${i}`]);
    for (const n of ['node2', 'node3']) {
      await labSh('stop-etcd', n);
      await labSh('exec', n, '--', 'rm', '-rf', '/var/lib/etcd/member');
    }
    await pollUntil('node1 without quorum', async () => (await endpointHealth([labNode('node1').clientUrl]))[labNode('node1').clientUrl] === false, 60_000, 500);

    await h.slash('status lab', { user: 'U0ALICE' });
    const status = await h.nextMessage(/etcd status — lab/);
    expect(status.blocks).toMatch(/quorum lost/);
    // node1 said it sees no leader: what needs one (health) was not waited for to its deadline, and says why.
    expect(status.blocks).toMatch(/node1 +[0-9a-f]+ +\S+ +unhealthy: no leader \(raft term \d+\): it can't s/);
    expect(status.blocks).toContain('/etcd force-new-cluster lab node1');

    const before = h.fake.messages(LAB_CHANNEL).length;
    await h.slash('force-new-cluster lab node1', { user: 'U0ALICE' });
    const plan = await waitPlanMessage(h, /etcd force-new-cluster — lab/, before);
    const text = blocksText(plan.blocks ?? []);
    expect(text).toMatch(/needs 2 approvals/);
    expect(text).toMatch(/node\.copyDataAside[\s\S]*node\.setFlag[\s\S]*etcd\.waitSingleMember[\s\S]*node\.setFlag[\s\S]*etcd\.memberAddLearner\s+node2[\s\S]*etcd\.memberAddLearner\s+node3/);

    expect((await click(h, plan, 'approve', 'U0ALICE')).reply).toMatch(/someone else must approve/);
    expect((await click(h, plan, 'approve', 'U0BOB')).reply).toMatch(/1 more approval\(s\) needed/);
    expect((await click(h, plan, 'approve', 'U0CAROL')).reply).toMatch(/it runs now/);
    // 9 steps on the survivor, 8 per node added back, one final check.
    const steps = 9 + 2 * 8 + 1;
    await h.fake.waitFor(() => new RegExp(`done: all ${steps} steps ran`).test(threadText(h, plan.ts)) || undefined, 240_000);
    await messageMatches(h, plan.ts, /done/);

    const manifest = await sshNode('node1', 'cat /etc/kubernetes/manifests/etcd.yaml');
    expect(manifest.code).toBe(0);
    expect(manifest.stdout).toContain('--name=node1');
    expect(manifest.stdout).not.toContain('--force-new-cluster');
    const members = await memberList();
    expect(members.map((m) => m.name).sort()).toEqual(['node1', 'node2', 'node3']);
    expect(members.filter((m) => m.isLearner)).toHaveLength(0);
    expect(Object.values(await endpointHealth())).toEqual([true, true, true]);
    const keys = await hostEtcdctl(['get', '--prefix', '/medic-test/quorum/', '--keys-only'], [labNode('node3').clientUrl]);
    expect(keys.split('\n').filter(Boolean)).toHaveLength(50);
    expect(threadText(h, plan.ts)).toMatch(/--force-new-cluster removed from .* \(checked after writing\)/);
  });
});
