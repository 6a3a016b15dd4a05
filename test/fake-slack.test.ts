import { WebClient } from '@slack/web-api';
import { FakeSlack } from './support/fake-slack';

/** A WebClient as the adapter builds one: form-encoded bodies, blocks as JSON strings. */
function client(fake: FakeSlack, token = fake.token, retries = 0): WebClient {
  return new WebClient(token, {
    slackApiUrl: fake.url,
    retryConfig: { retries, minTimeout: 10, maxTimeout: 50 },
    logger: { debug() {}, info() {}, warn() {}, error() {}, setLevel() {}, getLevel: () => 'error' as never, setName() {} },
  });
}

async function post(fake: FakeSlack, method: string, body: string | object, headers: Record<string, string> = {}) {
  const json = typeof body !== 'string';
  const res = await fetch(`${fake.url}${method}`, {
    method: 'POST',
    headers: {
      'content-type': json ? 'application/json; charset=utf-8' : 'application/x-www-form-urlencoded',
      authorization: `Bearer ${fake.token}`,
      ...headers,
    },
    body: json ? JSON.stringify(body) : body,
  });
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
}

const section = (text: string) => ({ type: 'section', text: { type: 'mrkdwn', text } });

/** The Slack error code of a rejected WebClient call. */
async function slackError(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as { data?: { error?: string } }).data?.error ?? `not a platform error: ${String(e)}`;
  }
  return 'no error';
}

