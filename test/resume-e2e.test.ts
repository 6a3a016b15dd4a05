/**
 * Crash safety: a worker process SIGKILLed in the middle of add-member. BullMQ hands the
 * job to another worker process after the first one's lock lapses; it resumes at the step
 * that didn't finish (each step checks before it acts) and finishes. The audit chain
 * verifies with the CLI, shows the resume, and a changed line is detected.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import IORedis from 'ioredis';
import { endpointHealth, hostEtcdctl, hostEtcdctlRaw, labNode, labSh, memberIdsByName, memberList, pollUntil, run, waitLabHealthy, LAB_DIR, labConfigPath, ensureLabHealthy } from './support/lab';
import { startBot, stopProcess } from './support/processes';
import { Harness, LAB_CHANNEL, startHarness, TEST_REDIS_URL, TEST_SNAPSHOT_DIR } from './support/harness';
import { click, threadText, waitPlanMessage } from './support/plans';

jest.setTimeout(300_000);

const AUDIT_CLI = join(__dirname, '..', 'dist', 'src', 'cli', 'audit.js');

describe('a worker killed in the middle of add-member', () => {
  let h: Harness;
  const procs: ChildProcess[] = [];
  const queueName = `resume-${process.pid}-${Date.now()}`;
  const auditKey = `t-audit-${queueName}`;
  let env: Record<string, string>;

  beforeAll(async () => {
    await ensureLabHealthy();
    // The web side only: plans and executions run in the worker processes below.
    h = await startHarness({
      worker: false,
      queueName,
      mutateConfig: (c) => { c.clusters.find((x) => x.name === 'lab')!.access.mutating.approvers = ['U0BOB']; },
    });
    env = {
      MEDIC_CONFIG: labConfigPath(), REDIS_URL: TEST_REDIS_URL, MEDIC_QUEUE: queueName, MEDIC_AUDIT_KEY: auditKey,
      SLACK_BOT_TOKEN: h.fake.token, SLACK_API_URL: h.fake.url, MEDIC_SSH_KEY_FILE: join(LAB_DIR, 'bot_id_ed25519'),
      MEDIC_SNAPSHOT_DIR: TEST_SNAPSHOT_DIR,
      // Short lock: the dead worker's job goes back to the queue a few seconds after it died.
      MEDIC_WORKER_LOCK_MS: '4000',
      MEDIC_CLUSTER_LEASE_MS: '6000',
    };
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => stopProcess(p)));
    await h?.stop();
  });

  it('another worker resumes and finishes; one node3; the audit chain verifies, shows the resume, and catches an edited line', async () => {
    for (let i = 0; i < 10; i++) await hostEtcdctl(['put', `/medic-test/resume/${i}`, `v${i}`]);
    // node3 leaves the cluster the way a failed member is removed by hand; its etcd then
    // keeps failing to start (it was removed), as on a real node.
    const ids = await memberIdsByName();
    // etcd refuses membership changes for a few seconds after a member joined: retry.
    await pollUntil('member remove accepted', async () => (await hostEtcdctlRaw(['member', 'remove', ids.node3], [labNode('node1').clientUrl])).code === 0, 30_000, 1000);
    await pollUntil('node3 out of the member list', async () => !(await memberList([labNode('node1').clientUrl])).some((m) => m.id === ids.node3), 30_000);

    const a = startBot(env);
    procs.push(a.child);
    await h.slash('add-member lab node3', { user: 'U0ALICE' });
    const plan = await waitPlanMessage(h, /etcd add-member — lab/, 0, 60_000);
    expect((await click(h, plan, 'approve', 'U0BOB')).reply).toMatch(/it runs now/);

    // Kill the worker as soon as node3 has been added as a learner: mid-job, lock held.
    await h.fake.waitFor(() => /step 4\/9: etcd\.memberAddLearner/.test(threadText(h, plan.ts)) || undefined, 120_000);
    a.child.kill('SIGKILL');
    await stopProcess(a.child);
    const stoppedAt = threadText(h, plan.ts);
    expect(stoppedAt).not.toMatch(/done: all 9 steps ran/);

    const b = startBot(env);
    procs.push(b.child);
    await h.fake.waitFor(() => /done: all 9 steps ran/.test(threadText(h, plan.ts)) || undefined, 180_000);
    const thread = threadText(h, plan.ts);
    expect(thread).toMatch(/Resumed by another worker at step [5-9]\/9/);

    const members = await memberList();
    expect(members.filter((m) => m.name === 'node3' || m.peerUrls.includes(labNode('node3').peerUrl))).toHaveLength(1);
    expect(members).toHaveLength(3);
    expect(members.filter((m) => m.isLearner)).toHaveLength(0);
    expect(Object.values(await endpointHealth())).toEqual([true, true, true]);
    const keys = await hostEtcdctl(['get', '--prefix', '/medic-test/resume/', '--keys-only'], [labNode('node3').clientUrl]);
    expect(keys.split('\n').filter(Boolean)).toHaveLength(10);

    // The audit trail, checked with the CLI a post-mortem would use.
    const cliEnv = { ...process.env, REDIS_URL: TEST_REDIS_URL, MEDIC_AUDIT_KEY: auditKey };
    const ok = await run(process.execPath, [AUDIT_CLI, 'verify'], { env: cliEnv });
    expect(ok.stdout + ok.stderr).not.toMatch(/problem|broken/i);
    expect(ok.code).toBe(0);
    const tail = await run(process.execPath, [AUDIT_CLI, 'tail', '--cluster', 'lab', '-n', '200'], { env: cliEnv });
    expect(tail.stdout).toMatch(/job\.resumed/);
    expect(tail.stdout).toMatch(/approval\.granted/);

    // Someone edits one line (the approver's name): verify names that line and fails.
    const redis = new IORedis(TEST_REDIS_URL);
    try {
      const lines = await redis.lrange(auditKey, 0, -1);
      const i = lines.findIndex((l) => l.includes('"approval.granted"'));
      expect(i).toBeGreaterThanOrEqual(0);
      await redis.lset(auditKey, i, lines[i].replace('U0BOB', 'U0EVE'));
      const bad = await run(process.execPath, [AUDIT_CLI, 'verify'], { env: cliEnv });
      expect(bad.code).toBe(1);
      expect(bad.stdout + bad.stderr).toContain(`line ${i + 1}`);
    } finally {
      redis.disconnect();
    }
  });

  afterAll(async () => {
    // Leave the lab as the next suite expects it, whatever happened above.
    const names = Object.keys(await memberIdsByName().catch(() => ({})));
    if (names.length !== 3) await labSh('up').catch(() => undefined);
  });
});
