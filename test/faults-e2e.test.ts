/**
 * The fault suite (issue 8, item 9): a runbook run end to end in the lab through signed Slack
 * requests, with two worker processes (dist/src/main.js) on a Redis that persists like a
 * production one, and one fault injected as step k starts. Then the cluster is checked as an
 * operator would: every member healthy, exactly one member per node, no learner, the keys
 * written before all there; no step done twice; the audit chain verifies (with the CLI, and
 * against the anchor posted in the thread) and shows what the bot noticed of the fault; the
 * thread caught up with every step.
 *
 * FAULTS=all (npm run faults) runs every fault at every step boundary; the default (CI) runs
 * every fault once, at a boundary chosen per fault. A table of the results is printed.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import IORedis, { Redis } from 'ioredis';
import {
  endpointHealth, ensureLabHealthy, hostEtcdctl, LAB_DIR, labConfigPath, labNode, labSh, memberList, pollUntil, run, waitLabHealthy,
} from './support/lab';
import { startBot, stopProcess } from './support/processes';
import { Harness, startHarness, TEST_SNAPSHOT_DIR } from './support/harness';
import { click, threadText, waitPlanMessage } from './support/plans';
import { startRedis, RedisServer } from './support/redis';

jest.setTimeout(60 * 60_000);

const AUDIT_CLI = join(__dirname, '..', 'dist', 'src', 'cli', 'audit.js');
const REDIS_PORT = 6441;
const LEASE_MS = 5000;
const WORKER_LOCK_MS = 4000;

type Fault = 'worker SIGKILL' | 'worker SIGTERM' | 'Redis restarted' | 'Redis unreachable' | 'SSH dropped' | 'node dies' | 'Slack 429' | 'Slack 500';
const FAULTS: Fault[] = ['worker SIGKILL', 'worker SIGTERM', 'Redis restarted', 'Redis unreachable', 'SSH dropped', 'node dies', 'Slack 429', 'Slack 500'];
const MID_STEP: Fault[] = ['SSH dropped', 'node dies'];
/** What the bot must have recorded of a fault it could notice (in the audit chain). */
const EVIDENCE: Partial<Record<Fault, RegExp>> = {
  'worker SIGKILL': /job\.resumed/,
  'worker SIGTERM': /job\.handed-over[\s\S]*job\.resumed|job\.resumed[\s\S]*job\.handed-over/,
};

interface Runbook {
  name: string;
  steps: number;
  /** The boundary each fault is injected at in the CI subset (1-based step index). */
  ciStep: (f: Fault, i: number) => number;
}
const RUNBOOKS: Runbook[] = [
  // replace-member: 1 snapshot, 2 remove, 3 stop, 4 move data, 5 pki, 6 add learner, 7 config, 8 start, 9 catch up, 10 promote, 11 verify
  { name: 'replace-member', steps: 11, ciStep: (_f, i) => [2, 3, 6, 8, 8, 9, 7, 10][i] ?? 5 },
];

interface AuditEvent { type: string; data?: Record<string, unknown> }

interface Cell { runbook: string; fault: Fault; step: number; survived: boolean; seconds: number; notes: string }