describe('FakeSlack', () => {
  const fake = new FakeSlack();
  let web: WebClient;

  beforeAll(async () => {
    await fake.start();
    web = client(fake);
  });
  afterAll(() => fake.stop());

  it('answers auth.test with the bot identity', async () => {
    const r = await web.auth.test();
    expect(r).toMatchObject({ ok: true, team_id: 'T0MEDIC01', user_id: 'U0MEDICBOT', bot_id: 'B0MEDICBOT' });
    expect(typeof r.url).toBe('string');
  });

  it('rejects a wrong or missing token', async () => {
    expect(await slackError(client(fake, 'xoxb-wrong').auth.test())).toBe('invalid_auth');
    const noToken = await fetch(`${fake.url}auth.test`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
    expect(await noToken.json()).toEqual({ ok: false, error: 'not_authed' });
    const tokenField = await post(fake, 'auth.test', `token=${fake.token}`, { authorization: '' });
    expect(tokenField.json.ok).toBe(true);
  });

  it('posts messages with unique, increasing ts and records parsed blocks', async () => {
    const blocks = [section('hello *world*')];
    const tss: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await web.chat.postMessage({ channel: 'C0ORDER', text: `m${i}`, blocks });
      expect(r.ok).toBe(true);
      expect(r.ts).toMatch(/^\d{10}\.\d{6}$/);
      tss.push(r.ts!);
    }
    expect(new Set(tss).size).toBe(5);
    expect([...tss].sort((a, b) => Number(a) - Number(b))).toEqual(tss);
    const calls = fake.callsTo('chat.postMessage').filter((c) => c.body.channel === 'C0ORDER');
    expect(calls[0].contentType).toBe('application/x-www-form-urlencoded');
    expect(calls[0].body.blocks).toEqual(blocks); // form field JSON string parsed back
    expect(fake.messages('C0ORDER').map((m) => m.text)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
  });

  it('accepts JSON bodies with a Bearer token', async () => {
    const r = await post(fake, 'chat.postMessage', { channel: 'C0JSON', blocks: [section('json')] });
    expect(r.json).toMatchObject({ ok: true, channel: 'C0JSON' });
    expect(fake.messages('C0JSON')[0].blocks).toEqual([section('json')]);
  });

  it('requires a channel that exists and text or blocks', async () => {
    expect(await slackError(web.chat.postMessage({ channel: 'general', text: 'x' }))).toBe('channel_not_found');
    expect(await slackError(web.chat.postMessage({ channel: 'C0X' } as never))).toBe('no_text');
    const strict = new FakeSlack({ channels: ['C0ONLY'] });
    await strict.start();
    try {
      const c = client(strict);
      expect((await c.chat.postMessage({ channel: 'C0ONLY', text: 'x' })).ok).toBe(true);
      expect(await slackError(c.chat.postMessage({ channel: 'C0OTHER', text: 'x' }))).toBe('channel_not_found');
    } finally {
      await strict.stop();
    }
  });

  it.each([
    ['more than 50 blocks', Array.from({ length: 51 }, () => section('x'))],
    ['a header over 150 chars', [{ type: 'header', text: { type: 'plain_text', text: 'h'.repeat(151) } }]],
    ['a mrkdwn header', [{ type: 'header', text: { type: 'mrkdwn', text: 'h' } }]],
    ['section text over 3000 chars', [section('s'.repeat(3001))]],
    ['empty section text', [section('')]],
    ['a section without text or fields', [{ type: 'section' }]],
    ['11 fields', [{ type: 'section', fields: Array.from({ length: 11 }, () => ({ type: 'mrkdwn', text: 'f' })) }]],
    ['a field over 2000 chars', [{ type: 'section', fields: [{ type: 'mrkdwn', text: 'f'.repeat(2001) }] }]],
    ['11 context elements', [{ type: 'context', elements: Array.from({ length: 11 }, () => ({ type: 'mrkdwn', text: 'c' })) }]],
    ['button text over 75 chars', [{ type: 'actions', elements: [{ type: 'button', text: { type: 'plain_text', text: 'b'.repeat(76) }, action_id: 'a' }] }]],
    ['button value over 2000 chars', [{ type: 'actions', elements: [{ type: 'button', text: { type: 'plain_text', text: 'b' }, action_id: 'a', value: 'v'.repeat(2001) }] }]],
    ['action_id over 255 chars', [{ type: 'actions', elements: [{ type: 'button', text: { type: 'plain_text', text: 'b' }, action_id: 'a'.repeat(256) }] }]],
    ['an unknown block type', [{ type: 'banner', text: 'x' }]],
    ['two table blocks', [{ type: 'table', rows: [] }, { type: 'table', rows: [] }]],
  ])('answers invalid_blocks for %s', async (_name, blocks) => {
    const r = await post(fake, 'chat.postMessage', { channel: 'C0LIMITS', text: 'fallback', blocks });
    expect(r.json).toMatchObject({ ok: false, error: 'invalid_blocks' });
    expect((r.json.errors as string[])[0]).toMatch(/json-pointer:\/blocks/);
  });

  it('accepts blocks exactly at the limits', async () => {
    const blocks = [
      { type: 'header', text: { type: 'plain_text', text: 'h'.repeat(150) } },
      section('s'.repeat(3000)),
      { type: 'section', fields: Array.from({ length: 10 }, () => ({ type: 'mrkdwn', text: 'f'.repeat(2000) })) },
      { type: 'actions', elements: [{ type: 'button', text: { type: 'plain_text', text: 'b'.repeat(75) }, action_id: 'a'.repeat(255), value: 'v'.repeat(2000) }] },
      ...Array.from({ length: 46 }, () => ({ type: 'divider' })),
    ];
    expect(blocks).toHaveLength(50);
    expect((await web.chat.postMessage({ channel: 'C0LIMITS', text: 'x', blocks: blocks as never })).ok).toBe(true);
  });

  it('answers invalid_blocks for blocks that are not JSON', async () => {
    const r = await post(fake, 'chat.postMessage', new URLSearchParams({ channel: 'C0BAD', blocks: '[{"type":' }).toString());
    expect(r.json).toMatchObject({ ok: false, error: 'invalid_blocks' });
  });

  it('answers msg_too_long for text over 40,000 chars', async () => {
    expect(await slackError(web.chat.postMessage({ channel: 'C0LONG', text: 'x'.repeat(40_001) }))).toBe('msg_too_long');
    expect((await web.chat.postMessage({ channel: 'C0LONG', text: 'x'.repeat(40_000) })).ok).toBe(true);
  });

  it('answers unknown_method for methods it does not implement', async () => {
    const r = await post(fake, 'chat.scheduleMessage', new URLSearchParams({ channel: 'C0X', text: 'x' }).toString());
    expect(r.json).toEqual({ ok: false, error: 'unknown_method', req_method: 'chat.scheduleMessage' });
  });

  it('updates posted messages but not ephemeral ones', async () => {
    const posted = await web.chat.postMessage({ channel: 'C0UPD', text: 'running' });
    const updated = await web.chat.update({ channel: 'C0UPD', ts: posted.ts!, text: 'done', blocks: [section('done')] });
    expect(updated).toMatchObject({ ok: true, channel: 'C0UPD', ts: posted.ts, text: 'done' });
    expect(fake.messages('C0UPD')).toEqual([expect.objectContaining({ text: 'done', blocks: [section('done')], edits: 1 })]);

    const eph = await web.chat.postEphemeral({ channel: 'C0UPD', user: 'U0ALICE', text: 'only you' });
    expect(eph.ok).toBe(true);
    expect(fake.ephemerals('C0UPD')).toEqual([expect.objectContaining({ user: 'U0ALICE', text: 'only you' })]);
    expect(await slackError(web.chat.update({ channel: 'C0UPD', ts: eph.message_ts!, text: 'x' }))).toBe('message_not_found');
    expect(await slackError(web.chat.update({ channel: 'C0UPD', ts: '1.000001', text: 'x' }))).toBe('message_not_found');
  });

  it('threads replies under an existing parent only', async () => {
    const parent = await web.chat.postMessage({ channel: 'C0THR', text: 'plan' });
    expect((await web.chat.postMessage({ channel: 'C0THR', text: 'step 1', thread_ts: parent.ts! })).ok).toBe(true);
    expect(await slackError(web.chat.postMessage({ channel: 'C0THR', text: 'x', thread_ts: '1.000002' }))).toBe('thread_not_found');
    expect(fake.messages('C0THR')[1].thread_ts).toBe(parent.ts);
  });

  it('fails calls on request (failNext)', async () => {
    fake.failNext('chat.postMessage', { error: 'not_in_channel' });
    expect(await slackError(web.chat.postMessage({ channel: 'C0FAIL', text: 'x' }))).toBe('not_in_channel');
    expect((await web.chat.postMessage({ channel: 'C0FAIL', text: 'x' })).ok).toBe(true);
  });

  it('accepts a response_url 5 times, then answers used_url', async () => {
    const url = fake.responseUrl('five');
    for (let i = 0; i < 5; i++) {
      const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ response_type: 'ephemeral', text: `r${i}` }) });
      expect(r.status).toBe(200);
      await r.text();
    }
    const sixth = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: 'r5' }) });
    expect(sixth.status).toBe(404);
    expect(await sixth.text()).toBe('used_url');
    const mine = fake.responses.filter((r) => r.id === 'five');
    expect(mine.map((r) => [r.text, r.status])).toEqual([['r0', 200], ['r1', 200], ['r2', 200], ['r3', 200], ['r4', 200], ['r5', 404]]);
    expect(mine[0].response_type).toBe('ephemeral');
  });

  it('rejects response_urls it never issued, expired ones and bad blocks', async () => {
    const unknown = await fetch(`${fake.url.replace('/api/', '')}/response/never-minted`, { method: 'POST', body: '{"text":"x"}' });
    expect(unknown.status).toBe(404);
    await unknown.text();

    const expiring = new FakeSlack({ responseUrlTtlMs: 0 });
    await expiring.start();
    try {
      const url = expiring.responseUrl('old');
      await new Promise((r) => setTimeout(r, 5));
      const r = await fetch(url, { method: 'POST', body: '{"text":"late"}' });
      expect([r.status, await r.text()]).toEqual([404, 'expired_url']);
    } finally {
      await expiring.stop();
    }

    const bad = await fetch(fake.responseUrl('bad'), { method: 'POST', body: JSON.stringify({ blocks: [section('x'.repeat(3001))] }) });
    expect([bad.status, await bad.text()]).toEqual([400, 'invalid_blocks']);
  });

  it('waitFor resolves on arrival and rejects listing what did arrive', async () => {
    const waiting = fake.waitFor((f) => f.messages('C0WAIT')[0], 2000);
    await web.chat.postMessage({ channel: 'C0WAIT', text: 'arrived' });
    expect((await waiting).text).toBe('arrived');

    await expect(fake.waitFor((f) => f.messages('C0NEVER')[0], 50))
      .rejects.toThrow(/not met within 50 ms[\s\S]*chat\.postMessage .*C0WAIT/);
  });
});

