import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { commands } from '../commands';
import { parseConfig } from '../src/config/load';
import { Engine } from '../src/engine/engine';
import type { JobRequest, Origin } from '../src/engine/types';
import { createJobQueue } from '../src/queue/queue';
import { renderText } from '../src/adapters/console/render-text';

const config = parseConfig(`
clusters:
  - name: prod-eu1
    channels: [C0PROD]
    access: { read: { requesters: ["*"] } }
    nodes:
      - { name: cp1, ssh: { host: 10.0.0.11, hostKey: "SHA256:${'A'.repeat(43)}" }, clientUrl: "https://10.0.0.11:2379", peerUrl: "https://10.0.0.11:2380" }
  - name: staging
    channels: [C0STAGE, console]
    access: { read: { requesters: [U0ALICE, S0SRE] } }
    nodes:
      - { name: st1, ssh: { host: 10.1.0.11, hostKey: "SHA256:${'B'.repeat(43)}" }, clientUrl: "https://10.1.0.11:2379", peerUrl: "https://10.1.0.11:2380" }
`);

function engineWithSink() {
  const added: JobRequest[] = [];
  const engine = new Engine({ config, commands, queue: { add: async (j) => { added.push(j); return String(added.length); } } });
  return { engine, added };
}
const slack = (channel: string, user = 'U0BOB', groups?: string[]): Origin => ({ adapter: 'slack', channel, user, groups });

