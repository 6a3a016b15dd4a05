/**
 * The console adapter as the quickstart runs it: `node dist/src/main.js` with no Slack
 * credentials, commands typed on stdin, against the lab and a real Redis.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LAB_DIR, labConfigPath, leaderName, memberIdsByName, waitLabHealthy, ensureLabHealthy } from './support/lab';

jest.setTimeout(300_000);
import { TEST_REDIS_URL } from './support/harness';

const MAIN = join(__dirname, '..', 'dist', 'src', 'main.js');

function runConsole(input: string, env: Record<string, string> = {}, timeoutMs = 90000): Promise<{ out: string; err: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        MEDIC_CONFIG: labConfigPath(),
        MEDIC_SSH_KEY_FILE: join(LAB_DIR, 'bot_id_ed25519'),
        REDIS_URL: TEST_REDIS_URL,
        MEDIC_CONSOLE_USER: 'console:tester', MEDIC_DRILL: '1',
        LOG_LEVEL: 'warn',
        ...env,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`console did not finish:\n${out}\n${err}`)); }, timeoutMs);
    child.on('exit', (code) => { clearTimeout(timer); resolve({ out, err, code }); });
    child.stdin.end(input);
  });
}

describe('console adapter', () => {
  beforeAll(async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build (scripts/test.sh does)`);
    await ensureLabHealthy();
  });

  it('shows the same status as text', async () => {
    const ids = await memberIdsByName();
    const leader = await leaderName();
    const { out, code } = await runConsole('status lab\nquit\n');
    expect(code).toBe(0);
    expect(out).toContain('== etcd status — lab ==');
    expect(out).toContain('healthy: 3/3 voting members healthy, quorum holds (needs 2), 1 failure tolerable');
    for (const [name, id] of Object.entries(ids)) {
      const row = out.split('\n').find((l) => l.startsWith(`${name} `));
      expect(row).toContain(id);
      if (name === leader) expect(row).toMatch(/\bleader\b/);
    }
  });

  it('answers bad input with an error and keeps serving', async () => {
    const { out, code } = await runConsole('status nosuch\nstatus lab;id\n/etcd clusters\nquit\n');
    expect(code).toBe(0);
    expect(out).toContain("error: unknown cluster 'nosuch': known clusters are lab, lab-botcert");
    expect(out).toMatch(/error: argument "lab;id" is not allowed/);
    expect(out).toMatch(/lab\s+node1, node2, node3/);
  });

  it('runs a destructive plan only after a second named user approves it at another console', async () => {
    const queue = `console-approval-${process.pid}-${Date.now()}`;
    const shared = { MEDIC_QUEUE: queue, MEDIC_AUDIT_KEY: `t-audit-${queue}`, MEDIC_SNAPSHOT_DIR: `/tmp/etcd-medic-test-snapshots-${process.pid}` };
    const oldIds = await memberIdsByName();
    // Alice asks, sees the plan, and can't approve it herself.
    const alice = spawn(process.execPath, [MAIN], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin', MEDIC_CONFIG: labConfigPath(), MEDIC_SSH_KEY_FILE: join(LAB_DIR, 'bot_id_ed25519'),
        REDIS_URL: TEST_REDIS_URL, MEDIC_CONSOLE_USER: 'console:alice', MEDIC_DRILL: '1', LOG_LEVEL: 'warn', ...shared,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let aliceOut = '';
    alice.stdout.on('data', (d) => { aliceOut += d; });
    const aliceDone = new Promise<number | null>((resolve) => alice.on('exit', resolve));
    try {
      alice.stdin.write('replace-member lab node3\n');
      const until = Date.now() + 60_000;
      while (!/approve (c\d+)/.test(aliceOut) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      const id = /approve (c\d+)/.exec(aliceOut)?.[1];
      expect(id).toBeDefined();
      expect(aliceOut).toContain('== etcd replace-member — lab (job');
      expect(aliceOut).toContain('Fault tolerance before: 3/3 healthy voters, quorum 2, 1 failure tolerable');
      alice.stdin.write(`approve ${id}\nquit\n`);
      expect(await aliceDone).toBe(0);
      expect(aliceOut).toMatch(new RegExp(`refused: you requested plan ${id}: someone else must approve it`));
      expect((await memberIdsByName()).node3).toBe(oldIds.node3);

      // Bob approves from his own console and follows the steps there.
      const bob = await runConsole(`approve ${id}\nquit\n`, { MEDIC_CONSOLE_USER: 'console:bob', ...shared }, 240_000);
      expect(bob.code).toBe(0);
      expect(bob.out).toContain(`you approved plan ${id}: it runs now`);
      for (let i = 1; i <= 11; i++) expect(bob.out).toMatch(new RegExp(`step ${i}/11: `));
      expect(bob.out).toMatch(/done: all 11 steps ran/);
      const ids = await memberIdsByName();
      expect(Object.keys(ids).sort()).toEqual(['node1', 'node2', 'node3']);
      expect(ids.node3).not.toBe(oldIds.node3);
    } finally {
      if (alice.exitCode === null) alice.kill('SIGKILL');
      await waitLabHealthy();
    }
  });

  it('refuses to start with a config error naming the field', async () => {
    const { err, code } = await runConsole('', { MEDIC_CONFIG: join(__dirname, 'fixtures', 'bad-clusters.yaml') }, 30000);
    expect(code).toBe(1);
    expect(err).toContain('clusters[0](broken).nodes[0](n1).ssh.hostKey');
  });
});
