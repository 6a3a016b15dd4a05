/**
 * The Slack adapter against the fake Slack and a fake engine (recording calls): signed
 * slash commands in, acks / response_url follow-ups / chat.postMessage out.
 */
import { createSlackApp, RESPONSE_URL_TTL_MS, responseUrlAgeMs, stampResponseUrl, type LoggerLike, type SlackApp } from '../src/adapters/slack/app';
import { renderReport } from '../src/adapters/slack/blocks';
import { MedicError } from '../src/engine/errors';
import type { Report } from '../src/engine/report';
import type { Decision, DecisionResult, EngineApi, Invocation, JobRequest, Prepared, Submitted } from '../src/engine/types';
import { FakeSlack } from './support/fake-slack';
import { blockActionsPayload, signedInteraction, signedSlashCommand, type SlashCommandFields } from './support/slack-sign';

const SIGNING_SECRET = 'test-signing-secret';

/** Answers by the first word of the command; records every call. */
class FakeEngine implements EngineApi {
  readonly prepared: Invocation[] = [];
  readonly enqueued: JobRequest[] = [];
  readonly decided: Decision[] = [];
  enqueueError?: unknown;

  /** Refuses another workspace's click as the workflow does (both teams known and different). */
  async decide(d: Decision): Promise<DecisionResult> {
    this.decided.push(d);
    if (d.origin.adapter === 'slack' && d.origin.team && d.origin.team !== 'T0MEDIC01') {
      return { ok: false, text: `:no_entry: plan ${d.planId} belongs to another workspace. Nothing changed.` };
    }
    return { ok: true, text: `you approved plan ${d.planId}: it runs now` };
  }

  prepare(inv: Invocation): Prepared {
    this.prepared.push(inv);
    const [word, cluster = 'lab'] = inv.text.split(/\s+/);
    switch (word) {
      case 'status':
        return {
          kind: 'job',
          summary: `status of ${cluster}`,
          job: { command: 'status', args: { cluster }, cluster, origin: inv.origin, requestedAt: new Date().toISOString() },
        };
      case 'help':
        return { kind: 'reply', visibility: cluster === 'public' ? 'channel' : 'ephemeral', report: { title: 'etcd-medic help', notes: ['/etcd status <cluster>'] } };
      case 'explode':
        throw new Error('engine bug: boom');
      default:
        return { kind: 'rejected', code: 'UNKNOWN_COMMAND', message: `Unknown command "${word}": try /etcd help` };
    }
  }

  async enqueue(job: JobRequest): Promise<string> {
    this.enqueued.push(job);
    if (this.enqueueError) throw this.enqueueError;
    return `job-${this.enqueued.length}`;
  }

  async submit(): Promise<Submitted> {
    throw new Error('the Slack adapter must not call submit()');
  }
}

function quietLogger(): LoggerLike & { lines: string[] } {
  const lines: string[] = [];
  const log = (level: string) => (...args: unknown[]) => {
    lines.push(`${level} ${args.map((a) => (a instanceof Error ? a.message : String(a))).join(' ')}`);
  };
  return { lines, debug() {}, info: log('info'), warn: log('warn'), error: log('error') };
}

