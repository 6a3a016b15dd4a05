/**
 * Snapshots end to end in the lab: signed `/etcd snapshot save|list` into Bolt's receiver, a
 * real BullMQ worker streaming a member's snapshot through an SSH tunnel into the store,
 * what users see read back from the fake Slack, and every fact checked independently:
 * the file and its hash on disk, `etcdctl snapshot status` on it, the key count from etcd,
 * the copy on the node over the real OpenSSH client. Scheduling against the real Redis.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createEtcdMemberClient } from '../src/exec/etcd-client';
import { inspectSnapshot, parseSnapshotStatus } from '../src/snapshot/inspect';
import type { SnapshotRecord } from '../src/snapshot/store';
import { scheduledSnapshotJob, scheduleSnapshots, SNAPSHOT_SCHEDULER_PREFIX } from '../src/queue/scheduler';
import { Harness, startHarness, TEST_SNAPSHOT_DIR } from './support/harness';
import { hostEtcdctl, LAB_BOT_CERT, labNode, labSh, pollUntil, run, sshNode, waitLabHealthy, ensureLabHealthy } from './support/lab';

jest.setTimeout(300_000);

const KEYS = 1000;
const PREFIX = `/medic-test/snapshot-e2e/${Date.now()}/`;
const SAVED = /saved and verified snapshot (\S+) of (node\d) at revision (\d+) \((\d+) live keys\)/;

const sha256 = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const recordOf = (id: string): SnapshotRecord => JSON.parse(readFileSync(join(TEST_SNAPSHOT_DIR, 'lab', `${id}.json`), 'utf8')) as SnapshotRecord;

/** 1000 keys through the bot-side client cert, 50 at a time. */
async function writeKeys(): Promise<void> {
  const client = createEtcdMemberClient({
    endpoint: labNode('node1').clientUrl, deadlineMs: 5000,
    tls: { ca: readFileSync(LAB_BOT_CERT.ca), cert: readFileSync(LAB_BOT_CERT.cert), key: readFileSync(LAB_BOT_CERT.key) },
  });
  try {
    for (let i = 0; i < KEYS; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, j) => client.put(`${PREFIX}${String(i + j).padStart(4, '0')}`, `value-${i + j}`)));
    }
  } finally {
    client.close();
  }
}

