/**
 * Snapshots offsite, end to end: `/etcd snapshot save` through Slack lands the snapshot in
 * a local S3-API server (s3rver), encrypted, read back and checked; the bot's own copy is
 * then deleted and every data dir of the lab wiped; `/etcd restore` of that snapshot fetches
 * it from the object store and brings the lab back with the snapshot's keys. The stored
 * object is not an etcd snapshot; decrypted, it is.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createOffsite } from '../src/snapshot/offsite';
import { endpointHealth, ensureLabHealthy, hostEtcdctl, labFresh, memberList, run, wipeAllData } from './support/lab';
import { blocksText, Harness, LAB_CHANNEL, startHarness, TEST_SNAPSHOT_DIR } from './support/harness';
import { click, planIdOf, threadText, waitPlanMessage } from './support/plans';
import { LocalS3, startLocalS3 } from './support/s3';

const ALICE = 'U0ALICE';
const BOB = 'U0BOB';
const CAROL = 'U0CAROL';
const PREFIX = '/medic-test/offsite/';
const KEYS = 200;

describe('offsite snapshots and a restore from them (lab)', () => {
  let s3: LocalS3;
  let h: Harness;
  const key = randomBytes(32);
  const prefix = `e2e-${process.pid}-${Date.now()}`;
  let work: string;

  beforeAll(async () => {
    await ensureLabHealthy();
    s3 = await startLocalS3();
    work = mkdtempSync(join(tmpdir(), 'medic-offsite-e2e-'));
    h = await startHarness({
      offsite: { bucket: s3.bucket, endpoint: s3.endpoint, credentials: s3.credentials, prefix, key },
      mutateConfig: (c) => { c.clusters.find((x) => x.name === 'lab')!.access.destructive.approvers = [BOB, CAROL]; },
    });
  });
  afterAll(async () => {
    await h?.stop();
    await s3?.stop();
    rmSync(work, { recursive: true, force: true });
    // The restore rewrote every manifest: give the next suite the lab as `up` makes it.
    await labFresh();
  });

  it('save -> encrypted offsite copy, checked -> local copy deleted, every data dir wiped -> restore fetches it -> the snapshot\'s keys', async () => {
    for (let i = 0; i < KEYS; i++) await hostEtcdctl(['put', `${PREFIX}${i}`, `value-${i}`]);
    await h.slash('snapshot save lab', { user: ALICE });
    const saved = await h.nextMessage(/etcd snapshot save — lab/, 120_000);
    expect(saved.blocks).toMatch(/offsite copy read back and checked/);
    expect(saved.blocks).toMatch(new RegExp(`s3://${s3.bucket}/${prefix}/lab/\\S+\\.db \\(encrypted, AES-256-GCM\\), SHA-256 checked after upload`));
    const id = /snapshot (\d{8}T\d{6}Z-node\d-[0-9a-f]{4})/.exec(saved.text ?? '')![1];

    // At rest the object is not an etcd snapshot; decrypted it is (what etcdctl/etcdutl say).
    const offsite = createOffsite({ bucket: s3.bucket, endpoint: s3.endpoint, credentials: s3.credentials, prefix, key });
    const rec = (await offsite.list('lab')).find((r) => r.id === id)!;
    expect(rec.offsite?.encrypted).toBe(true);
    // The host's tooling for the lab's version (etcd 3.4 has no etcdutl).
    const tool = (await run('sh', ['-c', 'command -v etcdutl'])).code === 0 ? 'etcdutl' : 'etcdctl';
    await offsite.rawObject(rec, join(work, 'raw.db'));
    expect((await run(tool, ['snapshot', 'status', join(work, 'raw.db')], { env: { ...process.env, ETCDCTL_API: '3' } })).code).not.toBe(0);
    await offsite.download(rec, join(work, 'plain.db'));
    const status = await run(tool, ['snapshot', 'status', join(work, 'plain.db'), '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' } });
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout).revision).toBe(Number(rec.revision));

    // The bot's disk loses it: only the object store has it now.
    for (const ext of ['db', 'json']) rmSync(join(TEST_SNAPSHOT_DIR, 'lab', `${id}.${ext}`), { force: true });
    await h.slash('snapshot list lab', { user: ALICE });
    const listed = await h.nextMessage(/etcd snapshot list — lab/);
    expect(listed.blocks).toMatch(new RegExp(`${id}[^\\n]*offsite only, encrypted`));

    await wipeAllData();
    expect((await hostEtcdctl(['get', '--prefix', PREFIX, '--keys-only'])).trim()).toBe('');
    const before = h.fake.messages(LAB_CHANNEL).length;
    await h.slash(`restore lab ${id} --mode all`, { user: ALICE });
    const plan = await waitPlanMessage(h, /etcd restore — lab/, before, 120_000);
    expect(blocksText(plan.blocks ?? [])).toContain(id);
    expect(planIdOf(plan)).toMatch(/\S/);
    expect((await click(h, plan, 'approve', BOB)).reply).toMatch(/1 more approval/);
    expect((await click(h, plan, 'approve', CAROL)).reply).toMatch(/it runs now/);
    await h.fake.waitFor(() => /done: all \d+ steps ran|failed at step/.test(threadText(h, plan.ts)) || undefined, 300_000);
    const thread = threadText(h, plan.ts);
    expect(thread).toMatch(/done: all 18 steps ran/);
    expect(thread).toMatch(/step 1\/18: snapshot\.verifyFile .*sha256 as recorded/);

    // What a user checks: three voters, healthy, every key of the snapshot on every member.
    expect((await memberList()).map((m) => m.name).sort()).toEqual(['node1', 'node2', 'node3']);
    expect(Object.values(await endpointHealth())).toEqual([true, true, true]);
    const keys = await hostEtcdctl(['get', '--prefix', PREFIX, '--keys-only']);
    expect(keys.split('\n').filter(Boolean)).toHaveLength(KEYS);
    // Fetched back into the bot's store, where the next restore finds it at once.
    expect(existsSync(join(TEST_SNAPSHOT_DIR, 'lab', `${id}.db`))).toBe(true);
  });
});