describe('fault suite', () => {
  let redis: RedisServer;
  let redisDir: string;
  let state: Redis;
  let h: Harness;
  const workers = new Map<number, ChildProcess>();
  const queueName = `faults-${process.pid}-${Date.now()}`;
  const auditKey = `t-audit-${queueName}`;
  let env: Record<string, string>;
  const cells: Cell[] = [];
  let runSeq = 0;

  const startWorker = () => {
    const w = startBot(env);
    workers.set(w.child.pid!, w.child);
    w.child.on('exit', () => workers.delete(w.child.pid!));
    return w.child;
  };
  /** Two workers at any time: a fault that killed one gets a fresh one. */
  const topUpWorkers = () => { while (workers.size < 2) startWorker(); };

  beforeAll(async () => {
    await ensureLabHealthy();
    redisDir = mkdtempSync(join(tmpdir(), 'medic-faults-redis-'));
    redis = await startRedis(REDIS_PORT, { persistIn: redisDir });
    state = new IORedis(redis.url, { maxRetriesPerRequest: 1, commandTimeout: 2000, retryStrategy: () => 200 });
    state.on('error', () => undefined);
    h = await startHarness({ worker: false, queueName, redisUrl: redis.url });
    env = {
      MEDIC_CONFIG: labConfigPath(), REDIS_URL: redis.url, MEDIC_QUEUE: queueName, MEDIC_AUDIT_KEY: auditKey,
      SLACK_BOT_TOKEN: h.fake.token, SLACK_API_URL: h.fake.url, MEDIC_SSH_KEY_FILE: join(LAB_DIR, 'bot_id_ed25519'),
      MEDIC_SNAPSHOT_DIR: TEST_SNAPSHOT_DIR, MEDIC_WORKER_LOCK_MS: String(WORKER_LOCK_MS), MEDIC_CLUSTER_LEASE_MS: String(LEASE_MS),
      MEDIC_SHUTDOWN_GRACE_MS: '5000',
    };
    topUpWorkers();
  }, 300_000);

  afterAll(async () => {
    printTable(cells);
    await Promise.all([...workers.values()].map((w) => stopProcess(w)));
    await h?.stop();
    state?.disconnect();
    try { process.kill(redis.pid, 'SIGCONT'); } catch { /* gone */ }
    await redis?.stop();
    rmSync(redisDir, { recursive: true, force: true });
    // Leave the lab healthy for the next suite, whatever happened above.
    await ensureLabHealthy();
  }, 300_000);

  const all = process.env.FAULTS === 'all';
  const matrix: Array<[string, Fault, number]> = [];
  for (const rb of RUNBOOKS) {
    FAULTS.forEach((f, i) => {
      if (all) for (let k = 1; k <= rb.steps; k++) matrix.push([rb.name, f, k]);
      else matrix.push([rb.name, f, rb.ciStep(f, i)]);
    });
  }

  it.each(matrix)('%s survives %s at step %i', async (name, fault, k) => {
    const rb = RUNBOOKS.find((r) => r.name === name)!;
    const started = Date.now();
    const cell: Cell = { runbook: rb.name, fault, step: k, survived: false, seconds: 0, notes: '' };
    cells.push(cell);
    try {
      await runScenario(rb, fault, k, cell);
      cell.survived = true;
    } finally {
      cell.seconds = Math.round((Date.now() - started) / 1000);
    }
  });

  async function runScenario(rb: Runbook, fault: Fault, k: number, cell: Cell): Promise<void> {
    const run = ++runSeq;
    await ensureLabHealthy();
    topUpWorkers();
    const prefix = `/medic-faults/${run}/`;
    for (let i = 0; i < 20; i++) await hostEtcdctl(['put', `${prefix}${i}`, `v${i}`]);
    const oldId = (await memberList()).find((m) => m.name === 'node3')!.id;
    const auditStart = await state.llen(auditKey);

    const seen = h.fake.messages('CLAB00001').length;
    await h.slash('replace-member lab node3', { user: 'U0ALICE' });
    const plan = await waitPlanMessage(h, /etcd replace-member — lab/, seen, 60_000);
    expect((await click(h, plan, 'approve', 'U0BOB')).reply).toMatch(/it runs now/);

    // The fault, as step k starts (seen in the audit chain the workers write).
    const startedEvent = await untilEvents(auditStart, `step ${k} to start`, 180_000, 50, (ev) => {
      const job = ev.find((e) => e.type === 'job.started' || e.type === 'job.resumed');
      return ev.some((e) => e.type === 'step.started' && e.data?.index === k) && job ? job : undefined;
    });
    const pid = Number(String(startedEvent!.data?.worker ?? '').split(':').pop());
    // Faults of the nodes' side land mid-step, while the step is using its connections.
    if (MID_STEP.includes(fault)) await new Promise((r) => setTimeout(r, 300));
    await inject(fault, pid);
    topUpWorkers();

    // The end: every step done, reported in the thread.
    await untilEvents(auditStart, 'the plan to finish', 300_000, 250, (ev) => ev.some((e) => e.type === 'job.succeeded') || undefined);
    // Chat may still be catching up (429/500): every step line and the final report arrive.
    await h.fake.waitFor(() => {
      const t = threadText(h, plan.ts);
      return /done: all 11 steps ran/.test(t) && Array.from({ length: rb.steps }, (_, i) => i + 1).every((i) => new RegExp(`step ${i}/${rb.steps}`).test(t)) || undefined;
    }, 120_000);

    // The cluster, checked independently of the bot.
    await waitLabHealthy(60_000);
    const members = await memberList();
    expect(members).toHaveLength(3);
    expect(members.filter((m) => m.isLearner)).toHaveLength(0);
    for (const n of ['node1', 'node2', 'node3']) expect(members.filter((m) => m.peerUrls.includes(labNode(n).peerUrl))).toHaveLength(1);
    expect(members.find((m) => m.name === 'node3')!.id).not.toBe(oldId);
    expect(Object.values(await endpointHealth())).toEqual([true, true, true]);
    const keys = await hostEtcdctl(['get', '--prefix', prefix, '--keys-only'], [labNode('node3').clientUrl]);
    expect(keys.split('\n').filter(Boolean)).toHaveLength(20);

    // No step done twice; every step accounted for.
    const ev = await events(auditStart);
    for (let i = 1; i <= rb.steps; i++) {
      const done = ev.filter((e) => e.type === 'step.succeeded' && e.data?.index === i).length;
      const skipped = ev.filter((e) => e.type === 'step.skipped' && e.data?.index === i).length;
      expect({ step: i, done: done <= 1, accounted: done + skipped >= 1 }).toEqual({ step: i, done: true, accounted: true });
    }
    const types = ev.map((e) => e.type).join(' ');
    const want = EVIDENCE[fault];
    if (want) expect(types).toMatch(want);
    cell.notes = ['job.resumed', 'job.handed-over', 'job.lease-lost', 'step.retried'].filter((t) => types.includes(t)).join(', ');

    // The chain verifies, also against the anchor posted with the final report.
    const cliEnv = { ...process.env, REDIS_URL: redis.url, MEDIC_AUDIT_KEY: auditKey };
    const anchor = /audit anchor #\d+[^`\n]*/.exec(threadText(h, plan.ts))?.[0];
    expect(anchor).toBeDefined();
    const ok = await runCli(['verify', '--anchor', anchor!], cliEnv);
    expect(ok.stdout + ok.stderr).toMatch(/anchors ok/);
    expect(ok.code).toBe(0);
  }

  /** Polls the audit chain until `pick` finds something; a failed plan ends the wait at once, with its reason. */
  async function untilEvents<T>(from: number, what: string, timeoutMs: number, everyMs: number, pick: (ev: AuditEvent[]) => T | undefined): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const ev = await events(from).catch(() => undefined); // Redis may be down: that's the fault
      if (ev) {
        const failed = ev.find((e) => e.type === 'job.failed');
        if (failed) throw new Error(`the plan failed while waiting for ${what}: ${JSON.stringify(failed.data)}`);
        const v = pick(ev);
        if (v !== undefined) return v;
      }
      if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }

  async function events(from: number): Promise<AuditEvent[]> {
    const lines = await state.lrange(auditKey, from, -1);
    return lines.map((l) => JSON.parse(l) as AuditEvent);
  }

  async function inject(fault: Fault, pid: number): Promise<void> {
    switch (fault) {
      case 'worker SIGKILL': {
        process.kill(pid, 'SIGKILL');
        await waitExit(pid);
        return;
      }
      case 'worker SIGTERM': {
        process.kill(pid, 'SIGTERM');
        await waitExit(pid);
        return;
      }
      case 'Redis restarted': {
        await redis.stop(); // SIGKILL: a crash; the AOF (fsync always) keeps every write
        redis = await startRedis(REDIS_PORT, { persistIn: redisDir });
        return;
      }
      case 'Redis unreachable': {
        // Longer than the lease: its holder must stop and another worker resume.
        process.kill(redis.pid, 'SIGSTOP');
        await new Promise((r) => setTimeout(r, LEASE_MS * 2));
        process.kill(redis.pid, 'SIGCONT');
        return;
      }
      case 'SSH dropped': {
        // Kill every SSH session process on every node: the bot's connections drop mid-use.
        for (const n of ['node1', 'node2', 'node3']) {
          const sshd = readFileSync(join(LAB_DIR, 'nodes', n, 'run', 'sshd.pid'), 'utf8').trim();
          await run('pkill', ['-KILL', '-P', sshd]);
        }
        return;
      }
      case 'node dies': {
        await labSh('stop-node', 'node3');
        await new Promise((r) => setTimeout(r, 4000));
        await labSh('start-node', 'node3');
        return;
      }
      case 'Slack 429': {
        for (const m of ['chat.postMessage', 'chat.update']) h.fake.failNext(m, ...Array.from({ length: 4 }, () => ({ status: 429, retryAfter: 1 })));
        return;
      }
      case 'Slack 500': {
        for (const m of ['chat.postMessage', 'chat.update']) h.fake.failNext(m, ...Array.from({ length: 4 }, () => ({ status: 500 })));
        return;
      }
    }
  }
});

function runCli(args: string[], env: NodeJS.ProcessEnv) {
  return run(process.execPath, [AUDIT_CLI, ...args], { env });
}

async function waitExit(pid: number): Promise<void> {
  await pollUntil(`process ${pid} to exit`, () => { try { process.kill(pid, 0); return false; } catch { return true; } }, 30_000, 50);
}

function printTable(cells: Cell[]): void {
  if (!cells.length) return;
  const rows = cells.map((c) => `| ${c.runbook} | ${c.fault} | ${c.step} | ${c.survived ? 'survived' : 'NOT survived'} | ${c.seconds} s | ${c.notes || '-'} |`);
  const ok = cells.filter((c) => c.survived).length;
  // eslint-disable-next-line no-console
  console.log([
    '| runbook | fault | at step | result | time | the bot noticed |', '| --- | --- | --- | --- | --- | --- |', ...rows,
    '', `${ok}/${cells.length} survived`,
  ].join('\n'));
}
