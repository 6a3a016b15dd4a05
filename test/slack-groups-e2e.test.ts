/**
 * Access rules naming Slack user groups (S…): membership comes from usergroups.users.list
 * at the (fake) Slack API, per request; when it can't be read, the group matches nobody.
 */
import { Harness, LAB_CHANNEL, startHarness } from './support/harness';
import { click, waitPlanMessage } from './support/plans';
import { waitLabHealthy, ensureLabHealthy } from './support/lab';
import type { MedicConfig } from '../src/config/schema';

jest.setTimeout(120_000);

const byGroups = (c: MedicConfig) => {
  const lab = c.clusters.find((x) => x.name === 'lab')!;
  lab.access.mutating = { requesters: ['S0ONCALL'], approvers: ['S0LEADS'], approvals: 1 };
};

describe('user groups in access rules', () => {
  let h: Harness | undefined;
  beforeAll(async () => { await ensureLabHealthy(); });
  afterEach(async () => { await h?.stop(); h = undefined; });

  it('lets group members request and approve, and refuses everyone else', async () => {
    h = await startHarness({
      mutateConfig: byGroups,
      fakeSlack: { usergroups: { S0ONCALL: ['U0ALICE', 'U0BOB'], S0LEADS: ['U0CAROL'] } },
    });
    const refused = await h.slash('defrag lab', { user: 'U0MALLORY' });
    expect(JSON.parse(refused.body).text).toMatch(/you may not request mutating commands on lab/);

    const before = h.fake.messages(LAB_CHANNEL).length;
    await h.slash('defrag lab', { user: 'U0ALICE' });
    const plan = await waitPlanMessage(h, /etcd defrag — lab/, before);
    expect((await click(h, plan, 'approve', 'U0BOB')).reply).toMatch(/you may not approve mutating plans on lab/);
    expect((await click(h, plan, 'reject', 'U0CAROL')).reply).toMatch(/you rejected plan/);
    expect(h.fake.callsTo('usergroups.users.list').length).toBeGreaterThan(0);
  });

  it('fails closed when the app lacks usergroups:read', async () => {
    h = await startHarness({
      mutateConfig: byGroups,
      fakeSlack: { usergroups: { S0ONCALL: ['U0ALICE'] }, missingScopes: ['usergroups:read'] },
    });
    const res = await h.slash('defrag lab', { user: 'U0ALICE' });
    expect(JSON.parse(res.body).text).toMatch(/you may not request mutating commands on lab/);
    expect(h.fake.callsTo('usergroups.users.list')[0].response).toMatchObject({ ok: false, error: 'missing_scope' });
  });
});