describe('FakeSlack rate limit', () => {
  const fake = new FakeSlack({ rateLimit: { perSecond: 1, burst: 2 } });
  beforeAll(() => fake.start());
  afterAll(() => fake.stop());

  it('answers 429 with Retry-After once a channel bursts past its limit', async () => {
    const form = new URLSearchParams({ channel: 'C0BUSY', text: 'x' }).toString();
    expect((await post(fake, 'chat.postMessage', form)).status).toBe(200);
    expect((await post(fake, 'chat.postMessage', form)).status).toBe(200);
    const limited = await post(fake, 'chat.postMessage', form);
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('1');
    expect(limited.json).toEqual({ ok: false, error: 'ratelimited' });
    // Other channels have their own bucket.
    expect((await post(fake, 'chat.postMessage', new URLSearchParams({ channel: 'C0CALM', text: 'x' }).toString())).status).toBe(200);
  });

  it('is honoured by the WebClient, which waits Retry-After and retries', async () => {
    const web = client(fake, fake.token, 2);
    const channel = 'C0RETRY';
    await web.chat.postMessage({ channel, text: '1' });
    await web.chat.postMessage({ channel, text: '2' });
    const started = Date.now();
    const third = await web.chat.postMessage({ channel, text: '3' });
    expect(third.ok).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(fake.callsTo('chat.postMessage').filter((c) => c.body.channel === channel).map((c) => c.status)).toEqual([200, 200, 429, 200]);
  });
});