describe('engine.prepare / submit', () => {
  it('queues a valid status request with the validated cluster', async () => {
    const { engine, added } = engineWithSink();
    const res = await engine.submit({ text: 'status prod-eu1', origin: slack('C0PROD') });
    expect(res).toMatchObject({ kind: 'queued', jobId: '1' });
    expect(added).toEqual([expect.objectContaining({ command: 'status', cluster: 'prod-eu1', args: { cluster: 'prod-eu1' } })]);
  });

  it('names the known clusters for an unknown one, and queues nothing', async () => {
    const { engine, added } = engineWithSink();
    const res = await engine.submit({ text: 'status prod-eu', origin: slack('C0PROD') });
    expect(res).toEqual({ kind: 'rejected', code: 'UNKNOWN_CLUSTER', message: "unknown cluster 'prod-eu': known clusters are prod-eu1, staging" });
    expect(added).toHaveLength(0);
  });

  it.each([
    ['shell metacharacters', 'status prod-eu1;reboot'],
    ['command substitution', 'status $(id)'],
    ['backticks', 'status `id`'],
    ['quotes and pipes', "status 'prod-eu1'|sh"],
    ['very long text', `status ${'a'.repeat(5000)}`],
    ['a long token', `status ${'a'.repeat(64)}`],
    ['odd unicode (RTL override)', 'status prod\u202Eeu1'],
    ['homoglyph cyrillic', 'status prоd-eu1'],
    ['newline injection', 'status prod-eu1\nrm -rf /'],
    ['NUL byte', 'status prod-eu1\u0000'],
    ['emoji', 'status 🔥'],
  ])('refuses %s with a clear error and queues nothing', async (_what, text) => {
    const { engine, added } = engineWithSink();
    const res = await engine.submit({ text, origin: slack('C0PROD') });
    expect(res.kind).toBe('rejected');
    if (res.kind !== 'rejected') return;
    expect(res.code).toBe('BAD_INPUT');
    expect(res.message).toMatch(/not allowed|at most/);
    expect(res.message.length).toBeLessThan(400);
    expect(added).toHaveLength(0);
  });

  it('refuses a channel not allowed for the cluster', async () => {
    const { engine, added } = engineWithSink();
    const res = await engine.submit({ text: 'status prod-eu1', origin: slack('C0RANDOM') });
    expect(res).toMatchObject({ kind: 'rejected', code: 'CHANNEL_NOT_ALLOWED' });
    expect((res as { message: string }).message).toContain('<#C0PROD>');
    expect(added).toHaveLength(0);
  });

  it('applies requester rules by user id and by user group', async () => {
    const { engine, added } = engineWithSink();
    expect(engine.prepare({ text: 'status staging', origin: slack('C0STAGE', 'U0BOB') })).toMatchObject({ kind: 'rejected', code: 'NOT_PERMITTED' });
    expect(engine.prepare({ text: 'status staging', origin: slack('C0STAGE', 'U0ALICE') }).kind).toBe('job');
    expect(engine.prepare({ text: 'status staging', origin: slack('C0STAGE', 'U0CAROL', ['S0SRE']) }).kind).toBe('job');
    expect(added).toHaveLength(0);
  });

  it('reports unknown commands and wrong arity with the usage', () => {
    const { engine } = engineWithSink();
    expect(engine.prepare({ text: 'statsu prod-eu1', origin: slack('C0PROD') })).toMatchObject({ kind: 'rejected', code: 'UNKNOWN_COMMAND' });
    const missing = engine.prepare({ text: 'status', origin: slack('C0PROD') });
    expect(missing).toMatchObject({ kind: 'rejected', message: 'missing <cluster>: usage /etcd status <cluster>; known clusters are prod-eu1, staging' });
    expect(engine.prepare({ text: 'status prod-eu1 cp1', origin: slack('C0PROD') })).toMatchObject({ kind: 'rejected', code: 'BAD_INPUT' });
  });

  it('answers help from the command definitions without the queue', () => {
    const { engine, added } = engineWithSink();
    const res = engine.prepare({ text: 'help', origin: slack('C0ANY') });
    expect(res.kind).toBe('reply');
    if (res.kind !== 'reply') return;
    const text = renderText(res.report);
    for (const c of commands) expect(text).toContain(c.summary);
    expect(text).toContain('/etcd status <cluster>');
    expect(added).toHaveLength(0);
    expect(engine.prepare({ text: '', origin: slack('C0ANY') }).kind).toBe('reply');
  });

  it('lists clusters with their nodes', () => {
    const { engine } = engineWithSink();
    const res = engine.prepare({ text: 'clusters', origin: slack('C0ANY') });
    expect(res.kind === 'reply' && renderText(res.report)).toMatch(/prod-eu1\s+cp1/);
  });

  it('tells the user when Redis is unreachable instead of hanging', async () => {
    const queue = createJobQueue({ redisUrl: 'redis://127.0.0.1:1', name: 'unreachable', addTimeoutMs: 500 });
    const engine = new Engine({ config, commands, queue });
    try {
      await expect(engine.submit({ text: 'status prod-eu1', origin: slack('C0PROD') })).rejects.toMatchObject({
        code: 'QUEUE_UNAVAILABLE',
        message: expect.stringMatching(/redis:\/\/127\.0\.0\.1:1\) is unreachable.*Nothing was queued/),
      });
      // help still works without Redis
      expect(engine.prepare({ text: 'help', origin: slack('C0PROD') }).kind).toBe('reply');
    } finally {
      await queue.close();
    }
  });

  it('reads "status all" (and "fleet") as one job over every cluster the requester may read from the channel', async () => {
    const { engine, added } = engineWithSink();
    // prod-eu1 is readable by anyone in C0PROD; staging is in other channels.
    expect(await engine.submit({ text: 'status all', origin: slack('C0PROD') })).toMatchObject({ kind: 'queued' });
    expect(await engine.submit({ text: 'fleet', origin: slack('C0PROD') })).toMatchObject({ kind: 'queued' });
    expect(added).toEqual([expect.objectContaining({ command: 'fleet', args: {}, phase: 'run' }), expect.objectContaining({ command: 'fleet' })]);
    expect(added[0].cluster).toBeUndefined();
    expect(engine.prepare({ text: 'status all', origin: slack('C0PROD') })).toMatchObject({ kind: 'job', summary: 'status of 1 cluster' });
    // staging's read rule lets U0ALICE in from the console channel.
    expect(engine.prepare({ text: 'status all', origin: { adapter: 'console', channel: 'console', user: 'U0ALICE' } })).toMatchObject({ kind: 'job', summary: 'status of 1 cluster' });
  });

  it('refuses "status all" where no cluster may be read, and queues nothing', async () => {
    const { engine, added } = engineWithSink();
    const res = await engine.submit({ text: 'status all', origin: slack('C0RANDOM') });
    expect(res).toMatchObject({ kind: 'rejected', code: 'CHANNEL_NOT_ALLOWED', message: expect.stringMatching(/none of the 2 configured clusters may be read by you from this channel/) });
    // In staging's channel, but not among its readers.
    expect(engine.prepare({ text: 'status all', origin: slack('C0STAGE', 'U0BOB') })).toMatchObject({ kind: 'rejected', code: 'CHANNEL_NOT_ALLOWED' });
    expect(engine.prepare({ text: 'status all extra', origin: slack('C0PROD') })).toMatchObject({ kind: 'rejected', code: 'BAD_INPUT' });
    expect(added).toHaveLength(0);
  });

  it('lists "status all" in help beside fleet', () => {
    const { engine } = engineWithSink();
    const res = engine.prepare({ text: 'help', origin: slack('C0ANY') });
    expect(res.kind === 'reply' && renderText(res.report)).toContain('/etcd fleet · /etcd status all');
  });
});
