/**
 * The Slack path's refusals and failures, end to end against the lab: what the user sees,
 * and that nothing was queued or run.
 */
import { jobCount, startHarness, Harness } from './support/harness';
import { startRedis, RedisServer } from './support/redis';
import { waitLabHealthy, ensureLabHealthy } from './support/lab';
import { openSshFingerprint } from '../src/exec/ssh';

describe('Slack requests that must not run', () => {
  let h: Harness;
  beforeAll(async () => {
    await ensureLabHealthy();
    h = await startHarness();
  });
  afterAll(async () => { await h?.stop(); });

  it('refuses a bad signature with 401 and queues nothing', async () => {
    const res = await h.slash('status lab', { badSignature: true });
    expect(res.status).toBe(401);
    expect(await jobCount(h)).toBe(0);
  });

  it('refuses a stale timestamp with 401 and queues nothing', async () => {
    const res = await h.slash('status lab', { timestamp: Math.floor(Date.now() / 1000) - 6 * 60 });
    expect(res.status).toBe(401);
    expect(await jobCount(h)).toBe(0);
  });

  it('answers an unknown cluster with an ephemeral error naming the known clusters', async () => {
    const res = await h.slash('status nosuch');
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ response_type: 'ephemeral' });
    expect(String(res.json?.text)).toContain("unknown cluster 'nosuch': known clusters are lab, lab-botcert");
    expect(await jobCount(h)).toBe(0);
  });

  it.each([
    ['shell metacharacters', 'status lab;touch /tmp/medic-pwned'],
    ['command substitution', 'status $(touch /tmp/medic-pwned)'],
    ['very long text', `status ${'lab'.repeat(2000)}`],
    ['odd unicode', 'status l\u0430b\u200B'],
    ['a node argument with metacharacters', 'status lab `reboot`'],
  ])('answers %s with a clear ephemeral error and runs nothing', async (_what, text) => {
    const res = await h.slash(text);
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ response_type: 'ephemeral' });
    expect(String(res.json?.text)).toMatch(/not allowed|at most|too many arguments/);
    expect(await jobCount(h)).toBe(0);
  });

  it('refuses a channel not allowed for the cluster', async () => {
    const res = await h.slash('status lab', { channel: 'COTHER0001' });
    expect(res.json).toMatchObject({ response_type: 'ephemeral' });
    expect(String(res.json?.text)).toContain("can't be acted on from this channel");
    expect(await jobCount(h)).toBe(0);
  });

  it('answers help ephemerally from the command definitions', async () => {
    const res = await h.slash('help');
    expect(res.json).toMatchObject({ response_type: 'ephemeral' });
    // Slack's mrkdwn needs <, > escaped; Slack shows "/etcd status <cluster>".
    expect(JSON.stringify(res.json)).toContain('/etcd status &lt;cluster&gt;');
  });
});

describe('a node whose host key does not match its pin', () => {
  let h: Harness;
  const wrong = openSshFingerprint(Buffer.from('not the real key of node3'));
  let real = '';
  beforeAll(async () => {
    await waitLabHealthy();
    h = await startHarness({
      mutateConfig: (c) => {
        const node3 = c.clusters.find((x) => x.name === 'lab')!.nodes.find((n) => n.name === 'node3')!;
        real = node3.ssh.hostKey;
        node3.ssh.hostKey = wrong;
      },
    });
  });
  afterAll(async () => { await h?.stop(); });

  it('is refused, and the message names the node and both fingerprints', async () => {
    await h.slash('status lab');
    const msg = await h.nextMessage(/etcd status — lab/);
    const row = msg.blocks.split('\n').find((l) => /^\s*node3\s{2,}/.test(l))!;
    expect(row).toContain('unreachable');
    expect(msg.blocks).toContain(wrong);
    expect(msg.blocks).toContain(real);
    expect(msg.blocks).toMatch(/node3 host key/);
    expect(msg.blocks).toMatch(/degraded/);
  });
});

describe('Redis down', () => {
  const port = 6398;
  let redis: RedisServer;
  let h: Harness;
  beforeAll(async () => {
    await waitLabHealthy();
    redis = await startRedis(port);
    h = await startHarness({ redisUrl: redis.url });
  });
  afterAll(async () => {
    await h?.stop();
    await redis?.stop();
  });

  it('tells the user nothing was queued, keeps serving, and works again when Redis is back', async () => {
    await redis.stop();
    const responseUrl = h.fake.responseUrl('redis-down');
    const res = await h.slash('status lab', { responseUrl });
    expect(res.status).toBe(200);
    const reply = await h.fake.waitFor((f) => f.responses.find((r) => r.id === 'redis-down'), 15000);
    expect(reply.response_type).toBe('ephemeral');
    expect(reply.text).toMatch(/unreachable.*Nothing was queued/);

    // The bot still answers what needs no queue.
    expect((await h.slash('clusters')).json).toMatchObject({ response_type: 'ephemeral' });

    redis = await startRedis(port);
    // The queue and worker reconnect by themselves (ioredis backs off up to a few
    // seconds, BullMQ's worker up to 20 s): within a minute a request goes through.
    const deadline = Date.now() + 60000;
    const tries: string[] = [];
    while (h.fake.messages().length === 0 && Date.now() < deadline) {
      const t0 = Date.now();
      const rurl = h.fake.responseUrl();
      const r = await h.slash('status lab', { responseUrl: rurl });
      await new Promise((res2) => setTimeout(res2, 2000));
      const said = h.fake.responses.find((x) => rurl.endsWith(`/${x.id}`));
      tries.push(`+${t0 - deadline + 60000}ms ${r.status} in ${Date.now() - t0}ms: ${said?.text?.slice(0, 300) ?? '(no follow-up: queued)'}`);
    }
    if (h.fake.messages().length === 0) {
      const w = h.medic.worker?.worker;
      throw new Error(`no status message after Redis came back.\n${tries.join('\n')}\nworker running=${w?.isRunning()} paused=${w?.isPaused()}\n${h.fake.describe()}`);
    }
    const msg = await h.nextMessage(/etcd status — lab/, 60000);
    expect(msg.blocks).toContain('healthy');
  });
});
