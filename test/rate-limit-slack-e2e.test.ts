/**
 * The per-user request limit as a Slack user meets it (issue 8, item 7): Bolt's receiver fed
 * signed slash commands; the 21st request in a minute is answered privately with the limit
 * and when to try again, and nothing more is queued. No worker runs: nothing reaches the lab.
 */
import { jobCount, startHarness, Harness } from './support/harness';
import { labUp } from './support/lab';

describe('per-user request limit through Slack', () => {
  let h: Harness;
  beforeAll(async () => {
    await labUp(); // only for its clusters.yaml
    h = await startHarness({ worker: false });
  });
  afterAll(async () => { await h?.stop(); });

  it('queues 20 requests of one user in a minute, refuses the 21st privately with when to retry, and still serves another user', async () => {
    for (let i = 0; i < 20; i++) expect((await h.slash('status lab', { user: 'U0BUSY' })).status).toBe(200);
    const queued = await (async () => { for (let i = 0; i < 50; i++) { const n = await jobCount(h); if (n >= 20) return n; await new Promise((r) => setTimeout(r, 100)); } return jobCount(h); })();
    expect(queued).toBe(20);

    const url = h.fake.responseUrl('busy21');
    expect((await h.slash('status lab', { user: 'U0BUSY', responseUrl: url })).status).toBe(200);
    const reply = await h.fake.waitFor((f) => f.responses.find((r) => r.id === 'busy21'), 10_000);
    expect(reply.text).toMatch(/you sent 21 requests in the last minute; the limit is 20\. Nothing was queued; try again in \d+ s/);
    expect(reply.text).not.toMatch(/\[RATE_LIMITED\]/);
    await new Promise((r) => setTimeout(r, 500));
    expect(await jobCount(h)).toBe(20);

    // Someone else in the same incident channel is not held back by it.
    expect((await h.slash('status lab', { user: 'U0OTHER' })).status).toBe(200);
    for (let i = 0; i < 50 && (await jobCount(h)) < 21; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await jobCount(h)).toBe(21);
  });
});
