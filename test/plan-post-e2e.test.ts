/**
 * A plan the bot can't post (it is not in the channel): the plan is cancelled, so nobody can
 * approve what nobody saw, and the requester is told through the command's response_url.
 */
import { Harness, LAB_CHANNEL, startHarness } from './support/harness';
import { waitLabHealthy, ensureLabHealthy } from './support/lab';

jest.setTimeout(120_000);

describe('a plan that cannot be posted', () => {
  let h: Harness;
  beforeAll(async () => {
    await ensureLabHealthy();
    // Slack answers channel_not_found for the lab channel: the bot was never invited.
    h = await startHarness({ fakeSlack: { channels: (id) => id !== LAB_CHANNEL } });
  });
  afterAll(async () => { await h?.stop(); });

  it('is cancelled, and the requester hears why and what to do', async () => {
    const responseUrl = h.fake.responseUrl('plan-post');
    expect((await h.slash('defrag lab', { user: 'U0ALICE', responseUrl })).status).toBe(200);
    const said = await h.fake.waitFor((f) => f.responses.find((r) => r.id === 'plan-post' && /could not post plan/.test(r.text ?? '')), 60_000);
    expect(said.text).toMatch(/it was cancelled\. Invite the bot to the channel \(\/invite @etcd-medic\) and request again/);
    const events = await h.medic.audit.recent({ cluster: 'lab', limit: 20 });
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['job.planned', 'job.failed']));
  });
});
