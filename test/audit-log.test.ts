import { createHash } from 'node:crypto';
import IORedis, { Redis } from 'ioredis';
import { AuditEntry, createAuditLog, formatAuditReport, AUDIT_REPORT_ROWS } from '../src/audit/audit-log';
import { redact, redactDeep } from '../src/audit/redact';
import { canonicalJson, GENESIS, hashEntry, verifyChain } from '../src/audit/verify';
import { RedisServer, startRedisWhenFree } from './support/redis';

// Port 6411 is this suite's; audit-cli.test.ts uses it too, so whichever file runs second
// waits for the first to stop its server instead of failing on a taken port.
const PORT = 6411;


const PEM = [
  '-----BEGIN RSA PRIVATE KEY-----',
  'MIIEowIBAAKCAQEAuniquesecretkeymaterialQWERTY1234567890abcdefghijklmnop',
  'ZZTOPSECRETLINE2xyzxyzxyzxyzxyzxyzxyzxyzxyzxyzxyzxyzxyzxyzxyzxyzxyzxyz',
  '-----END RSA PRIVATE KEY-----',
].join('\n');
const SLACK_TOKEN = 'xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx';

describe('audit log in Redis (real redis-server)', () => {
  let server: RedisServer;
  let redis: Redis;
  let n = 0;
  const freshKey = () => `audit-test:${process.pid}:${++n}`;
  /** A clock that ticks one second per call, so timestamps are predictable. */
  const clock = (start = Date.parse('2024-05-01T03:04:05Z')) => { let t = start; return () => new Date((t += 1000) - 1000); };

  beforeAll(async () => {
    server = await startRedisWhenFree(PORT);
    redis = new IORedis(server.url, { maxRetriesPerRequest: 1 });
  }, 120000);
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  it('an append tried again with the same idempotency key is stored once (Redis may have carried out the first one after a timeout)', async () => {
    const log = createAuditLog(redis, { key: `t-audit-once-${process.pid}-${Date.now()}` });
    const first = await log.append({ type: 'step.succeeded', cluster: 'lab', jobId: '7', actor: 'bot', data: { index: 1 } }, { once: '7:step.succeeded:1:42' });
    const again = await log.append({ type: 'step.succeeded', cluster: 'lab', jobId: '7', actor: 'bot', data: { index: 1 } }, { once: '7:step.succeeded:1:42' });
    const other = await log.append({ type: 'step.succeeded', cluster: 'lab', jobId: '7', actor: 'bot', data: { index: 1 } }, { once: '7:step.succeeded:1:43' });
    expect(first?.seq).toBe(1);
    expect(again).toBeUndefined();
    expect(other?.seq).toBe(2);
    expect((await log.recent({ limit: 10 })).map((e) => e.seq)).toEqual([1, 2]);
    expect((await log.verify()).problems).toEqual([]);
  });

  it('chains entries: gapless seq, prev = hash of the one before, recent() filters and keeps oldest first', async () => {
    const log = createAuditLog(redis, { key: freshKey(), now: clock() });
    const a = await log.append({ type: 'job.requested', cluster: 'prod-eu1', jobId: '7', actor: 'U0ALICE', data: { command: '/etcd remove-member prod-eu1 cp3' } });
    const b = await log.append({ type: 'job.requested', cluster: 'lab', jobId: '8', actor: 'console:ops' });
    const c = await log.append({ type: 'job.planned', cluster: 'prod-eu1', jobId: '7', actor: 'bot', data: { steps: 3 } });
    expect([a.seq, b.seq, c.seq]).toEqual([1, 2, 3]);
    expect(a.prev).toBe(GENESIS);
    expect(b.prev).toBe(a.hash);
    expect(c.prev).toBe(b.hash);
    expect(a.ts).toBe('2024-05-01T03:04:05.000Z');
    expect(c.hash).toBe(hashEntry(c));
    expect(await log.head()).toEqual({ seq: 3, hash: c.hash });

    expect((await log.recent({ limit: 10 })).map((e) => e.seq)).toEqual([1, 2, 3]);
    expect((await log.recent({ limit: 2 })).map((e) => e.seq)).toEqual([2, 3]);
    expect((await log.recent({ cluster: 'prod-eu1', limit: 10 })).map((e) => e.type)).toEqual(['job.requested', 'job.planned']);
    expect((await log.recent({ jobId: '8', limit: 10 })).map((e) => e.actor)).toEqual(['console:ops']);
    expect(await log.recent({ cluster: 'nope', limit: 10 })).toEqual([]);

    const all: AuditEntry[] = [];
    for await (const e of log.entries(2)) all.push(e);
    expect(all.map((e) => e.seq)).toEqual([2, 3]);
    // What is stored is the entry's canonical JSON, byte for byte.
    expect(await redis.lrange(log.key, 0, -1)).toEqual([a, b, c].map(canonicalJson));
    expect(await log.verify()).toMatchObject({ ok: true, count: 3, problems: [], lastHash: c.hash });
  });

  it('refuses a malformed event type or cluster and stores nothing', async () => {
    const log = createAuditLog(redis, { key: freshKey() });
    await expect(log.append({ type: 'StepStarted', cluster: 'lab' })).rejects.toMatchObject({ code: 'BAD_INPUT' });
    await expect(log.append({ type: 'step.started', cluster: 'lab; rm -rf' })).rejects.toMatchObject({ code: 'BAD_INPUT' });
    expect(await redis.llen(log.key)).toBe(0);
  });

  it('keeps secrets in step output out of Redis: a PEM key and a Slack token never reach the raw list', async () => {
    const log = createAuditLog(redis, { key: freshKey() });
    const entry = await log.append({
      type: 'step.failed',
      cluster: 'lab',
      jobId: '9',
      actor: 'bot',
      data: {
        step: 'node.readManifest', index: 2, total: 5, node: 'node3', command: 'cat {manifest}', exitCode: 1, durationMs: 420,
        output: `reading\n${PEM}\nposting with ${SLACK_TOKEN}\nAuthorization: Bearer abc.def.ghi\n${'x'.repeat(5000)}`,
        nested: [{ env: `SLACK_BOT_TOKEN=${SLACK_TOKEN}` }],
        password: 'hunter2-plain',
      },
    });
    const raw = (await redis.lrange(log.key, 0, -1)).join('\n');
    for (const secret of ['uniquesecretkeymaterial', 'ZZTOPSECRETLINE2', 'BEGIN RSA PRIVATE KEY', SLACK_TOKEN, '1234567890123-AbCd', 'abc.def.ghi', 'hunter2-plain']) {
      expect(raw).not.toContain(secret);
    }
    expect(raw).toContain('[REDACTED PRIVATE KEY]');
    expect(raw).toContain('xoxb-[REDACTED]');
    const output = (entry.data as { output: string }).output;
    expect(output.length).toBeLessThanOrEqual(2000);
    expect(output).toMatch(/…\(\d+ more chars\)$/);
    // Redaction happened before hashing: the stored entry verifies.
    expect(await log.verify()).toMatchObject({ ok: true, count: 1 });
  });

  it('stays one gapless chain when 5 connections append 40 entries each at the same time', async () => {
    const key = freshKey();
    const conns = Array.from({ length: 5 }, () => new IORedis(server.url, { maxRetriesPerRequest: 1 }));
    try {
      const logs = conns.map((c) => createAuditLog(c, { key }));
      await Promise.all(logs.map((log, w) => Promise.all(Array.from({ length: 40 }, (_, i) =>
        log.append({ type: 'step.succeeded', cluster: 'lab', jobId: `w${w}`, data: { step: `s${i}` } })))));
      const lines = await redis.lrange(key, 0, -1);
      expect(lines).toHaveLength(200);
      const entries = lines.map((l) => JSON.parse(l) as AuditEntry);
      expect(entries.map((e) => e.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      // Every append landed exactly once.
      expect(new Set(entries.map((e) => `${e.jobId}/${(e.data as { step: string }).step}`)).size).toBe(200);
      const res = await verifyChain(lines);
      expect(res).toMatchObject({ ok: true, count: 200, problems: [] });
      expect(await createAuditLog(redis, { key }).head()).toEqual({ seq: 200, hash: res.lastHash });
    } finally {
      conns.forEach((c) => c.disconnect());
    }
  }, 60000);

  /** A log of `count` step events for the tamper tests. */
  async function seeded(count: number, opts: { hmacKey?: Buffer } = {}) {
    const log = createAuditLog(redis, { key: freshKey(), now: clock(), ...opts });
    for (let i = 1; i <= count; i++) {
      await log.append({ type: 'step.succeeded', cluster: 'lab', jobId: '1', actor: 'bot', data: { step: `step-${i}`, exitCode: 0 } });
    }
    return log;
  }
  const editLine = async (key: string, index: number, edit: (e: Record<string, unknown>) => void) => {
    const e = JSON.parse((await redis.lindex(key, index))!) as Record<string, unknown>;
    edit(e);
    // Written back in canonical form, as a careful forger would (reformatting alone is caught too).
    await redis.lset(key, index, canonicalJson(e));
  };

  it('reports exactly the line whose one field was changed', async () => {
    const log = await seeded(6);
    expect(await log.verify()).toMatchObject({ ok: true, count: 6 });
    await editLine(log.key, 3, (e) => { (e.data as Record<string, unknown>).exitCode = 1; });
    const res = await log.verify();
    expect(res.ok).toBe(false);
    expect(res.problems).toEqual([{ line: 4, seq: 4, reason: expect.stringMatching(/^content changed after it was written: stored hash [0-9a-f]{12}… but the content hashes to/) }]);
  });

  it('reports a line removed from the middle as a gap at the line after it', async () => {
    const log = await seeded(6);
    // LREM removes by value: mark the 3rd line uniquely, then remove it.
    await redis.lset(log.key, 2, '__deleted__');
    await redis.lrem(log.key, 1, '__deleted__');
    const res = await log.verify();
    expect(res).toMatchObject({ ok: false, count: 5 });
    expect(res.problems).toEqual([{ line: 3, seq: 4, reason: 'seq 3 is missing before this line: a line was removed between line 2 and this one' }]);
  });

  it('reports lines removed from the end (against the head), swapped lines, and garbage', async () => {
    const log = await seeded(5);
    await redis.rpop(log.key, 2);
    expect((await log.verify()).problems).toEqual([{ line: 4, seq: 4, reason: expect.stringContaining('the log ends at seq 3 but the writer\'s head records seq 5: the last 2 lines were removed') }]);

    const lines = await redis.lrange((await seeded(4)).key, 0, -1);
    const swapped = await verifyChain([lines[0], lines[2], lines[1], lines[3]]);
    expect(swapped.ok).toBe(false);
    expect(swapped.problems.map((p) => p.line)).toEqual([2, 3, 4]);
    expect(swapped.problems[1].reason).toMatch(/seq 2 comes after seq 3: this line was inserted, duplicated or moved/);

    const garbage = await verifyChain([lines[0], 'not json', lines[1]]);
    expect(garbage.problems).toEqual([{ line: 2, reason: expect.stringMatching(/^not valid JSON/) }]);
    const reformatted = await verifyChain([JSON.stringify(JSON.parse(lines[0]), null, 1).replace(/\n/g, ' ')]);
    expect(reformatted.problems[0].reason).toMatch(/reformatted/);
  });

  it('with plain SHA-256 catches a rewrite with a recomputed hash at the next line; with an HMAC key at the line itself', async () => {
    const plain = await seeded(4);
    await editLine(plain.key, 1, (e) => {
      e.actor = 'U0MALLORY';
      delete e.hash;
      e.hash = hashEntry(e as unknown as AuditEntry);
    });
    expect((await plain.verify()).problems).toEqual([{ line: 3, seq: 3, reason: expect.stringMatching(/^does not link to line 2/) }]);

    const hmacKey = Buffer.from('0123456789abcdef0123456789abcdef');
    const keyed = await seeded(4, { hmacKey });
    expect(await keyed.verify()).toMatchObject({ ok: true });
    // Without the key every line looks changed; the CLI says why.
    expect((await verifyChain(await redis.lrange(keyed.key, 0, -1))).problems).toHaveLength(4);
    await editLine(keyed.key, 1, (e) => {
      e.actor = 'U0MALLORY';
      delete e.hash;
      e.hash = createHash('sha256').update(canonicalJson(e)).digest('hex');
    });
    expect((await keyed.verify()).problems.map((p) => p.line)).toEqual([2, 3]);
  });

  it('refuses to start a second chain when the head key was deleted', async () => {
    const log = await seeded(2);
    await redis.del(`${log.key}:head`);
    await expect(log.append({ type: 'job.started', cluster: 'lab' })).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringContaining(':head is missing') });
    expect(await redis.llen(log.key)).toBe(2);
  });

  it('shows a resumed job in the trail, and the chain verifies across the crash', async () => {
    const log = createAuditLog(redis, { key: freshKey(), now: clock() });
    const ev = (type: string, data?: Record<string, unknown>, actor = 'bot') => log.append({ type, cluster: 'lab', jobId: '42', actor, data });
    await ev('job.requested', { command: 'replace-member lab node3' }, 'U0ALICE');
    await ev('job.planned', { steps: [{}, {}, {}], planHash: 'ab12cd34ef56ab12cd34' });
    await ev('approval.granted', undefined, 'U0BOB');
    await ev('job.started', { worker: 'w1' });
    await ev('step.succeeded', { step: 'etcd.memberRemove', index: 1, total: 3, node: 'node3', exitCode: 0, durationMs: 1500 });
    // worker w1 dies here; w2 picks the job up at step 2
    await ev('job.resumed', { fromStep: 2, total: 3, worker: 'w2' });
    await ev('step.succeeded', { step: 'node.stopEtcd', index: 2, total: 3, node: 'node3', exitCode: 0, durationMs: 300 });
    expect(await log.verify()).toMatchObject({ ok: true, count: 7 });

    const report = formatAuditReport(await log.recent({ cluster: 'lab', limit: 40 }), 'lab', { head: await log.head() });
    const rows = report.tables![0].rows;
    expect(rows.map((r) => r[2])).toEqual(['job.requested', 'job.planned', 'approval.granted', 'job.started', 'step.succeeded', 'job.resumed', 'step.succeeded']);
    expect(rows[5]).toEqual(['03:04:10', '42', 'job.resumed', 'bot', 'from step 2/3, on w2']);
    expect(rows[4][4]).toBe('1/3 etcd.memberRemove, on node3, exit 0, 1.5 s');
    expect(rows[2][4]).toBe('granted by U0BOB');
    expect(rows[1][4]).toBe('3 steps, plan ab12cd34ef56');
  });
});

