/**
 * Restore from a snapshot, end to end in the lab, through signed Slack requests: every
 * data dir destroyed, `/etcd restore lab <snapshot> --mode all|single`, two approvals by
 * people other than the requester, every step in the thread, then 3/3 healthy with the
 * snapshot's keys and a revision at least the snapshot's (checked with host-side etcdctl).
 * A damaged snapshot stops before any node is touched; a restore whose worker is
 * SIGKILLed resumes on another worker process and ends correct.
 */
import type { ChildProcess } from 'node:child_process';
import { startBot, stopProcess } from './support/processes';
import { chmodSync, copyFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import IORedis from 'ioredis';
import { createEtcdMemberClient, EtcdMemberClient } from '../src/exec/etcd-client';
import { saveSnapshot } from '../src/snapshot/save';
import { createSnapshotStore, SnapshotRecord } from '../src/snapshot/store';
import {
  endpointHealth, hostEtcdctl, labConfigPath, labFresh, labNode, labSh, memberIdsByName, memberList, pollUntil, waitLabHealthy, wipeAllData,
  LAB_BOT_CERT, LAB_DIR, LAB_ETCD, LAB_NODES, ensureLabHealthy, hostEtcdctlRaw,
} from './support/lab';
import { DEFAULT_REVISION_BUMP } from '../src/restore/plan';
import { blocksText, Harness, LAB_CHANNEL, startHarness, TEST_REDIS_URL, TEST_SNAPSHOT_DIR } from './support/harness';
import { click, planIdOf, threadText, waitPlanMessage, messageMatches } from './support/plans';

jest.setTimeout(600_000);

const ALICE = 'U0ALICE';
const BOB = 'U0BOB';
const CAROL = 'U0CAROL';
const PREFIX = '/medic-test/restore/';
const KEYS = 1000;

const store = createSnapshotStore({ dir: TEST_SNAPSHOT_DIR });

/**
 * etcd 3.5 and newer: the lab's host tooling has etcdutl, so the restore bumps the revision
 * and marks it compacted. 3.4 (Debian's etcdctl only): no bump, and the plan says so.
 */
const BUMPS = LAB_ETCD !== '3.4';
const TOOL = BUMPS ? 'etcdutl' : 'etcdctl';
/** What restore.prepareData says of how it restored. */
const METHOD = BUMPS ? /with etcdutl 3\.\d+\.\d+, revision bumped by \d+ and marked compacted/ : /with etcdctl 3\.4\.\d+, revision NOT bumped/;

/**
 * A queue name whose job ids (= plan ids) start far from every other queue's: plans are
 * kept in Redis by id for all queues alike, and every new queue counts from 1, so a second
 * queue in the same Redis would otherwise mint plan ids that already exist.
 */
async function freshQueue(name: string): Promise<string> {
  const redis = new IORedis(TEST_REDIS_URL);
  try {
    await redis.set(`bull:${name}:id`, String(100_000 + Math.floor(Math.random() * 800_000)));
  } finally {
    redis.disconnect();
  }
  return name;
}

function directClient(node = 'node1'): EtcdMemberClient {
  return createEtcdMemberClient({
    endpoint: labNode(node).clientUrl, deadlineMs: 10_000, label: node,
    tls: { ca: readFileSync(LAB_BOT_CERT.ca), cert: readFileSync(LAB_BOT_CERT.cert), key: readFileSync(LAB_BOT_CERT.key) },
  });
}

async function writeKeys(): Promise<void> {
  const c = directClient();
  try {
    for (let i = 0; i < KEYS; i += 50) {
      await Promise.all(Array.from({ length: Math.min(50, KEYS - i) }, (_, k) => c.put(`${PREFIX}${i + k}`, `value-${i + k}`)));
    }
  } finally {
    c.close();
  }
}

async function takeSnapshot(): Promise<SnapshotRecord> {
  const c = directClient();
  try {
    return await saveSnapshot({ client: c, store, cluster: 'lab', node: 'node1', requester: ALICE, reason: 'restore e2e', kind: 'manual' });
  } finally {
    c.close();
  }
}

/** Every node's data dir emptied; then waits until what etcd does about it has settled. */
async function destroyAllData(): Promise<void> {
  // static: three empty members form a fresh, empty cluster; kubeadm: node1 alone, empty, the
  // others crash-looping.
  await wipeAllData();
  const keys = await hostEtcdctl(['get', '--prefix', PREFIX, '--keys-only']);
  expect(keys.trim()).toBe('');
}

async function revisionNow(): Promise<bigint> {
  const out = await hostEtcdctl(['get', `${PREFIX}0`, '-w', 'json']);
  const m = /"revision":(\d+)/.exec(out);
  if (!m) throw new Error(`no revision in ${out}`);
  return BigInt(m[1]);
}

/** What a user checks afterwards: 3 started voters, all healthy, every key, the revision. */
async function expectRestored(rec: SnapshotRecord): Promise<void> {
  const members = await memberList();
  expect(members.map((m) => m.name).sort()).toEqual(['node1', 'node2', 'node3']);
  expect(members.filter((m) => m.isLearner)).toHaveLength(0);
  expect(Object.values(await endpointHealth())).toEqual([true, true, true]);
  for (const n of LAB_NODES) {
    const keys = await hostEtcdctl(['get', '--prefix', PREFIX, '--keys-only'], [n.clientUrl]);
    expect(keys.split('\n').filter(Boolean)).toHaveLength(KEYS);
  }
  expect(await hostEtcdctl(['get', `${PREFIX}999`, '--print-value-only'])).toBe('value-999\n');
  expect(await revisionNow()).toBeGreaterThanOrEqual(BigInt(rec.revision));
  if (BUMPS) {
    // Past the snapshot's revision by the bump (at least 1e9), and everything below it compacted:
    // a watch cache holding an old revision must relist, not resume.
    expect(await revisionNow()).toBeGreaterThanOrEqual(BigInt(rec.revision) + BigInt(DEFAULT_REVISION_BUMP));
    const old = await hostEtcdctlRaw(['get', `${PREFIX}999`, `--rev=${rec.revision}`]);
    expect(old.code).not.toBe(0);
    expect(old.stderr).toMatch(/required revision has been compacted/);
  }
}

/** Requests the restore as Alice; returns the plan message. */
async function requestPlan(h: Harness, id: string, mode: 'all' | 'single') {
  const before = h.fake.messages(LAB_CHANNEL).length;
  expect((await h.slash(`restore lab ${id} --mode ${mode}`, { user: ALICE })).status).toBe(200);
  const plan = await waitPlanMessage(h, /etcd restore — lab/, before, 120_000);
  return { plan, planId: planIdOf(plan), text: blocksText(plan.blocks ?? []) };
}

/** Checks who may approve, then approves as Bob and Carol (two people other than the requester). */
async function approveBoth(h: Harness, plan: Awaited<ReturnType<typeof requestPlan>>['plan']): Promise<void> {
  expect(blocksText(plan.blocks ?? [])).toMatch(/needs 2 approvals from someone other than the requester/);
  expect((await click(h, plan, 'approve', ALICE)).reply).toMatch(/you requested plan \S+: someone else must approve it/);
  expect((await click(h, plan, 'approve', BOB)).reply).toMatch(/you approved plan \S+: 1 more approval\(s\) needed/);
  expect((await click(h, plan, 'approve', BOB)).reply).toMatch(/already approved/);
  expect((await click(h, plan, 'approve', CAROL)).reply).toMatch(/you approved plan \S+: it runs now/);
}

/** Requests the restore as Alice, checks who may approve, approves as Bob then Carol; returns the plan message. */
async function requestAndApprove(h: Harness, id: string, mode: 'all' | 'single') {
  const r = await requestPlan(h, id, mode);
  await approveBoth(h, r.plan);
  return r;
}

async function waitDone(h: Harness, ts: string, steps: number, timeoutMs = 300_000): Promise<string> {
  await h.fake.waitFor(() => /done: all \d+ steps ran|failed at step/.test(threadText(h, ts)) || undefined, timeoutMs);
  const thread = threadText(h, ts);
  if (!new RegExp(`done: all ${steps} steps ran`).test(thread)) throw new Error(`the restore did not finish:\n${thread}`);
  for (let i = 1; i <= steps; i++) expect(thread).toMatch(new RegExp(`step ${i}/${steps}: `));
  return thread;
}

describe('restore from a snapshot (lab)', () => {
  let h: Harness;
  let rec: SnapshotRecord;
  const procs: ChildProcess[] = [];

  beforeAll(async () => {
    // Destroying every data dir re-forms a cluster only from lab.sh's own manifests (state
    // `new`): an earlier suite's rebuilds leave `existing` ones. Start from a fresh lab.
    await labFresh();
    await ensureLabHealthy();
    h = await startHarness({
      queueName: await freshQueue(`restore-${process.pid}-${Date.now()}`),
      mutateConfig: (c) => {
        const lab = c.clusters.find((x) => x.name === 'lab')!;
        lab.access.destructive.approvers = [BOB, CAROL];
      },
    });
    await writeKeys();
    rec = await takeSnapshot();
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => stopProcess(p)));
    await h?.stop();
    // Restores leave every node's old data aside and node1 configured as the single-mode
    // seed: give the next suite a lab as `up` makes it.
    await labFresh();
  });

  it('every data dir destroyed -> restore --mode all -> two approvals -> every step in the thread -> 3/3 healthy, the 1000 keys, revision >= the snapshot\'s', async () => {
    expect(rec.liveKeys).toBeGreaterThanOrEqual(KEYS);
    await destroyAllData();
    const started = Date.now();
    const { plan, planId, text } = await requestAndApprove(h, rec.id, 'all');
    expect(text).toContain(rec.id);
    expect(text).toMatch(/Cluster token[\s\S]*etcd-medic-restore-[0-9a-f]{16}/);
    expect(text).toMatch(BUMPS ? /Revision bump[\s\S]*marked compacted, with etcdutl 3\.\d+\.\d+ on this worker's host/ : /revision is NOT bumped/);
    expect(text).toMatch(/steps 2-4, 5-7, 9-11, 12-14 and 15-17 run at the same time/);
    const thread = await waitDone(h, plan.ts, 18);
    console.log(`restore --mode all: ${((Date.now() - started) / 1000).toFixed(1)} s from request to done`);
    expect(thread).toMatch(/Approved by U0BOB \(1\/2\)/);
    expect(thread).toMatch(/Approved by U0CAROL \(2\/2\)/);
    expect(thread).toMatch(new RegExp(`step 1/18: snapshot\\.verifyFile .*sha256 as recorded, etcd checksum matches, ${TOOL} snapshot status`));
    expect(thread).toMatch(new RegExp(`step 8/18: restore\\.prepareData .*${METHOD.source}`));
    expect(thread).toMatch(/step 9\/18: restore\.installData node1 .*sha256 \w+ checked on the node/);
    const verified = new RegExp(`step 18/18: restore\\.verify .*3/3 members healthy.*${rec.liveKeys} keys at revision (\\d+), as in the snapshot`).exec(thread);
    expect(verified).not.toBeNull();
    expect(BigInt(verified![1]!)).toBe(BUMPS ? BigInt(rec.revision) + BigInt(/revision bumped by (\d+)/.exec(thread)![1]!) : BigInt(rec.revision));
    await messageMatches(h, plan.ts, /done/);
    await expectRestored(rec);
    // The destroyed data dirs were moved aside, not deleted; the restore's copies are gone from the bot's host.
    const aside = await labSh('exec', 'node2', '--', 'ls', '-a', '/var/lib/etcd');
    expect(aside).toContain(`member.medic-job-${planId}`);
    expect(aside).not.toContain('.medic-restore-');
    expect(existsSync(join(TEST_SNAPSHOT_DIR, '.restore', planId))).toBe(false);
  });

  it('restore --mode all of a cluster that still serves: the stops run at once and the leader stops last, without waiting on a leadership transfer', async () => {
    await waitLabHealthy();
    const { plan } = await requestAndApprove(h, rec.id, 'all');
    const thread = await waitDone(h, plan.ts, 18);
    // One of steps 2-4 found its node leading and stopped it once the other two were down.
    expect(thread).toMatch(/step [234]\/18: node\.stopEtcd (node\d) — [\d.]+ s — etcd on \1 stopped \(kubeadm-static-pod\); it led the cluster, so it stopped after node\d, node\d/);
    await messageMatches(h, plan.ts, /done/);
    await expectRestored(rec);
  });

  it('a damaged snapshot: the plan is posted, but the first step refuses it and no node is touched; an unverified one is refused at once', async () => {
    await waitLabHealthy();
    const ids = await memberIdsByName();
    // A copy of the good snapshot, registered in the store, with bytes flipped in the middle.
    const badId = `${rec.id}-bad`;
    const dir = join(TEST_SNAPSHOT_DIR, 'lab');
    copyFileSync(store.path(rec), join(dir, `${badId}.db`));
    const bytes = readFileSync(join(dir, `${badId}.db`));
    for (let i = 0; i < 16; i++) bytes[Math.floor(bytes.length / 2) + i] ^= 0xff;
    writeFileSync(join(dir, `${badId}.db`), bytes, { mode: 0o600 });
    writeFileSync(join(dir, `${badId}.json`), JSON.stringify({ ...rec, id: badId }), { mode: 0o600 });
    chmodSync(join(dir, `${badId}.db`), 0o600);

    const { plan, planId } = await requestAndApprove(h, badId, 'all');
    await h.fake.waitFor(() => /failed at step/.test(threadText(h, plan.ts)) || undefined, 120_000);
    const thread = threadText(h, plan.ts);
    expect(thread).toMatch(/failed at step 1\/18: snapshot\.verifyFile: snapshot \S+-bad on the bot's host has sha256 .* the file changed or is damaged/);
    expect(thread).toMatch(/no step ran/);
    expect(thread).not.toMatch(/step 2\/18/);
    expect(await memberIdsByName()).toEqual(ids);
    expect(Object.values(await endpointHealth())).toEqual([true, true, true]);
    expect(await labSh('exec', 'node1', '--', 'ls', '-a', '/var/lib/etcd')).not.toContain(`member.medic-job-${planId}`);

    // Never verified at all (no tool read it, no etcd checksum): refused before any plan.
    const rawId = `${rec.id}-raw`;
    copyFileSync(store.path(rec), join(dir, `${rawId}.db`));
    writeFileSync(join(dir, `${rawId}.json`), JSON.stringify({ ...rec, id: rawId, verified: { by: 'none', integrity: 'none' } }), { mode: 0o600 });
    const before = h.fake.messages(LAB_CHANNEL).length;
    await h.slash(`restore lab ${rawId}`, { user: ALICE });
    const refused = await h.fake.waitFor((f) => f.messages(LAB_CHANNEL).slice(before).find((m) => /restore/.test(m.text ?? '')), 60_000);
    expect(refused.text).toMatch(/refused: snapshot \S+-raw was never verified/);
    expect((refused.blocks ?? []).some((b) => (b as { type: string }).type === 'actions')).toBe(false);
    for (const id of [badId, rawId]) for (const ext of ['json', 'db']) rmSync(join(dir, `${id}.${ext}`), { force: true });
  });

  it('a restore whose worker is SIGKILLed mid-job resumes on another worker process (its prepared data gone) and ends correct', async () => {
    await destroyAllData();
    const queueName = await freshQueue(`restore-resume-${process.pid}-${Date.now()}`);
    const web = await startHarness({
      worker: false, queueName,
      mutateConfig: (c) => { c.clusters.find((x) => x.name === 'lab')!.access.destructive.approvers = [BOB, CAROL]; },
    });
    const logs: Array<[string, () => string]> = [];
    try {
      const env = {
        MEDIC_CONFIG: labConfigPath(), REDIS_URL: TEST_REDIS_URL, MEDIC_QUEUE: queueName, MEDIC_AUDIT_KEY: `t-audit-${queueName}`,
        SLACK_BOT_TOKEN: web.fake.token, SLACK_API_URL: web.fake.url, MEDIC_SSH_KEY_FILE: join(LAB_DIR, 'bot_id_ed25519'),
        MEDIC_SNAPSHOT_DIR: TEST_SNAPSHOT_DIR, MEDIC_WORKER_LOCK_MS: '4000', MEDIC_CLUSTER_LEASE_MS: '6000',
      };
      const a = startBot(env);
      procs.push(a.child);
      logs.push(['worker A', a.log]);
      const { plan, planId } = await requestAndApprove(web, rec.id, 'all');
      // Killed once the data is prepared: the installs (steps 9-11, one batch) are in flight or to come.
      await web.fake.waitFor(() => /step 8\/18: restore\.prepareData/.test(threadText(web, plan.ts)) || undefined, 180_000);
      a.child.kill('SIGKILL');
      await stopProcess(a.child);
      expect(threadText(web, plan.ts)).not.toMatch(/done: all 18 steps ran/);
      // As if the next worker ran on another host: the tars prepared by the dead one are gone.
      rmSync(join(TEST_SNAPSHOT_DIR, '.restore', planId), { recursive: true, force: true });

      const b = startBot(env);
      procs.push(b.child);
      logs.push(['worker B', b.log]);
      const thread = await waitDone(web, plan.ts, 18);
      expect(thread).toMatch(/Resumed by another worker at step (9|1\d)\/18/);
      // Every install the second worker did had to restore the data again, the same way.
      const resumedAt = Number(/Resumed by another worker at step (\d+)\/18/.exec(thread)![1]);
      const installsAfter = [...thread.matchAll(/✅ step (\d+)\/18: restore\.installData (node\d) — [^\n]*/g)].filter((m) => Number(m[1]) >= resumedAt);
      for (const m of installsAfter) expect(m[0]).toMatch(new RegExp(`restored again on .* ${METHOD.source}`));
      console.log(`resume: worker B resumed at step ${resumedAt}; installs redone with regenerated data: ${installsAfter.map((m) => m[2]).join(', ') || 'none (A had finished them)'}`);
      await expectRestored(rec);
    } catch (e) {
      for (const [who, log] of logs) console.log(`${who} log:\n${log().slice(-6000)}`);
      throw e;
    } finally {
      await web.stop();
    }
  });

  it('every data dir destroyed -> restore --mode single -> node1 alone, then node2 and node3 join -> 3/3 healthy, the keys, the revision', async () => {
    await destroyAllData();
    const started = Date.now();
    const { plan, text } = await requestAndApprove(h, rec.id, 'single');
    expect(text).toMatch(/single: node1 restored alone, then node2, node3 added back one by one/);
    const thread = await waitDone(h, plan.ts, 31);
    console.log(`restore --mode single: ${((Date.now() - started) / 1000).toFixed(1)} s from request to done`);
    expect(thread).toMatch(/step 12\/31: restore\.verify .*1\/1 members healthy/);
    expect(thread).toMatch(/step 16\/31: etcd\.memberAddLearner node2/);
    expect(thread).toMatch(/step 31\/31: restore\.verify .*3\/3 members healthy/);
    await expectRestored(rec);
    const node1 = await labSh('exec', 'node1', '--', 'cat', '/etc/kubernetes/manifests/etcd.yaml');
    expect(node1).toMatch(/--initial-cluster-token=etcd-medic-restore-[0-9a-f]{16}/);
    expect(node1).not.toMatch(/force-new-cluster/);
  });

  it('a restore approved while the lost members keep failing (node2, node3 crash-looping on a damaged database; node1 lost after the plan was made) runs on that approval', async () => {
    await waitLabHealthy();
    // node2 and node3 crash-loop: their database file is garbage, etcd dies at every start; node1 alone has no quorum.
    for (const n of ['node2', 'node3']) {
      await labSh('stop-etcd', n);
      await labSh('exec', n, '--', 'sh', '-c', 'head -c 65536 /dev/urandom > /var/lib/etcd/member/snap/db');
      await labSh('start-etcd', n);
    }
    await pollUntil('quorum lost', async () => !Object.values(await endpointHealth()).some(Boolean), 90_000, 500);
    await pollUntil('node2 crash-looping', async () => /\/[1-9]\d*\.log$/.test((await labSh('exec', 'node2', '--', 'sh', '-c', 'ls -1t /var/log/pods/*/etcd/*.log | head -n 1')).trim()), 90_000, 500);
    const { plan } = await requestPlan(h, rec.id, 'all');
    // Then node1 is lost too: no member answers now, the member list the plan saw is gone.
    await labSh('stop-etcd', 'node1');
    await pollUntil('no member answers', async () => (await memberList().catch(() => [])).length === 0, 60_000, 500);
    await approveBoth(h, plan);
    await h.fake.waitFor(() => /done: all \d+ steps ran|failed at step|changed after approval/.test(threadText(h, plan.ts)) || undefined, 300_000);
    const thread = threadText(h, plan.ts);
    expect(thread).not.toMatch(/changed after approval/);
    expect(thread).toMatch(/done: all 18 steps ran/);
    await expectRestored(rec);
  });
});
