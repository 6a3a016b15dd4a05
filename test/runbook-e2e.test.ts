/**
 * Runbooks with approvals, end to end in the lab: signed slash commands and button clicks
 * into Bolt's HTTP receiver, plans and approvals in Redis, a real BullMQ worker acting on
 * the lab's nodes over SSH and the etcd API; what users see read back from the fake Slack.
 * Cluster facts are checked with host-side etcdctl, independently of the bot.
 */
import { endpointHealth, hostEtcdctl, hostEtcdctlRaw, labSh, leaderName, memberIdsByName, memberList, pollUntil, removeMembersByPeerUrl, waitLabHealthy, labNode, ensureLabHealthy } from './support/lab';
import { blocksText, Harness, LAB_CHANNEL, startHarness } from './support/harness';
import { click, currentMessage, planIdOf, threadText, waitPlanMessage, messageMatches } from './support/plans';

jest.setTimeout(300_000);

const ALICE = 'U0ALICE';
const BOB = 'U0BOB';
const CAROL = 'U0CAROL';
const MALLORY = 'U0MALLORY';

/** Real time plus an offset the test can move (to expire approvals without waiting 15 min). */
let clockOffsetMs = 0;
const now = () => new Date(Date.now() + clockOffsetMs);

describe('runbooks with approvals (lab)', () => {
  let h: Harness;
  beforeAll(async () => {
    await ensureLabHealthy();
    h = await startHarness({
      now,
      mutateConfig: (c) => {
        const lab = c.clusters.find((x) => x.name === 'lab')!;
        lab.access.destructive.approvers = [BOB, CAROL];
        lab.access.mutating.approvers = [BOB, CAROL];
      },
    });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('replaces node3 after its data was wiped: plan, refused self-approval, second approver, every step in the thread, 3/3 healthy, data intact', async () => {
    // Data written before the failure must survive the repair.
    for (let i = 0; i < 20; i++) await hostEtcdctl(['put', `/medic-test/replace/${i}`, `value-${i}`]);
    const oldIds = await memberIdsByName();
    await labSh('wipe-data', 'node3');
    await pollUntil('node3 unhealthy', async () => (await endpointHealth())[labNode('node3').clientUrl] === false, 60_000, 500);

    await h.slash('status lab', { user: ALICE });
    const status = await h.nextMessage(/etcd status — lab/);
    expect(status.blocks).toMatch(/degraded: 2\/3 voting members healthy/);
    expect(status.blocks).toContain('/etcd replace-member lab node3');

    const before = h.fake.messages(LAB_CHANNEL).length;
    expect((await h.slash('replace-member lab node3', { user: ALICE })).status).toBe(200);
    const plan = await waitPlanMessage(h, /etcd replace-member — lab/, before);
    const planText = blocksText(plan.blocks ?? []);
    expect(planText).toContain('Fault tolerance before');
    expect(planText).toContain('2/3 healthy voters, quorum 2, 0 failures tolerable');
    expect(planText).toContain('After removing');
    expect(planText).toContain('2/2 healthy voters, quorum 2, 0 failures tolerable');
    expect(planText).toMatch(/etcd\.memberRemove[\s\S]*node\.stopEtcd[\s\S]*etcd\.memberAddLearner[\s\S]*etcd\.memberPromote[\s\S]*cluster\.verify/);
    expect(planText).toContain(oldIds.node3);
    expect(planText).toMatch(/waiting for approval/);

    // The requester may not approve their own destructive plan; nor may someone not listed.
    const self = await click(h, plan, 'approve', ALICE);
    expect(self.reply).toMatch(/you requested plan \S+: someone else must approve it/);
    const stranger = await click(h, plan, 'approve', MALLORY);
    expect(stranger.reply).toMatch(/you may not approve destructive plans on lab/);
    // A click on another channel's copy of the button acts on nothing.
    const elsewhere = await click(h, plan, 'approve', BOB, { channel: 'COTHER0001' });
    expect(elsewhere.reply).toMatch(/belongs to another channel/);
    expect((await memberIdsByName()).node3).toBe(oldIds.node3);

    const approved = await click(h, plan, 'approve', BOB);
    expect(approved.reply).toMatch(/you approved plan \S+: it runs now/);

    // While it runs: a second mutating request is told busy and nothing of it runs;
    // read-only commands keep working.
    await h.fake.waitFor(() => /step 2\/11/.test(threadText(h, plan.ts)) || undefined, 120_000);
    const busyBefore = h.fake.messages(LAB_CHANNEL).length;
    await h.slash('remove-member lab node2', { user: CAROL });
    const busy = await h.fake.waitFor((f) => f.messages(LAB_CHANNEL).slice(busyBefore).find((m) => /cluster busy/.test(m.text ?? '')), 60_000);
    expect(busy.text).toMatch(/cluster busy: job \S+ by U0ALICE, step \d+\/11/);
    expect(busy.text).toContain('Nothing of your request ran');

    const done = await h.fake.waitFor(() => /done: all 11 steps ran/.test(threadText(h, plan.ts)) || undefined, 240_000);
    expect(done).toBe(true);
    const thread = threadText(h, plan.ts);
    for (let i = 1; i <= 11; i++) expect(thread).toMatch(new RegExp(`step ${i}/11: `));
    expect(thread).toMatch(/Approved by U0BOB \(1\/1\)/);
    expect(thread).toMatch(/safety snapshot \S+ from node\d: revision \d+, \d+ keys, .*verified by etcd(ctl|utl)/);
    expect(thread).toMatch(/healthy: 3\/3 voting members healthy/);
    await messageMatches(h, plan.ts, /done/);

    // What a user would check with etcdctl: 3 voters, no learner, one node3, all healthy,
    // every key still there; node2 untouched by the busy request.
    const members = await memberList();
    expect(members).toHaveLength(3);
    expect(members.filter((m) => m.isLearner)).toHaveLength(0);
    expect(members.filter((m) => m.name === 'node3')).toHaveLength(1);
    expect(members.find((m) => m.name === 'node3')!.id).not.toBe(oldIds.node3);
    expect(members.find((m) => m.name === 'node2')!.id).toBe(oldIds.node2);
    expect(Object.values(await endpointHealth())).toEqual([true, true, true]);
    const keys = await hostEtcdctl(['get', '--prefix', '/medic-test/replace/', '--keys-only'], [labNode('node3').clientUrl]);
    expect(keys.split('\n').filter(Boolean)).toHaveLength(20);

    // The audit trail: verified chain with the refusals, the approval and every step.
    const v = await h.medic.audit.verify();
    expect(v.problems).toEqual([]);
    const events = await h.medic.audit.recent({ cluster: 'lab', limit: 200 });
    const types = events.map((e) => `${e.type}${e.actor ? ` ${e.actor}` : ''}`);
    expect(types).toEqual(expect.arrayContaining(['approval.refused U0ALICE', 'approval.refused U0MALLORY', 'approval.granted U0BOB', 'job.busy bot', 'job.succeeded bot']));
    expect(events.filter((e) => e.type === 'step.succeeded' || e.type === 'step.skipped')).toHaveLength(11);
  });

  it('refuses an approval after expiry; after the cluster changed it posts a new plan and asks again', async () => {
    await waitLabHealthy();
    let before = h.fake.messages(LAB_CHANNEL).length;
    await h.slash('replace-member lab node2', { user: ALICE });
    const plan = await waitPlanMessage(h, /etcd replace-member — lab/, before);
    const planId = planIdOf(plan);
    clockOffsetMs = 16 * 60_000;
    try {
      const late = await click(h, plan, 'approve', BOB);
      expect(late.reply).toMatch(/expired at .*nothing ran/);
    } finally {
      clockOffsetMs = 0;
    }
    await messageMatches(h, plan.ts, /approval expired/);
    // The message lost its buttons; a replayed click on the old ones is refused too.
    const after = await click(h, plan, 'approve', CAROL, { value: planId });
    expect(after.reply).toMatch(/is expired/);

    // A plan approved after a member was added by hand: not run on that approval. (The leader
    // moving, health and raft indexes flapping do not void an approval: workflow tests.)
    before = h.fake.messages(LAB_CHANNEL).length;
    await h.slash('replace-member lab node2', { user: ALICE });
    const plan2 = await waitPlanMessage(h, /etcd replace-member — lab/, before);
    const ids = await memberIdsByName();
    // etcd 3.5 refuses member add ("unhealthy cluster") until every member has been connected for a while.
    const learnerUrl = 'https://127.10.0.99:2380';
    await pollUntil('a learner added by hand', async () => {
      const r = await hostEtcdctlRaw(['member', 'add', 'medic-test-learner', '--learner', `--peer-urls=${learnerUrl}`]);
      // An attempt that timed out on the client may still have added it: the retry then says so.
      return r.code === 0 || /already exists/i.test(r.stderr);
    }, 60_000, 1000);
    // Its id from member list (etcdctl's "Member %16x added" pads an id with a leading zero nibble).
    const learnerId = (await memberList()).find((m) => m.peerUrls.includes(learnerUrl))?.id;
    expect(learnerId).toBeDefined();
    try {
      // A click signed 10 minutes ago (a replayed request) is refused by the signature check.
      const stale = await click(h, plan2, 'approve', BOB, { timestamp: Math.floor(Date.now() / 1000) - 600 });
      expect(stale.res.status).toBe(401);
      expect(currentMessage(h, plan2.ts).text).toMatch(/waiting for approval/);
      // The id is read before the approval: once the plan runs, chat.update may take its buttons away.
      const plan2Id = planIdOf(plan2);
      const ok = await click(h, plan2, 'approve', BOB);
      // The same click again, freshly signed: counted once.
      expect((await click(h, plan2, 'approve', BOB, { value: plan2Id })).reply).toMatch(/already approved|is (running|superseded|approved|failed)/);
      expect(ok.reply).toMatch(/it runs now/);
      // With a learner there, replace-member can't add node2 back (one learner at a time): refused before any step.
      await h.fake.waitFor(() => /no longer allows this|changed after approval/.test(threadText(h, plan2.ts)) || undefined, 60_000);
      expect(threadText(h, plan2.ts)).toMatch(new RegExp(`member ${learnerId} \\(not started yet\\) is still a learner.*Nothing ran`));
      expect(threadText(h, plan2.ts)).not.toMatch(/step 1\/11/);
      expect((await memberIdsByName()).node2).toBe(ids.node2);
    } finally {
      await removeMembersByPeerUrl(learnerUrl);
    }
  });

  it('refuses to remove a healthy member of a 3-node cluster while another member is down, and says why', async () => {
    await waitLabHealthy();
    await labSh('stop-node', 'node3');
    try {
      const before = h.fake.messages(LAB_CHANNEL).length;
      await h.slash('remove-member lab node1', { user: ALICE });
      const msg = await h.fake.waitFor((f) => f.messages(LAB_CHANNEL).slice(before).find((m) => /remove-member/.test(m.text ?? '')), 60_000);
      expect(msg.text).toMatch(/refused: removing node1 would leave 1 healthy of 2 voting members, below quorum 2 \(node3 is down\)/);
      expect(msg.text).toContain('Nothing ran');
      expect((msg.blocks ?? []).some((b) => (b as { type: string }).type === 'actions')).toBe(false);
      expect(Object.keys(await memberIdsByName([labNode('node1').clientUrl])).sort()).toEqual(['node1', 'node2', 'node3']);
    } finally {
      await labSh('start-node', 'node3');
      await waitLabHealthy();
    }
  });

  it('tails a node\'s etcd log, lists jobs, and defragments one member at a time with the leader last', async () => {
    await waitLabHealthy();
    await h.slash('logs lab node2 20', { user: ALICE });
    const logs = await h.nextMessage(/etcd logs — lab node2/);
    // etcd's own log lines, read over SSH from the node's CRI log files.
    expect(logs.blocks).toMatch(/\d\d:\d\d:\d\d/);
    expect(logs.blocks.toLowerCase()).toMatch(/raft|etcd|member|peer/);

    const leader = await leaderName();
    const before = h.fake.messages(LAB_CHANNEL).length;
    await h.slash('defrag lab', { user: ALICE });
    const plan = await waitPlanMessage(h, /etcd defrag — lab/, before);
    const planId = planIdOf(plan);
    const text = blocksText(plan.blocks ?? []);
    const order = [...text.matchAll(/etcd\.defragment\s+(node\d)/g)].map((m) => m[1]);
    expect(order).toHaveLength(3);
    expect(order[2]).toBe(leader);
    // Mutating: the requester confirms it herself.
    expect((await click(h, plan, 'approve', ALICE)).reply).toMatch(/it runs now/);
    await h.fake.waitFor(() => /done: all 4 steps ran/.test(threadText(h, plan.ts)) || undefined, 120_000);
    expect(threadText(h, plan.ts)).toMatch(/step 3\/4: etcd\.defragment .*database/);

    await h.slash('jobs lab', { user: CAROL });
    const jobs = await h.nextMessage(/etcd jobs — lab/);
    expect(jobs.blocks).toMatch(new RegExp(`\\b${planId}\\s+defrag\\s+succeeded`));
  });
});