describe('formatAuditReport (pure)', () => {
  const entry = (seq: number, ts: string, type = 'step.started'): AuditEntry => ({
    seq, ts, type, cluster: 'lab', jobId: '5', actor: 'bot', prev: GENESIS, hash: `${'ab'.repeat(31)}${String(seq).padStart(2, '0')}`,
    data: { step: 'etcd.memberAdd', node: 'node1' },
  });

  it(`shows at most ${AUDIT_REPORT_ROWS} rows, the newest, with the chain head in a note`, () => {
    const entries = Array.from({ length: 45 }, (_, i) => entry(i + 1, `2024-05-01T10:00:${String(i).padStart(2, '0')}.000Z`));
    const r = formatAuditReport(entries, 'lab', { head: { seq: 99, hash: 'f'.repeat(64) } });
    expect(r.title).toBe('etcd audit — lab');
    expect(r.tables![0].columns).toEqual(['TIME (UTC)', 'JOB', 'EVENT', 'ACTOR', 'DETAIL']);
    expect(r.tables![0].rows).toHaveLength(40);
    expect(r.tables![0].rows[0]).toEqual(['10:00:05', '5', 'step.started', 'bot', 'etcd.memberAdd, on node1']);
    expect(r.notes).toEqual(['5 older events not shown', expect.stringMatching(/^chain head: seq 99, hash ffffffffffff;/)]);
  });

  it('adds the date when events span days, and says so when there are none', () => {
    const r = formatAuditReport([entry(1, '2024-05-01T23:59:59.000Z'), entry(2, '2024-05-02T00:00:01.000Z', 'job.cancelled')], 'lab');
    expect(r.tables![0].rows.map((row) => row[0])).toEqual(['05-01 23:59:59', '05-02 00:00:01']);
    expect(r.notes).toEqual([expect.stringMatching(/^chain head: seq 2, hash abababababab/)]);
    expect(formatAuditReport([], 'lab')).toMatchObject({ verdict: { text: 'no audit events recorded for lab' }, tables: [] });
  });
});