describe('snapshots (lab)', () => {
  let h: Harness;
  const taken: Array<{ id: string; node: string }> = [];

  beforeAll(async () => {
    await ensureLabHealthy();
    h = await startHarness({
      mutateConfig: (c) => { c.clusters.find((x) => x.name === 'lab')!.snapshots.copyOnNode = true; },
    });
  });
  afterAll(async () => {
    await h?.stop();
    // The copies this test made on the nodes' data dirs.
    for (const t of taken) await sshNode(t.node, `rm -f /var/lib/etcd/snapshots/${t.id}.db`).catch(() => undefined);
  });

  it('saves a verified snapshot of 1000 keys: the message, the file, its hash, revision and key count all agree', async () => {
    await writeKeys();
    expect(Number(/"count":(\d+)/.exec(await hostEtcdctl(['get', PREFIX, '--prefix', '--limit=1', '-w', 'json']))![1])).toBe(KEYS);

    expect((await h.slash('snapshot save lab')).status).toBe(200);
    const msg = await h.nextMessage(/etcd snapshot save — lab/, 120_000);
    const m = SAVED.exec(msg.blocks);
    if (!m) throw new Error(`no snapshot in the message:\n${msg.blocks}`);
    const [, id, node, revision, liveKeys] = m;
    taken.push({ id, node });
    expect(Number(liveKeys)).toBeGreaterThanOrEqual(KEYS);
    expect(msg.blocks).toMatch(new RegExp(`Revision\\*?\\s+${revision}\\b`));
    expect(msg.blocks).toContain('/etcd snapshot list lab');
    expect(msg.blocks).toContain('U0ALICE');
    expect(msg.text).toContain(id);

    // The file, as the store keeps it, independently of the bot's own checks.
    const file = join(TEST_SNAPSHOT_DIR, 'lab', `${id}.db`);
    expect(existsSync(file)).toBe(true);
    const rec = recordOf(id);
    expect(rec.sha256).toBe(sha256(file));
    expect(msg.blocks).toContain(rec.sha256.slice(0, 12));
    expect(rec).toMatchObject({ node, revision, liveKeys: Number(liveKeys), kind: 'manual', requester: 'U0ALICE', verified: { by: 'etcdctl', integrity: 'sha256' } });
    const status = await run('etcdctl', ['snapshot', 'status', '-w', 'json', file], { env: { ...process.env, ETCDCTL_API: '3' } });
    expect(status.code).toBe(0);
    expect(parseSnapshotStatus(status.stdout).revision).toBe(revision);
    // etcd's own count of live keys at that revision.
    const counted = await hostEtcdctl(['get', '', '--prefix', '--limit=1', '-w', 'json', `--rev=${revision}`]);
    expect(Number(/"count":(\d+)/.exec(counted)![1])).toBe(Number(liveKeys));

    // The runbook's copy on the member's node, checked there with the node's own sha256sum.
    expect(msg.blocks).toContain(`${node}:/var/lib/etcd/snapshots/${id}.db (SHA-256 checked)`);
    const onNode = await sshNode(node, `sha256sum /var/lib/etcd/snapshots/${id}.db && stat -c %a /var/lib/etcd/snapshots/${id}.db`);
    expect(onNode.code).toBe(0);
    expect(onNode.stdout).toContain(rec.sha256);
    expect(onNode.stdout.trim().split('\n').pop()).toBe('600');
  });

  it('snapshot list shows it with revision and key count, newest first, and suggests restoring the newest verified one', async () => {
    const [{ id }] = taken;
    const rec = recordOf(id);
    expect((await h.slash('snapshot list lab')).status).toBe(200);
    const msg = await h.nextMessage(/etcd snapshot list — lab/);
    const row = msg.blocks.split('\n').find((l) => l.includes(id) && !l.includes('newest verified'));
    if (!row) throw new Error(`no row for ${id}:\n${msg.blocks}`);
    expect(row).toContain(rec.node);
    expect(row).toContain(rec.revision);
    expect(row).toContain(String(rec.liveKeys));
    expect(row).toContain(rec.sha256.slice(0, 12));
    expect(row).toContain('etcdctl + sha256');
    expect(msg.blocks).toMatch(new RegExp(`/etcd restore lab \\S+ --mode all`));
  });

  it('saves from the node asked for; a copy of it damaged in the store fails verification', async () => {
    expect((await h.slash('snapshot save lab node2')).status).toBe(200);
    const msg = await h.nextMessage(/etcd snapshot save — lab/, 120_000);
    const m = SAVED.exec(msg.blocks);
    if (!m) throw new Error(`no snapshot in the message:\n${msg.blocks}`);
    const [, id, node] = m;
    taken.push({ id, node });
    expect(node).toBe('node2');
    const file = join(TEST_SNAPSHOT_DIR, 'lab', `${id}.db`);
    await expect(inspectSnapshot(file)).resolves.toMatchObject({ integrity: 'sha256', by: 'etcdctl' });

    // Flip 16 bytes in the middle of the stored file.
    const fd = openSync(file, 'r+');
    try {
      const at = Math.floor(fstatSync(fd).size / 2);
      const bytes = Buffer.from(readFileSync(file).subarray(at, at + 16)).map((b) => b ^ 0xff);
      writeSync(fd, Buffer.from(bytes), 0, bytes.length, at);
    } finally {
      closeSync(fd);
    }
    await expect(inspectSnapshot(file)).rejects.toMatchObject({ code: 'SNAPSHOT_INVALID', message: expect.stringMatching(/does not match the SHA-256/) });
    // The first snapshot is untouched and still good.
    await expect(inspectSnapshot(join(TEST_SNAPSHOT_DIR, 'lab', `${taken[0].id}.db`))).resolves.toMatchObject({ integrity: 'sha256' });
    // Out of the store again: later suites of this process must not pick it (restore's refusal is tested there).
    rmSync(join(TEST_SNAPSHOT_DIR, 'lab', `${id}.json`));
    rmSync(file);
  });

  it('refuses to snapshot a stopped node, saves nothing, and says what to do', async () => {
    const before = taken.length;
    await labSh('stop-node', 'node3');
    try {
      expect((await h.slash('snapshot save lab node3')).status).toBe(200);
      const msg = await h.nextMessage(/etcd snapshot save — lab/, 120_000);
      expect(msg.blocks).toMatch(/refused: node3 can't be snapshotted: its member (can't be reached|is unhealthy)/);
      expect(msg.blocks).toContain('/etcd snapshot save lab');
      expect(SAVED.test(msg.blocks)).toBe(false);
      expect(taken).toHaveLength(before);
    } finally {
      await labSh('start-node', 'node3');
      await waitLabHealthy();
    }
  });

  it('schedules snapshots per cluster on the queue, runs them as console:scheduler, and removes the schedule when the config drops it', async () => {
    const queue = h.medic.queue.queue;
    // The config the running bot uses, as if it had been started with the schedule.
    const lab = h.config.clusters.find((c) => c.name === 'lab')!;
    lab.snapshots.scheduleMinutes = 5;
    try {
      const first = await scheduleSnapshots(queue, h.config);
      expect(first).toEqual({ scheduled: [{ cluster: 'lab', everyMinutes: 5 }], removed: [] });
      // Idempotent: every process may call it at start.
      await scheduleSnapshots(queue, h.config);
      const schedulers = await queue.getJobSchedulers(0, -1);
      expect(schedulers).toHaveLength(1);
      expect(schedulers[0]).toMatchObject({ key: `${SNAPSHOT_SCHEDULER_PREFIX}lab`, every: 300_000, name: 'snapshot save' });
      expect(schedulers[0].template?.data).toMatchObject({ ...scheduledSnapshotJob('lab'), requestedAt: expect.any(String) });

      // The first run comes at once and is an ordinary snapshot save, as the scheduler.
      const scheduled: SnapshotRecord = await pollUntil('a scheduled snapshot in the store', () => readdirSync(join(TEST_SNAPSHOT_DIR, 'lab')).filter((f) => f.endsWith('.json'))
        .map((f) => JSON.parse(readFileSync(join(TEST_SNAPSHOT_DIR, 'lab', f), 'utf8')) as SnapshotRecord)
        .find((r) => r.kind === 'scheduled' && r.requester === 'console:scheduler'), 120_000, 1000) as SnapshotRecord;
      taken.push({ id: scheduled.id, node: scheduled.node });
      expect(scheduled.reason).toBe('scheduled snapshot (every 5 min)');
      expect(scheduled.liveKeys).toBeGreaterThanOrEqual(KEYS);

      delete lab.snapshots.scheduleMinutes;
      const dropped = await scheduleSnapshots(queue, h.config);
      expect(dropped).toEqual({ scheduled: [], removed: [`${SNAPSHOT_SCHEDULER_PREFIX}lab`] });
      expect(await queue.getJobSchedulers(0, -1)).toEqual([]);
    } finally {
      await queue.removeJobScheduler(`${SNAPSHOT_SCHEDULER_PREFIX}lab`);
    }
  });
});
