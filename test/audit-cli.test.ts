import { execFile } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import IORedis, { Redis } from 'ioredis';
import { AuditLog, createAuditLog } from '../src/audit/audit-log';
import { canonicalJson } from '../src/audit/verify';
import { RedisServer, startRedisWhenFree } from './support/redis';

const ROOT = join(__dirname, '..');
const CLI = join(ROOT, 'dist/src/cli/audit.js');
// Shared with audit-log.test.ts: whichever file runs second waits for the port.
const PORT = 6411;
/** Nothing listens here: the CLI must give up with exit 2. */
const DEAD_PORT = 6419;


interface Run { code: number | null; stdout: string; stderr: string }

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, timeout = 30000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, env: { PATH: process.env.PATH, ...env }, timeout }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('audit CLI (node dist/src/cli/audit.js, real redis-server)', () => {
  let server: RedisServer;
  let redis: Redis;
  let dir: string;
  let n = 0;
  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => run(process.execPath, [CLI, ...args], { REDIS_URL: server.url, ...env });

  async function seeded(count: number, opts: { hmacKey?: Buffer } = {}): Promise<AuditLog> {
    const log = createAuditLog(redis, { key: `audit-cli-test:${process.pid}:${++n}`, ...opts });
    for (let i = 1; i <= count; i++) {
      await log.append({ type: i === 1 ? 'job.requested' : 'step.succeeded', cluster: i % 2 ? 'lab' : 'prod-eu1', jobId: String(i), actor: 'bot', data: { step: `s${i}`, exitCode: 0 } });
    }
    return log;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'medic-audit-cli-'));
    // Compile just the CLI and what it imports (into dist/, where it runs in production),
    // so work in progress elsewhere in the tree can't fail this suite's build.
    const tsconfig = join(dir, 'tsconfig.json');
    writeFileSync(tsconfig, JSON.stringify({
      extends: join(ROOT, 'tsconfig.json'),
      compilerOptions: { outDir: join(ROOT, 'dist'), rootDir: ROOT, typeRoots: [join(ROOT, 'node_modules/@types')] },
      include: [],
      files: [join(ROOT, 'src/cli/audit.ts')],
    }));
    const [build, started] = await Promise.all([run(join(ROOT, 'node_modules/.bin/tsc'), ['-p', tsconfig], {}, 120000), startRedisWhenFree(PORT)]);
    server = started;
    if (build.code !== 0) throw new Error(`tsc failed:\n${build.stdout}${build.stderr}`);
    redis = new IORedis(server.url, { maxRetriesPerRequest: 1 });
  }, 180000);
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('verify exits 0 on an intact chain and 1 naming the line after one line is changed', async () => {
    const log = await seeded(5);
    const ok = await cli(['verify'], { MEDIC_AUDIT_KEY: log.key });
    expect(ok).toMatchObject({ code: 0, stderr: '' });
    expect(ok.stdout).toMatch(new RegExp(`^audit chain ok: 5 entries in ${log.key} at redis://127.0.0.1:${PORT}, head seq 5 hash [0-9a-f]{64}\\n$`));

    const line = JSON.parse((await redis.lindex(log.key, 2))!) as { actor: string };
    line.actor = 'U0MALLORY';
    await redis.lset(log.key, 2, canonicalJson(line));
    const broken = await cli(['verify'], { MEDIC_AUDIT_KEY: log.key });
    expect(broken.code).toBe(1);
    expect(broken.stdout).toMatch(/^audit chain BROKEN: 1 problem in 5 lines of /);
    expect(broken.stdout).toMatch(/\n {2}line 3 \(seq 3\): content changed after it was written/);
  }, 60000);

  it('export copies the lines verbatim, and verify --file checks the copy without Redis', async () => {
    const log = await seeded(4);
    const out = join(dir, 'export.jsonl');
    const exp = await cli(['export', '--out', out], { MEDIC_AUDIT_KEY: log.key });
    expect(exp.code).toBe(0);
    expect(exp.stdout).toMatch(/^exported 4 lines of .* to .*export\.jsonl \(head at export: seq 4 hash [0-9a-f]{64}\)/);
    expect(readFileSync(out, 'utf8')).toBe(`${(await redis.lrange(log.key, 0, -1)).join('\n')}\n`);

    const noRedis = { REDIS_URL: `redis://127.0.0.1:${DEAD_PORT}` };
    expect(await cli(['verify', '--file', out], noRedis)).toMatchObject({ code: 0, stdout: expect.stringMatching(/^audit chain ok: 4 entries in .*export\.jsonl/) });

    // Drop the second line of the copy.
    const lines = readFileSync(out, 'utf8').split('\n');
    writeFileSync(out, [lines[0], ...lines.slice(2)].join('\n'));
    const cut = await cli(['verify', '--file', out], noRedis);
    expect(cut.code).toBe(1);
    expect(cut.stdout).toContain('line 2 (seq 3): seq 2 is missing before this line: a line was removed between line 1 and this one');
  }, 60000);

  it('tail shows the newest entries, filtered by cluster', async () => {
    const log = await seeded(5);
    const res = await cli(['tail', '--cluster', 'lab', '-n', '2'], { MEDIC_AUDIT_KEY: log.key });
    expect(res.code).toBe(0);
    const rows = res.stdout.trim().split('\n');
    expect(rows[0]).toMatch(/^SEQ\s+TIME \(UTC\)\s+CLUSTER\s+JOB\s+EVENT\s+ACTOR\s+DETAIL$/);
    expect(rows.slice(1).map((r) => r.split(/\s+/).slice(0, 1).concat(r.split(/\s+/).slice(2, 5)))).toEqual([
      ['3', 'lab', '3', 'step.succeeded'],
      ['5', 'lab', '5', 'step.succeeded'],
    ]);
    expect(rows[2]).toMatch(/s5, exit 0$/);
  }, 60000);

  it('verifies an HMAC chain with the key file, and hints at the key without it', async () => {
    const keyFile = join(dir, 'audit.key');
    writeFileSync(keyFile, 'c2f6a0d4e8b1f3a5c7d9e0b2a4c6e8f0\n');
    const log = await seeded(3, { hmacKey: Buffer.from('c2f6a0d4e8b1f3a5c7d9e0b2a4c6e8f0') });
    expect((await cli(['verify'], { MEDIC_AUDIT_KEY: log.key, MEDIC_AUDIT_HMAC_KEY_FILE: keyFile })).code).toBe(0);
    const without = await cli(['verify'], { MEDIC_AUDIT_KEY: log.key });
    expect(without.code).toBe(1);
    expect(without.stdout).toContain('set MEDIC_AUDIT_HMAC_KEY_FILE to the same key');
  }, 60000);

  it('exits 2 with a clear message when Redis is unreachable or the command line is wrong', async () => {
    const dead = await cli(['verify'], { REDIS_URL: `redis://127.0.0.1:${DEAD_PORT}` });
    expect(dead.code).toBe(2);
    expect(dead.stderr).toMatch(new RegExp(`^Redis at redis://127.0.0.1:${DEAD_PORT} unreachable: .*ECONNREFUSED`));

    const usage = await cli([], { REDIS_URL: `redis://127.0.0.1:${DEAD_PORT}` });
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^no command given\nusage: node dist\/src\/cli\/audit\.js/);
    expect((await cli(['export'], { REDIS_URL: `redis://127.0.0.1:${DEAD_PORT}` })).stderr).toMatch(/^export needs --out <file>/);
    expect((await cli(['verify', '--file', join(dir, 'missing.jsonl')])).stderr).toMatch(/^cannot read .*missing\.jsonl: ENOENT/);
  }, 60000);

  /** Pops `count` lines and points the head at the new last one, as an attacker who wants plain verify to pass would. */
  async function cutTail(log: AuditLog, count: number): Promise<void> {
    await redis.rpop(log.key, count);
    const last = JSON.parse((await redis.lindex(log.key, -1))!) as { seq: number; hash: string };
    await redis.set(`${log.key}:head`, `${last.seq} ${last.hash}`);
  }
  const ANCHOR_LINE = /^audit anchor #(\d+) of (\S+) at (\S+) head [0-9a-f]{64} \((sha256|hmac-sha256) sig [0-9a-f]{64}\)$/;

  it('anchor prints one chat line; verify --anchor with it pasted exits 0, then 1 naming the entries cut from the tail', async () => {
    const log = await seeded(40);
    const signed = await cli(['anchor'], { MEDIC_AUDIT_KEY: log.key });
    expect(signed).toMatchObject({ code: 0, stderr: '' });
    const line = signed.stdout.trim();
    const [, seq, key, at] = ANCHOR_LINE.exec(line)!;
    expect([seq, key]).toEqual(['40', log.key]);
    expect(line.length).toBeLessThan(250);

    const pasted = `etcd-medic: plan 7 finished, 3/3 steps ok\n\`${line}\``;
    const ok = await cli(['verify', '--anchor', pasted], { MEDIC_AUDIT_KEY: log.key });
    expect(ok).toMatchObject({ code: 0, stderr: '' });
    expect(ok.stdout).toContain(`anchors ok: 1 checked, the last is #40 of ${at} (sha256)`);

    await cutTail(log, 34);
    // The hole anchors close: with the head rewritten, the chain alone looks intact.
    expect((await cli(['verify'], { MEDIC_AUDIT_KEY: log.key })).code).toBe(0);
    const cut = await cli(['verify', '--anchor', pasted], { MEDIC_AUDIT_KEY: log.key });
    expect(cut.code).toBe(1);
    expect(cut.stdout).toMatch(/^audit chain BROKEN: 1 problem in 6 lines of /);
    expect(cut.stdout).toContain(`  --anchor: the log ends at #6 but anchor #40 of ${at} was signed: 34 entries were removed from the tail`);
  }, 60000);

  it('verify --anchor-file checks every anchor the bot processes appended, and names a cut tail and a wiped log', async () => {
    const log = await seeded(3);
    const file = join(dir, `anchors-${n}.jsonl`);
    const env = { MEDIC_AUDIT_KEY: log.key };
    // Three processes append to the file at once.
    const three = await Promise.all([1, 2, 3].map(() => cli(['anchor', '--anchor-file', file], env)));
    expect(three.map((r) => r.code)).toEqual([0, 0, 0]);
    await log.append({ type: 'step.succeeded', cluster: 'lab', data: { step: 's4' } });
    await log.append({ type: 'step.succeeded', cluster: 'lab', data: { step: 's5' } });
    const last = await cli(['anchor', '--anchor-file', file], env);
    expect(last.stdout).toMatch(new RegExp(`\nappended to ${file}\n$`));
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as { seq: number }).seq)).toEqual([3, 3, 3, 5]);
    const lastAt = (JSON.parse(lines[3]) as { at: string }).at;

    const ok = await cli(['verify', '--anchor-file', file], env);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`anchors ok: 4 checked, the last is #5 of ${lastAt} (sha256)`);
    const copy = join(dir, `copy-${n}.jsonl`);
    expect((await cli(['export', '--out', copy], env)).code).toBe(0);

    await cutTail(log, 1);
    const cut = await cli(['verify', '--anchor-file', file], env);
    expect(cut.code).toBe(1);
    expect(cut.stdout).toContain(`  ${file} line 4: the log ends at #4 but anchor #5 of ${lastAt} was signed: 1 entry was removed from the tail`);
    expect(cut.stdout).not.toContain('line 3:');

    await redis.del(log.key, `${log.key}:head`);
    const wiped = await cli(['verify', '--anchor-file', file], env);
    expect(wiped.code).toBe(1);
    expect(wiped.stdout).toMatch(/^audit chain BROKEN: 4 problems in 0 lines of /);
    expect(wiped.stdout).toContain(`  ${file} line 4: the log is empty but anchor #5 of ${lastAt} exists: the log was wiped`);
    // The copy exported before the cut still holds every anchored entry.
    expect(await cli(['verify', '--file', copy, '--anchor-file', file], { ...env, REDIS_URL: `redis://127.0.0.1:${DEAD_PORT}` }))
      .toMatchObject({ code: 0, stdout: expect.stringContaining('anchors ok: 4 checked') });
  }, 60000);

  it('under HMAC, verify --anchor refuses an anchor whose sig or seq was altered', async () => {
    const keyFile = join(dir, 'anchor-hmac.key');
    writeFileSync(keyFile, '9f8e7d6c5b4a39281706f5e4d3c2b1a0\n');
    const log = await seeded(3, { hmacKey: Buffer.from('9f8e7d6c5b4a39281706f5e4d3c2b1a0') });
    const env = { MEDIC_AUDIT_KEY: log.key, MEDIC_AUDIT_HMAC_KEY_FILE: keyFile };
    const line = (await cli(['anchor'], env)).stdout.trim();
    expect(ANCHOR_LINE.exec(line)![4]).toBe('hmac-sha256');
    expect((await cli(['verify', '--anchor', line], env)).code).toBe(0);

    const sig = /sig ([0-9a-f]{64})/.exec(line)![1];
    const badSig = line.replace(sig, `${sig.slice(0, 63)}${sig[63] === '0' ? '1' : '0'}`);
    const refused = await cli(['verify', '--anchor', badSig], env);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toMatch(/--anchor: anchor #3 of \S+ has a bad signature \(sig [0-9a-f]{12}…\): it was forged or altered/);
    // Someone who cut the log to 2 entries and "moved" the anchor there can't re-sign it.
    const moved = await cli(['verify', '--anchor', line.replace('anchor #3', 'anchor #2')], env);
    expect(moved.code).toBe(1);
    expect(moved.stdout).toContain('anchor #2 of');
    expect(moved.stdout).toContain('has a bad signature');
  }, 60000);

  it('verify --anchor with no anchor in the text exits 2; a line of the anchor file that is not an anchor exits 1', async () => {
    const log = await seeded(2);
    const none = await cli(['verify', '--anchor', 'audit anchor #2 head 3f9a…c2'], { MEDIC_AUDIT_KEY: log.key });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^--anchor "audit anchor #2 head 3f9a…c2": no audit anchor in it/);

    const file = join(dir, `edited-${n}.jsonl`);
    expect((await cli(['anchor', '--anchor-file', file], { MEDIC_AUDIT_KEY: log.key })).code).toBe(0);
    appendFileSync(file, '{"seq":99,"note":"added by hand"}\n');
    const edited = await cli(['verify', '--anchor-file', file], { MEDIC_AUDIT_KEY: log.key });
    expect(edited.code).toBe(1);
    expect(edited.stdout).toContain(`  ${file} line 2: not an anchor: field "key" is missing`);
    const empty = join(dir, 'empty.jsonl');
    writeFileSync(empty, '');
    expect((await cli(['verify', '--anchor-file', empty], { MEDIC_AUDIT_KEY: log.key })).stderr).toMatch(/has no anchors: nothing to check/);
  }, 60000);
});
