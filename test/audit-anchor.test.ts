import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import IORedis, { Redis } from 'ioredis';
import {
  anchorJson, AuditAnchor, createAnchorSink, formatAnchor, parseAnchor, PlacedAnchor, readAnchorFile, signAnchor,
} from '../src/audit/anchor';
import { AuditLog, createAuditLog } from '../src/audit/audit-log';
import { GENESIS, verifyChain } from '../src/audit/verify';
import { RedisServer, startRedisWhenFree } from './support/redis';

// This suite's own port, so it never waits on (or races) the two audit suites sharing 6411.
const PORT = 6412;
const HMAC_KEY = Buffer.from('0123456789abcdef0123456789abcdef');

describe('audit anchors (real redis-server)', () => {
  let server: RedisServer;
  let redis: Redis;
  let dir: string;
  let n = 0;
  /** A clock that ticks one second per call, so anchor times are predictable. */
  const clock = (start = Date.parse('2024-05-01T03:04:05Z')) => { let t = start; return () => new Date((t += 1000) - 1000); };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'medic-audit-anchor-'));
    server = await startRedisWhenFree(PORT);
    redis = new IORedis(server.url, { maxRetriesPerRequest: 1 });
  }, 120000);
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function seeded(count: number, opts: { hmacKey?: Buffer } = {}): Promise<AuditLog> {
    const log = createAuditLog(redis, { key: `audit-anchor-test:${process.pid}:${++n}`, now: clock(), ...opts });
    for (let i = 1; i <= count; i++) {
      await log.append({ type: 'step.succeeded', cluster: 'lab', jobId: '1', actor: 'bot', data: { step: `step-${i}` } });
    }
    return log;
  }
  const placed = (anchor: AuditAnchor, source = '--anchor'): PlacedAnchor[] => [{ anchor, source }];

  /**
   * What a careful attacker with Redis write access does: pop the tail and point the head
   * at the new last line, so the chain and the head agree and plain verify passes.
   */
  async function cutTail(log: AuditLog, count: number): Promise<void> {
    await redis.rpop(log.key, count);
    const last = JSON.parse((await redis.lindex(log.key, -1))!) as { seq: number; hash: string };
    await redis.set(`${log.key}:head`, `${last.seq} ${last.hash}`);
    expect(await log.verify()).toMatchObject({ ok: true });
  }

  it('signs the head cheaply, and formats it as one chat line that parses back exactly', async () => {
    const log = await seeded(3);
    const head = (await log.head())!;
    const anchor = await log.anchor();
    expect(anchor).toMatchObject({ key: log.key, seq: 3, head: head.hash, alg: 'sha256', sig: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(Date.parse(anchor.at)).not.toBeNaN();

    const line = formatAnchor(anchor);
    expect(line).toBe(`audit anchor #3 of ${log.key} at ${anchor.at} head ${head.hash} (sha256 sig ${anchor.sig})`);
    expect(line.length).toBeLessThan(250);
    // Pasted from a chat message: surrounding text, inline code, a line break from the client.
    const message = `:white_check_mark: plan 42 done (3 steps)\n\`${line.replace(' head ', '\nhead ')}\`\nthanks`;
    expect(parseAnchor(message)).toEqual(anchor);
    expect(parseAnchor(`\`\`\`\n${anchorJson(anchor)}\n\`\`\``)).toEqual(anchor);
    expect(parseAnchor('audit anchor #3 head 3f9a…c2 (sha256 sig 9b1e…)')).toBeUndefined();

    // The empty log has an anchor too (seq 0), which any later log is consistent with.
    const empty = createAuditLog(redis, { key: `audit-anchor-test:${process.pid}:${++n}` });
    expect(await empty.anchor()).toMatchObject({ seq: 0, head: GENESIS });
  });

  it('with an anchor, detects 1 entry cut from the tail though the head was rewritten to match', async () => {
    const log = await seeded(5);
    const anchor = await log.anchor();
    expect(await log.verify({ anchors: placed(anchor) })).toMatchObject({ ok: true, anchors: { checked: 1, problems: [] } });
    await cutTail(log, 1);
    const res = await log.verify({ anchors: placed(anchor) });
    expect(res.ok).toBe(false);
    expect(res.problems).toEqual([]);
    expect(res.anchors!.problems).toEqual([{
      source: '--anchor',
      anchor,
      reason: `the log ends at #4 but anchor #5 of ${anchor.at} was signed: 1 entry was removed from the tail`,
    }]);
  });

  it('with an anchor, detects N entries cut from the tail, and a tail cut then written again', async () => {
    const log = await seeded(40);
    const anchor = await log.anchor();
    await cutTail(log, 34);
    expect((await log.verify({ anchors: placed(anchor) })).anchors!.problems.map((p) => p.reason)).toEqual([
      `the log ends at #6 but anchor #40 of ${anchor.at} was signed: 34 entries were removed from the tail`,
    ]);
    // The bot goes on appending after the cut: the log is long enough again, but not the same.
    for (let i = 0; i < 36; i++) await log.append({ type: 'step.succeeded', cluster: 'lab', data: { step: `again-${i}` } });
    expect(await log.verify()).toMatchObject({ ok: true, count: 42 });
    expect((await log.verify({ anchors: placed(anchor) })).anchors!.problems.map((p) => p.reason)).toEqual([
      expect.stringMatching(new RegExp(`^entry #40 has hash [0-9a-f]{12}… but anchor #40 of ${anchor.at} recorded ${anchor.head.slice(0, 12)}…: the log was rewritten`)),
    ]);
  });

  it('with an anchor, detects a wiped log (list and head deleted), which plain verify calls empty', async () => {
    const log = await seeded(4);
    const anchor = await log.anchor();
    await redis.del(log.key, `${log.key}:head`);
    expect(await log.verify()).toMatchObject({ ok: true, count: 0 });
    const res = await log.verify({ anchors: placed(anchor) });
    expect(res.ok).toBe(false);
    expect(res.anchors!.problems.map((p) => p.reason)).toEqual([`the log is empty but anchor #4 of ${anchor.at} exists: the log was wiped`]);
  });

  it('under HMAC, refuses an anchor with a tampered sig, a forged one, and an unkeyed one; accepts the bot\'s', async () => {
    const log = await seeded(6, { hmacKey: HMAC_KEY });
    const anchor = await log.anchor();
    expect(anchor.alg).toBe('hmac-sha256');
    expect(await log.verify({ anchors: placed(anchor) })).toMatchObject({ ok: true });

    const flipped = `${anchor.sig[0] === 'a' ? 'b' : 'a'}${anchor.sig.slice(1)}`;
    const tampered = { ...anchor, sig: flipped };
    // Cut to 3 and "anchored" there by someone without the key: plain SHA-256 and a wrong key.
    const wrongKey = signAnchor({ key: log.key, seq: 3, head: anchor.head, at: anchor.at }, Buffer.from('not-the-bots-key-at-all'));
    const unkeyed = signAnchor({ key: log.key, seq: 6, head: anchor.head, at: anchor.at });
    const res = await log.verify({ anchors: [tampered, wrongKey, unkeyed].map((a, i) => ({ anchor: a, source: `a${i}` })) });
    expect(res.ok).toBe(false);
    expect(res.anchors!.problems.map((p) => [p.source, p.reason])).toEqual([
      ['a0', expect.stringMatching(/^anchor #6 of .* has a bad signature .*: it was forged or altered/)],
      ['a1', expect.stringMatching(/^anchor #3 of .* has a bad signature/)],
      ['a2', expect.stringMatching(/^anchor #6 of .* is unkeyed \(sha256\) but this log is checked with an HMAC key: anyone could have made it/)],
    ]);
    // Without the key the verifier can't vouch for an HMAC anchor, and says what to set.
    const keyless = createAuditLog(redis, { key: log.key });
    expect((await keyless.verify({ anchors: placed(anchor) })).anchors!.problems[0].reason).toMatch(/set MEDIC_AUDIT_HMAC_KEY_FILE/);
  });

  it('checks an exported copy against anchors too, saying when the copy predates an anchor', async () => {
    const log = await seeded(5);
    const anchor = await log.anchor();
    const lines = await redis.lrange(log.key, 0, -1);
    const anchors = { logKey: log.key, list: placed(anchor), copy: true };
    expect(await verifyChain(lines, { anchors })).toMatchObject({ ok: true, anchors: { checked: 1, problems: [] } });
    expect((await verifyChain(lines.slice(0, 3), { anchors })).anchors!.problems.map((p) => p.reason)).toEqual([
      `the copy ends at #3 but anchor #5 of ${anchor.at} was signed: it lacks the last 2 entries (a copy older than the anchor, or its tail was cut)`,
    ]);
  });

  it('refuses an anchor for another log, and to sign a log whose head was deleted', async () => {
    const a = await seeded(2);
    const b = await seeded(2);
    expect((await b.verify({ anchors: placed(await a.anchor()) })).anchors!.problems[0].reason).toMatch(`is for log ${a.key}, not ${b.key}`);
    await redis.del(`${a.key}:head`);
    await expect(a.anchor()).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringContaining(':head is missing') });
  });

  it('appends anchors as JSON lines to a 0600 file, never rewriting it, whole lines under concurrent appends', async () => {
    const path = join(dir, 'anchors.jsonl');
    const sink = createAnchorSink(path);
    const log = await seeded(2);
    const first = await log.anchor();
    await sink.append(first);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, 'utf8')).toBe(`${anchorJson(first)}\n`);

    // 4 sinks (each its own open file, as separate processes have) append 50 anchors each at once.
    const many = Array.from({ length: 200 }, (_, i) => signAnchor({ key: log.key, seq: i + 3, head: 'a'.repeat(64), at: new Date(i).toISOString() }));
    const sinks = Array.from({ length: 4 }, () => createAnchorSink(path));
    await Promise.all(many.map((a, i) => sinks[i % 4].append(a)));
    const text = readFileSync(path, 'utf8');
    expect(text.startsWith(`${anchorJson(first)}\n`)).toBe(true);
    const read = await readAnchorFile(path);
    expect(read.problems).toEqual([]);
    expect(read.anchors).toHaveLength(201);
    expect(new Set(read.anchors.map((p) => p.anchor.seq)).size).toBe(201);
    expect(read.anchors[0]).toEqual({ anchor: first, source: `${path} line 1` });
  });

  it('reads an anchor file line by line, reporting a line that is not an anchor', async () => {
    const path = join(dir, 'edited.jsonl');
    const log = await seeded(1);
    const anchor = await log.anchor();
    writeFileSync(path, `${anchorJson(anchor)}\n{"key":"x","seq":1}\n\n`);
    const read = await readAnchorFile(path);
    expect(read.anchors.map((p) => p.source)).toEqual([`${path} line 1`]);
    expect(read.problems).toEqual([{ source: `${path} line 2`, reason: 'not an anchor: field "head" is missing or not 64 hex digits' }]);
    await expect(readAnchorFile(join(dir, 'missing.jsonl'))).rejects.toMatchObject({ code: 'BAD_INPUT' });
  });
});