describe('redact (pure)', () => {
  it.each([
    [`a\n${PEM}\nb`, 'a\n[REDACTED PRIVATE KEY]\nb'],
    ['-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1r (cut off)', '[REDACTED PRIVATE KEY]'],
    [`bot ${SLACK_TOKEN} app xapp-1-A0123-456-abcdef`, 'bot xoxb-[REDACTED] app xapp-[REDACTED]'],
    ['Authorization: Basic dXNlcjpwYXNz\nnext', 'Authorization: [REDACTED]\nnext'],
    ['password=hunter2 token=abc&secret="s p" keep=1', 'password=[REDACTED] token=[REDACTED]&secret=[REDACTED] keep=1'],
    ['etcdctl --user root:pw --client-secret abc', 'etcdctl --user root:[REDACTED] --client-secret [REDACTED]'],
    ['redis://:pw@10.0.0.1:6379', 'redis://:***@10.0.0.1:6379'],
  ])('%j', (input, expected) => {
    expect(redact(input)).toBe(expected);
  });

  it('bounds length with a marker and leaves short text alone', () => {
    expect(redact('member list ok')).toBe('member list ok');
    const long = redact('y'.repeat(10000));
    expect(long.length).toBeLessThanOrEqual(2000);
    expect(long).toMatch(/^y+…\(\d+ more chars\)$/);
    expect(Number(/\((\d+) more/.exec(long)![1]) + long.indexOf('…')).toBe(10000);
  });

  it('redacts deeply, hides secret-named keys, and leaves JSON that reads back the same', () => {
    const out = redactDeep({ a: [{ b: `k=${SLACK_TOKEN}` }], clientSecret: 'plain', when: new Date(0), n: NaN, skip: undefined });
    expect(out).toEqual({ a: [{ b: 'k=xoxb-[REDACTED]' }], clientSecret: '[REDACTED]', when: '1970-01-01T00:00:00.000Z', n: null });
    expect(JSON.parse(JSON.stringify(out))).toEqual(out);
  });
});
