/**
 * What the bot exposes to Prometheus and to probes of a deployment: the series and their
 * labels, /healthz and /readyz (with the reason when not ready), and Slack Web API
 * failures and 429s counted from a real WebClient against the fake Slack.
 */
import { WebClient } from '@slack/web-api';
import { createMetrics } from '../src/metrics/metrics';
import { startOpsServer, OpsServer } from '../src/metrics/ops-server';
import { observeWebClient, slackErrorLabel } from '../src/adapters/slack/observe';
import { readSettings } from '../src/settings';
import { FakeSlack } from './support/fake-slack';

/** The value of one series in exposition text, or undefined when it is absent. */
function value(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    const m = /^([a-z_:]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] ?? '').split(',');
    if (want.every((w) => have.includes(w))) return Number(m[3]);
  }
  return undefined;
}

describe('metrics', () => {
  it('counts requests, jobs, steps, approvals, probes, lease losses and Slack failures, with bounded labels', async () => {
    const m = createMetrics({ processMetrics: false, queueDepth: async () => ({ waiting: 2, active: 1 }) });
    m.request('status', 'queued');
    m.request('status', 'queued');
    m.request('-', 'refused');
    m.job('replace-member', 'succeeded');
    m.step('etcd.memberAdd', 'done', 0.3);
    m.step('etcd.memberAdd', 'done', 12);
    m.step('node.stopEtcd', 'failed', 1);
    m.approvalWait('replace-member', 40);
    m.probeNode('lab', 'node3', false, 2.5);
    m.verdict('lab', 'degraded');
    m.verdict('lab', 'healthy');
    m.slackError('chat.postMessage', 'channel_not_found');
    m.slackRateLimited('chat.update');
    m.leaseLost('lab');
    const t = await m.text();
    expect(value(t, 'medic_requests_total', { command: 'status', outcome: 'queued' })).toBe(2);
    expect(value(t, 'medic_requests_total', { command: '-', outcome: 'refused' })).toBe(1);
    expect(value(t, 'medic_jobs_total', { command: 'replace-member', outcome: 'succeeded' })).toBe(1);
    expect(value(t, 'medic_step_duration_seconds_count', { action: 'etcd.memberAdd', outcome: 'done' })).toBe(2);
    expect(value(t, 'medic_step_duration_seconds_sum', { action: 'etcd.memberAdd', outcome: 'done' })).toBeCloseTo(12.3);
    expect(value(t, 'medic_step_duration_seconds_bucket', { action: 'etcd.memberAdd', outcome: 'done', le: '0.5' })).toBe(1);
    expect(value(t, 'medic_step_duration_seconds_count', { action: 'node.stopEtcd', outcome: 'failed' })).toBe(1);
    expect(value(t, 'medic_approval_wait_seconds_sum', { command: 'replace-member' })).toBe(40);
    expect(value(t, 'medic_probe_duration_seconds_count', { cluster: 'lab', node: 'node3', result: 'unreachable' })).toBe(1);
    // One verdict at a time per cluster: the latest.
    expect(value(t, 'medic_cluster_verdict', { cluster: 'lab', verdict: 'healthy' })).toBe(1);
    expect(value(t, 'medic_cluster_verdict', { cluster: 'lab', verdict: 'degraded' })).toBe(0);
    expect(value(t, 'medic_slack_api_errors_total', { method: 'chat.postMessage', error: 'channel_not_found' })).toBe(1);
    expect(value(t, 'medic_slack_rate_limited_total', { method: 'chat.update' })).toBe(1);
    expect(value(t, 'medic_lease_lost_total', { cluster: 'lab' })).toBe(1);
    expect(value(t, 'medic_queue_jobs', { state: 'waiting' })).toBe(2);
  });

  it('kept SSH connections are read at each scrape', async () => {
    let n = 3;
    const m = createMetrics({ processMetrics: false, keptConnections: () => n });
    expect(value(await m.text(), 'medic_ssh_kept_connections', {})).toBe(3);
    n = 0;
    expect(value(await m.text(), 'medic_ssh_kept_connections', {})).toBe(0);
  });

  it('a scrape while Redis is down still answers, without the queue series', async () => {
    const m = createMetrics({ processMetrics: false, queueDepth: async () => { throw new Error('connect ECONNREFUSED'); } });
    m.request('status', 'queued');
    const t = await m.text();
    expect(t).not.toMatch(/^medic_queue_jobs\{/m);
    expect(value(t, 'medic_requests_total', { command: 'status', outcome: 'queued' })).toBe(1);
  });
});

describe('ops endpoint', () => {
  let ops: OpsServer | undefined;
  afterEach(async () => { await ops?.close(); ops = undefined; });

  it('/healthz answers; /readyz says which check fails and why (a hanging one within its bound); /metrics serves the text format', async () => {
    const metrics = createMetrics({ processMetrics: false });
    metrics.request('status', 'queued');
    let redisUp = true;
    ops = await startOpsServer({
      metrics, port: 0, host: '127.0.0.1', checkTimeoutMs: 300,
      checks: [
        { name: 'redis', check: async () => (redisUp ? undefined : 'Redis did not answer PONG') },
        { name: 'worker', check: async () => undefined },
      ],
    });
    const health = await fetch(`${ops.url}/healthz`);
    expect(health.status).toBe(200);
    const ready = await fetch(`${ops.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toBe('ok redis\nok worker\n');
    redisUp = false;
    const notReady = await fetch(`${ops.url}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.text()).toContain('not ready redis: Redis did not answer PONG');
    const res = await fetch(`${ops.url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(value(await res.text(), 'medic_requests_total', { command: 'status', outcome: 'queued' })).toBe(1);
    expect((await fetch(`${ops.url}/slack/events`)).status).toBe(404);
    expect((await fetch(`${ops.url}/metrics`, { method: 'POST' })).status).toBe(405);
  });

  it('a readiness check that never answers makes /readyz 503 within its bound', async () => {
    ops = await startOpsServer({
      metrics: createMetrics({ processMetrics: false }), port: 0, host: '127.0.0.1', checkTimeoutMs: 200,
      checks: [{ name: 'redis', check: () => new Promise(() => undefined) }],
    });
    const r = await fetch(`${ops.url}/readyz`);
    expect(r.status).toBe(503);
    expect(await r.text()).toContain('not ready redis: no answer within 200 ms');
  });
});

describe('Slack Web API failures, counted', () => {
  const fake = new FakeSlack();
  beforeAll(() => fake.start());
  afterAll(() => fake.stop());

  it('a 429 (retried after Retry-After), an error code and an HTTP 500 each land in their series', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const client = observeWebClient(new WebClient(fake.token, { slackApiUrl: fake.url, retryConfig: { retries: 1, minTimeout: 10, maxTimeout: 20 } }), metrics);
    fake.failNext('chat.postMessage', { status: 429, retryAfter: 0 });
    await client.chat.postMessage({ channel: 'CLAB00001', text: 'after a 429' });
    fake.failNext('chat.postMessage', { error: 'channel_not_found' });
    await expect(client.chat.postMessage({ channel: 'CLAB00001', text: 'x' })).rejects.toThrow(/channel_not_found/);
    // Retried once, failed both times: one failure counted (the call's, not each attempt's).
    fake.failNext('chat.update', { status: 500 }, { status: 500 });
    await expect(client.chat.update({ channel: 'CLAB00001', ts: '1.2', text: 'x' })).rejects.toThrow();
    const t = await metrics.text();
    expect(value(t, 'medic_slack_rate_limited_total', { method: 'chat.postMessage' })).toBe(1);
    expect(value(t, 'medic_slack_api_errors_total', { method: 'chat.postMessage', error: 'channel_not_found' })).toBe(1);
    expect(value(t, 'medic_slack_api_errors_total', { method: 'chat.update', error: 'http_500' })).toBe(1);
    expect(fake.messages('CLAB00001').map((x) => x.text)).toContain('after a 429');
  });

  it('labels what it can tell of an error, and nothing unbounded', () => {
    expect(slackErrorLabel({ data: { error: 'not_in_channel' } })).toBe('not_in_channel');
    expect(slackErrorLabel({ statusCode: 503 })).toBe('http_503');
    expect(slackErrorLabel({ code: 'slack_webapi_request_error' })).toBe('slack_webapi_request_error');
    expect(slackErrorLabel('boom')).toBe('unknown');
  });
});

describe('MEDIC_METRICS_PORT', () => {
  const base = { MEDIC_ROLE: 'worker', MEDIC_SSH_KEY: 'k' };
  it('unset: not served; set: port and host; bad or equal to the Slack port: refused at start', () => {
    expect(readSettings(base).ops).toBeUndefined();
    expect(readSettings({ ...base, MEDIC_METRICS_PORT: '9464' }).ops).toEqual({ port: 9464, host: '0.0.0.0' });
    expect(readSettings({ ...base, MEDIC_METRICS_PORT: '0', MEDIC_METRICS_HOST: '127.0.0.1' }).ops).toEqual({ port: 0, host: '127.0.0.1' });
    expect(() => readSettings({ ...base, MEDIC_METRICS_PORT: 'x' })).toThrow(/MEDIC_METRICS_PORT=x: not a port number/);
    const web = { MEDIC_ROLE: 'web', SLACK_BOT_TOKEN: 'xoxb-1', SLACK_SIGNING_SECRET: 's', PORT: '3000' };
    expect(() => readSettings({ ...web, MEDIC_METRICS_PORT: '3000' })).toThrow(/is PORT, where Slack requests are served/);
  });
});
