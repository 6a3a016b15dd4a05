/**
 * Issue 8, items 1-3 against the lab: a worker cut off from Redis stops acting within its
 * lease, a stale lock holder is refused on the node and at etcd, and a step that timed out
 * issues no further remote command. What reached a node is read from that node's own sshd
 * log (LogLevel VERBOSE: one "Starting session" line per command or SFTP session), not from
 * the bot's records.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import IORedis, { Redis } from 'ioredis';
import { createJobResources, JobResources } from '../src/actions/context';
import { runAction } from '../src/actions/actions';
import { createAuditLog } from '../src/audit/audit-log';
import { commands } from '../commands';
import { loadConfig } from '../src/config/load';
import type { ClusterConfig, MedicConfig } from '../src/config/schema';
import { createApprovalStore, PlanRecord } from '../src/engine/approvals';
import type { Plan } from '../src/engine/plan';
import { createWorkflow } from '../src/engine/workflow';
import { sh } from '../src/exec/shell';
import { createClusterLocks } from '../src/locks/cluster-lock';
import { createProbe } from '../src/app';
import {
  ensureLabHealthy, hostEtcdctlRaw, LAB_BOT_KEY, LAB_DIR, labConfigPath, labSh, pollUntil, sshNode, waitLabHealthy,
} from './support/lab';
import { startRedis, RedisServer } from './support/redis';

const REDIS_PORT = 6431;
const TEST_MANIFEST_DIR = '/etc/kubernetes/medic-fence-test';
const TEST_WORK_DIR = '/etc/kubernetes/medic-fence-test-work';

/** Sessions node3's sshd has started so far (commands and SFTP alike). */
function sessionsOn(node: string): number {
  const log = readFileSync(join(LAB_DIR, 'nodes', node, 'log', 'sshd.log'), 'utf8');
  return log.split('\n').filter((l) => l.includes('Starting session:')).length;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('fencing, lease loss and aborted steps (lab)', () => {
  let redisServer: RedisServer;
  let redis: Redis;
  let config: MedicConfig;
  let lab: ClusterConfig;
  /** The lab cluster, but etcd's manifest lives where the node's kubelet never looks. */
  let unwatched: ClusterConfig;
  let sshKey: Buffer;
  const opened: JobResources[] = [];

  beforeAll(async () => {
    await ensureLabHealthy();
    redisServer = await startRedis(REDIS_PORT);
    // As the bot connects to its state Redis: fail a command instead of queueing it forever.
    redis = new IORedis(redisServer.url, { maxRetriesPerRequest: 1, connectTimeout: 3000, commandTimeout: 2000, retryStrategy: () => 200 });
    redis.on('error', () => undefined);
    config = loadConfig(labConfigPath());
    lab = config.clusters[0];
    unwatched = { ...lab, paths: { ...lab.paths, manifest: `${TEST_MANIFEST_DIR}/etcd.yaml`, workDir: TEST_WORK_DIR } };
    sshKey = readFileSync(LAB_BOT_KEY);
    // node3 without etcd, and a stopped manifest that no kubelet will ever run: starting it
    // is a wait (pgrep every 500 ms) that never ends by itself.
    await labSh('stop-etcd', 'node3');
    const prep = await sshNode('node3', `mkdir -p ${TEST_MANIFEST_DIR} ${TEST_WORK_DIR}/stopped && rm -f ${TEST_MANIFEST_DIR}/etcd.yaml ${TEST_WORK_DIR}/fence && cp /etc/kubernetes/etcd.yaml.lab-stopped ${TEST_WORK_DIR}/stopped/etcd.yaml`);
    expect(prep.code).toBe(0);
  }, 180_000);

  afterAll(async () => {
    for (const r of opened) await r.close().catch(() => undefined);
    redis?.disconnect();
    try { process.kill(redisServer.pid, 'SIGCONT'); } catch { /* gone */ }
    await redisServer?.stop();
    await sshNode('node1', `rm -rf /tmp/medic-fence-* ${TEST_WORK_DIR} ${lab.paths.workDir}/fence`);
    await sshNode('node3', `rm -rf ${TEST_MANIFEST_DIR} ${TEST_WORK_DIR}`);
    // Leave the lab as it was found: all three members healthy.
    await labSh('start-etcd', 'node3');
    await waitLabHealthy(90_000);
  }, 180_000);

  const resourcesFor = (cluster: ClusterConfig, fence?: Parameters<typeof createJobResources>[0]['fence']) => {
    const r = createJobResources({ cluster, sshKey, fence });
    opened.push(r);
    return r;
  };

  it('refuses a stale lock holder on the node (fence file) and at etcd (lock token)', async () => {
    const locks = createClusterLocks(redis, 2000);
    const a = await locks.acquire('lab', { jobId: 'fa', requester: 'console:test', progress: 'step 1/1' });
    const fenceOf = (l: typeof a) => ({ token: l.token, check: async () => { if (!(await l.isCurrent())) throw Object.assign(new Error(`token ${l.token} is stale`), { name: 'MedicError', code: 'FENCED' }); } });
    const resA = resourcesFor(lab, fenceOf(a));
    const first = await (await resA.session('node1')).exec(sh`touch /tmp/medic-fence-a`);
    expect(first.code).toBe(0);
    // A is cut off; its lease lapses and B takes the cluster with a higher token.
    await sleep(2500);
    const b = await locks.acquire('lab', { jobId: 'fb', requester: 'console:test', progress: 'step 1/1' });
    expect(b.token).toBeGreaterThan(a.token);
    const resB = resourcesFor(lab, fenceOf(b));
    expect((await (await resB.session('node1')).exec(sh`true`)).code).toBe(0);
    expect((await sshNode('node1', `cat ${lab.paths.workDir}/fence`)).stdout.trim()).toBe(String(b.token));

    // A wakes up and tries to go on: refused on the node, before its command ran.
    await expect((await resA.session('node1')).exec(sh`touch /tmp/medic-fence-stale`)).rejects.toMatchObject({ code: 'FENCED' });
    expect((await sshNode('node1', 'test -e /tmp/medic-fence-stale && echo present || echo absent')).stdout.trim()).toBe('absent');
    // ... and a file write (SFTP) is refused the same way.
    await expect((await resA.session('node1')).writeFile('/tmp/medic-fence-stale-file', Buffer.from('x'))).rejects.toMatchObject({ code: 'FENCED' });
    expect((await sshNode('node1', 'test -e /tmp/medic-fence-stale-file && echo present || echo absent')).stdout.trim()).toBe('absent');
    // ... and at etcd, immediately before the call.
    const etcdA = await resA.etcd('node1');
    await expect(etcdA.put('medic-fence-stale', 'x')).rejects.toMatchObject({ code: 'FENCED' });
    const got = await hostEtcdctlRaw(['get', 'medic-fence-stale', '--print-value-only']);
    expect(got.stdout.trim()).toBe('');
    // The current holder still acts.
    await (await resB.etcd('node1')).put('medic-fence-current', 'ok');
    expect((await hostEtcdctlRaw(['get', 'medic-fence-current', '--print-value-only'])).stdout.trim()).toBe('ok');
    await hostEtcdctlRaw(['del', 'medic-fence-current']);
    await b.release();
  }, 60_000);

  it('issues no remote command after a step timed out', async () => {
    const res = resourcesFor(unwatched);
    const step = { action: 'node.startEtcd' as const, node: 'node3', params: { node: 'node3' }, describe: 'start etcd on node3' };
    const before = sessionsOn('node3');
    const started = Date.now();
    await expect(runAction(step, {
      res, planId: 'ft', requester: 'console:test', outputs: {}, progress: () => undefined,
      verify: async () => { throw new Error('not used'); }, stepTimeoutMs: { wait: 3000 },
    })).rejects.toMatchObject({ code: 'TIMEOUT' });
    const atTimeout = sessionsOn('node3');
    expect(Date.now() - started).toBeLessThan(6000);
    // The step was acting until then (its wait polls the node) ...
    expect(atTimeout - before).toBeGreaterThanOrEqual(3);
    // ... and nothing more reaches the node, though the runtime's own wait had 175 s to go.
    await sleep(3000);
    expect(sessionsOn('node3')).toBe(atTimeout);
    // Resources of a job that stopped stay closed.
    await res.close();
    await expect(res.session('node3')).rejects.toMatchObject({ code: 'CANCELLED' });
    await expect(res.etcd('node1')).rejects.toMatchObject({ code: 'CANCELLED' });
    // Put the manifest back where the next test expects it.
    await sshNode('node3', `mv ${TEST_MANIFEST_DIR}/etcd.yaml ${TEST_WORK_DIR}/stopped/etcd.yaml`);
  }, 60_000);

  it('a worker whose Redis becomes unreachable stops acting within its lease', async () => {
    const leaseMs = 4000;
    const prefix = `fence-${Date.now()}`;
    const audit = createAuditLog(redis, { key: `${prefix}:audit` });
    const approvals = createApprovalStore(redis, prefix);
    const locks = createClusterLocks(redis, leaseMs);
    const wfConfig: MedicConfig = { ...config, clusters: [unwatched] };
    const wf = createWorkflow({
      config: wfConfig, commands, approvals, locks, audit, surfaces: {},
      probe: createProbe(sshKey), enqueueExecution: async (_j, id) => id,
      openResources: (cluster, _plan, fence) => {
        const res = resourcesFor(cluster, fence);
        return { run: (s, ctx) => runAction(s, { ...ctx, res }), takeCommands: () => res.takeCommands(), close: () => res.close() };
      },
    });
    const plan: Plan = {
      command: 'add-member', cluster: 'lab', args: { cluster: 'lab', node: 'node3' }, facts: [], warnings: [], basis: {} as Plan['basis'],
      steps: [{ action: 'node.startEtcd', node: 'node3', params: { node: 'node3' }, describe: 'start etcd on node3' }],
    };
    const origin = { adapter: 'console' as const, channel: 'console', user: 'console:test' };
    const rec: PlanRecord = {
      id: 'f1', cluster: 'lab', command: 'add-member', risk: 'mutating', plan, hash: 'h', requester: origin.user, origin, required: 0,
      createdAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 600_000).toISOString(),
    };
    expect(await approvals.create(rec)).toBe(true);
    await approvals.transition('f1', ['pending'], 'running');
    // A resumed job (checkpoint present) runs its steps without re-planning.
    const job = {
      command: 'add-member', args: plan.args, cluster: 'lab', origin, requestedAt: new Date().toISOString(), phase: 'execute' as const, planId: 'f1',
      exec: { cursor: 0, outputs: {}, resumes: 0, states: [], startedAt: new Date().toISOString() },
    };
    const base = sessionsOn('node3');
    const result = wf.executeJob(job, 'xf1', { checkpoint: async () => undefined, progress: async () => undefined })
      .then((report) => ({ text: report.verdict?.text ?? '', at: Date.now() }));

    // Once the step is polling node3, Redis stops answering (SIGSTOP: connections stay open).
    await pollUntil('the step to start acting on node3', () => sessionsOn('node3') >= base + 3, 30_000, 100);
    await pollUntil('the lease to be held', async () => (await redis.pttl('etcd-medic:lock:lab')) > 0, 10_000, 100);
    const pttl = await redis.pttl('etcd-medic:lock:lab');
    const stoppedAt = Date.now();
    process.kill(redisServer.pid, 'SIGSTOP');
    const expiry = stoppedAt + pttl;

    const r = await result;
    // The worker says so and leaves the plan to whoever holds the cluster next ...
    expect(r.text).toMatch(/lost the lock on lab .*another worker carries the plan on/);
    // ... having let go before its lease could lapse in Redis ...
    expect(r.at).toBeLessThan(expiry);
    await sleep(Math.max(0, expiry - Date.now()));
    const atExpiry = sessionsOn('node3');
    // ... and nothing reached node3 after that.
    await sleep(3000);
    expect(sessionsOn('node3')).toBe(atExpiry);

    // The record of it reaches the audit log once Redis answers again.
    process.kill(redisServer.pid, 'SIGCONT');
    await pollUntil('job.lease-lost in the audit log', async () => {
      const events = await audit.recent({ limit: 20 }).catch(() => []);
      return events.some((e) => e.type === 'job.lease-lost' && e.jobId === 'f1');
    }, 20_000, 250);
    await sshNode('node3', `mv ${TEST_MANIFEST_DIR}/etcd.yaml ${TEST_WORK_DIR}/stopped/etcd.yaml 2>/dev/null; true`);
  }, 90_000);
});