async function until(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('Slack adapter', () => {
  const fake = new FakeSlack();
  const engine = new FakeEngine();
  const logger = quietLogger();
  let slack: SlackApp;
  let url: string;
  let seq = 0;

  const command = (text: string, extra: Partial<SlashCommandFields> = {}) => {
    seq += 1;
    return {
      url,
      signingSecret: SIGNING_SECRET,
      fields: {
        command: '/etcd',
        text,
        user_id: 'U0ALICE',
        channel_id: 'C0INCIDENT',
        team_id: 'T0MEDIC01',
        response_url: fake.responseUrl(`cmd${seq}`),
        ...extra,
      },
    };
  };

  beforeAll(async () => {
    await fake.start();
    slack = createSlackApp({
      engine,
      signingSecret: SIGNING_SECRET,
      botToken: fake.token,
      slackApiUrl: fake.url,
      port: 0,
      host: '127.0.0.1',
      webClientRetries: 0,
      logger,
    });
    await slack.start();
    url = slack.address()!.url;
  });

  afterAll(async () => {
    await slack.stop();
    await fake.stop();
  });

  beforeEach(() => {
    engine.prepared.length = 0;
    engine.enqueued.length = 0;
    engine.decided.length = 0;
    engine.enqueueError = undefined;
  });

  it('verified the bot token with auth.test when it started', () => {
    expect(fake.callsTo('auth.test')).toHaveLength(1);
    expect(fake.callsTo('auth.test')[0].response.ok).toBe(true);
  });

  it('acks a job at once, then enqueues it exactly once', async () => {
    const req = command('status lab');
    const res = await signedSlashCommand(req);
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ response_type: 'ephemeral', text: '⏳ status of lab: on it…' });
    await until(() => engine.enqueued.length === 1);
    await new Promise((r) => setTimeout(r, 50)); // and no second one
    expect(engine.enqueued).toHaveLength(1);
    expect(engine.enqueued[0]).toMatchObject({ command: 'status', cluster: 'lab' });
    const escaped = req.fields.response_url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    expect(engine.prepared).toEqual([{
      text: 'status lab',
      origin: {
        adapter: 'slack', channel: 'C0INCIDENT', user: 'U0ALICE', team: 'T0MEDIC01',
        responseUrl: expect.stringMatching(new RegExp(`^${escaped}#medic-issued-at=\\d+$`)),
      },
    }]);
    // The job keeps when Slack issued its response_url, for whoever delivers the result.
    const age = responseUrlAgeMs((engine.prepared[0].origin as { responseUrl: string }).responseUrl)!;
    expect(age).toBeGreaterThanOrEqual(0);
    expect(age).toBeLessThan(10_000);
  });

  it('answers 401 to a bad signature and never reaches the engine', async () => {
    const res = await signedSlashCommand({ ...command('status lab'), badSignature: true });
    expect(res.status).toBe(401);
    await new Promise((r) => setTimeout(r, 50));
    expect(engine.prepared).toHaveLength(0);
    expect(engine.enqueued).toHaveLength(0);
  });

  it('answers 401 to a replayed request (timestamp 6 minutes old)', async () => {
    const res = await signedSlashCommand({ ...command('status lab'), timestamp: Math.floor(Date.now() / 1000) - 6 * 60 });
    expect(res.status).toBe(401);
    await new Promise((r) => setTimeout(r, 50));
    expect(engine.prepared).toHaveLength(0);
    expect(engine.enqueued).toHaveLength(0);
  });

  it('answers a rejected command privately in the HTTP response, enqueuing nothing', async () => {
    const res = await signedSlashCommand(command('frobnicate <lab>'));
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ response_type: 'ephemeral', text: 'Unknown command "frobnicate": try /etcd help' });
    expect(engine.prepared).toHaveLength(1);
    expect(engine.enqueued).toHaveLength(0);
  });

  it('renders a reply as the ack, in the channel when the engine says so', async () => {
    const priv = await signedSlashCommand(command('help'));
    expect(priv.json).toMatchObject({ response_type: 'ephemeral', ...renderReport({ title: 'etcd-medic help', notes: ['/etcd status <cluster>'] }) });
    const pub = await signedSlashCommand(command('help public'));
    expect(pub.json).toMatchObject({ response_type: 'in_channel' });
    expect(engine.enqueued).toHaveLength(0);
  });

  it('tells the requester through the response_url when the queue is down', async () => {
    // The engine's QUEUE_UNAVAILABLE message says what is down and what to do; the adapter relays it.
    engine.enqueueError = new MedicError('QUEUE_UNAVAILABLE', 'Redis at 127.0.0.1:6399 is unreachable. Nothing was queued and nothing ran. Check Redis, then try again', true);
    const req = command('status lab');
    const res = await signedSlashCommand(req);
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ response_type: 'ephemeral' });
    const id = req.fields.response_url.split('/').pop();
    const follow = await fake.waitFor((f) => f.responses.find((r) => r.id === id));
    expect(follow.status).toBe(200);
    expect(follow.response_type).toBe('ephemeral');
    expect(follow.text).toContain('Could not queue status of lab');
    expect(follow.text).toContain('Redis at 127.0.0.1:6399 is unreachable');
    expect(follow.text).toMatch(/Nothing was queued and nothing ran\. Check Redis, then try again/);
  });

  it('falls back to chat.postEphemeral when the response_url is used up', async () => {
    engine.enqueueError = new MedicError('QUEUE_UNAVAILABLE', 'Redis down', true);
    const req = command('status lab');
    const id = req.fields.response_url.split('/').pop()!;
    for (let i = 0; i < 5; i++) {
      await fetch(req.fields.response_url, { method: 'POST', body: JSON.stringify({ text: `use ${i}` }) }).then((r) => r.text());
    }
    await signedSlashCommand(req);
    const eph = await fake.waitFor((f) => f.ephemerals('C0INCIDENT').find((m) => m.text?.includes('Redis down')));
    expect(eph.user).toBe('U0ALICE');
    expect(fake.responses.filter((r) => r.id === id).at(-1)?.status).toBe(404);
  });

  it('answers privately when the engine throws, and keeps serving', async () => {
    const res = await signedSlashCommand(command('explode'));
    expect(res.status).toBe(200);
    expect(res.json?.response_type).toBe('ephemeral');
    expect(String(res.json?.text)).toContain('engine bug: boom');
    expect(engine.enqueued).toHaveLength(0);

    const next = await signedSlashCommand(command('status lab'));
    expect(next.status).toBe(200);
    await until(() => engine.enqueued.length === 1);
  });

  describe('plan buttons', () => {
    let clicks = 0;
    /** A signed Approve click; resolves with the private answer (through the click's response_url). */
    const click = async (o: { teamId?: string; userTeamId?: string | null } = {}) => {
      const id = `click${++clicks}`;
      const res = await signedInteraction({
        url, signingSecret: SIGNING_SECRET,
        payload: blockActionsPayload({
          actionId: 'medic_approve', value: '17', userId: 'U0BOB', channelId: 'C0INCIDENT',
          teamId: o.teamId ?? 'T0MEDIC01', userTeamId: o.userTeamId, responseUrl: fake.responseUrl(id),
        }),
      });
      expect(res.status).toBe(200);
      return fake.waitFor((f) => f.responses.find((r) => r.id === id));
    };

    it('decides as the clicking user, with their own workspace (user.team_id)', async () => {
      const reply = await click();
      expect(reply.text).toBe('you approved plan 17: it runs now');
      expect(engine.decided).toEqual([expect.objectContaining({
        action: 'approve', planId: '17',
        origin: { adapter: 'slack', channel: 'C0INCIDENT', user: 'U0BOB', team: 'T0MEDIC01' },
      })]);
    });

    it('takes the team from user.team_id, not from the workspace the click came through', async () => {
      // A Slack Connect guest: the payload's team is the host, the user belongs elsewhere.
      const reply = await click({ teamId: 'T0MEDIC01', userTeamId: 'T0OTHER01' });
      expect(engine.decided[0].origin).toMatchObject({ team: 'T0OTHER01' });
      expect(reply.text).toContain('belongs to another workspace');
    });

    it.each([
      ['missing', null],
      ['malformed', 'x;rm'],
    ])('refuses a click whose user.team_id is %s, privately, and decides nothing', async (_what, userTeamId) => {
      const reply = await click({ userTeamId });
      expect(reply).toMatchObject({ status: 200, response_type: 'ephemeral' });
      expect(reply.text).toMatch(/your approve of plan 17 was refused: Slack did not say which workspace you belong to \(user\.team_id\).*Nothing changed/);
      expect(engine.decided).toHaveLength(0);
    });
  });

  describe('notifier', () => {
    const report: Report = {
      title: 'etcd status — lab',
      verdict: { level: 'ok', text: 'healthy: 3/3 members' },
      tables: [{ columns: ['name', 'status'], rows: [['node1', 'up'], ['node2', 'up'], ['node3', 'up']] }],
      context: ['job job-7'],
    };

    it('posts a finished job report to the origin channel', async () => {
      await slack.notifier.deliver({ adapter: 'slack', channel: 'C0REPORT', user: 'U0ALICE' }, report, { jobId: 'job-7' });
      const [message] = fake.messages('C0REPORT');
      const rendered = renderReport(report);
      expect(message).toMatchObject({ ephemeral: false, text: rendered.text, blocks: rendered.blocks });
      expect(message.text).toContain('node3');
    });

    it('ignores origins of other adapters', async () => {
      const before = fake.calls.length;
      await slack.notifier.deliver({ adapter: 'console', channel: 'console', user: 'console:bob' }, report, { jobId: 'job-8' });
      expect(fake.calls.length).toBe(before);
    });

    it('uses the response_url when the bot is not in the channel', async () => {
      fake.failNext('chat.postMessage', { error: 'not_in_channel' });
      const responseUrl = stampResponseUrl(fake.responseUrl('private-channel'), Date.now() - 20 * 60_000);
      await slack.notifier.deliver({ adapter: 'slack', channel: 'G0PRIVATE', user: 'U0ALICE', responseUrl }, report, { jobId: 'job-9' });
      const r = fake.responses.find((x) => x.id === 'private-channel');
      expect(r).toMatchObject({ status: 200, response_type: 'in_channel', text: renderReport(report).text });
    });

    it.each([
      ['issued more than 30 minutes ago', (url: string) => stampResponseUrl(url, Date.now() - RESPONSE_URL_TTL_MS - 60_000), /issued 31 min ago and Slack honours one for 30: dropped/],
      ['a minute short of 30 (clocks differ between hosts)', (url: string) => stampResponseUrl(url, Date.now() - RESPONSE_URL_TTL_MS + 30_000), /issued 30 min ago and Slack honours one for 30: dropped/],
      ['without an issue time', (url: string) => url, /carries no issue time, so it may have expired: dropped/],
      ['issued in the future', (url: string) => stampResponseUrl(url, Date.now() + 3_600_000), /issued in the future/],
    ])('drops a response_url %s: says so in the log and posts nothing to it', async (what, stamp, logged) => {
      const id = `old-${what.replace(/\W+/g, '-')}`.slice(0, 40);
      fake.failNext('chat.postMessage', { error: 'not_in_channel' });
      const before = logger.lines.length;
      await expect(slack.notifier.deliver({ adapter: 'slack', channel: 'G0PRIVATE', user: 'U0ALICE', responseUrl: stamp(fake.responseUrl(id)) }, report, { jobId: 'job-12' }))
        .rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringMatching(/job-12.*G0PRIVATE.*not_in_channel.*Invite the bot/) });
      expect(logger.lines.slice(before).join('\n')).toMatch(logged);
      await new Promise((r) => setTimeout(r, 50));
      expect(fake.responses.filter((r) => r.id === id)).toHaveLength(0);
    });

    it('posts the text fallback when Slack refuses the blocks', async () => {
      fake.failNext('chat.postMessage', { error: 'msg_blocks_too_long' });
      await slack.notifier.deliver({ adapter: 'slack', channel: 'C0BLOCKS', user: 'U0ALICE' }, report, { jobId: 'job-11' });
      const [message] = fake.messages('C0BLOCKS');
      expect(message.text).toBe(renderReport(report).text);
      expect(message.blocks).toBeUndefined();
    });

    it('throws a clear, non-retryable error when Slack refuses the message', async () => {
      fake.failNext('chat.postMessage', { error: 'channel_not_found' });
      await expect(slack.notifier.deliver({ adapter: 'slack', channel: 'C0GONE', user: 'U0ALICE' }, report, { jobId: 'job-10' }))
        .rejects.toMatchObject({ name: 'MedicError', code: 'INTERNAL', retryable: false, message: expect.stringMatching(/job-10.*C0GONE.*channel_not_found.*Invite the bot/) });
    });
  });

  it('builds a Socket Mode app without a signing secret or a port to serve', async () => {
    const socket = createSlackApp({
      engine, signingSecret: '', botToken: fake.token, slackApiUrl: fake.url, port: 0,
      socketMode: { appToken: 'xapp-1-test' }, webClientRetries: 0, logger,
    });
    expect(socket.address()).toBeUndefined();
    await socket.stop(); // not started: nothing to do
  });

  it('fails start() with a clear error when Slack rejects the bot token', async () => {
    const bad = createSlackApp({
      engine, signingSecret: SIGNING_SECRET, botToken: 'xoxb-revoked', slackApiUrl: fake.url, port: 0, host: '127.0.0.1',
      webClientRetries: 0, logger,
    });
    await expect(bad.start()).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('invalid_auth') });
    expect(bad.address()).toBeUndefined();
    await bad.stop();
  });
});
