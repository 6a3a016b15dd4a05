import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
});
