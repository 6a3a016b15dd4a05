/**
 * The snapshot store on a real filesystem (a temp dir per test): layout, modes, ordering,
 * id validation, retention, and what an unfinished snapshot leaves behind.
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMedicError } from '../src/engine/errors';
import { createSnapshotStore, SnapshotMeta, SnapshotStore } from '../src/snapshot/store';

const DAY = 86_400_000;
const meta = (over: Partial<SnapshotMeta> = {}): SnapshotMeta => ({
  node: 'node1', memberId: '8e9e05c52164694d', revision: '42', etcdVersion: '3.4.23',
  sha256: 'a'.repeat(64), requester: 'U123', reason: 'test', kind: 'manual',
  verified: { by: 'etcdctl', hash: 'be158048', revision: '42', totalKeys: 7, totalSize: 20480, integrity: 'sha256' },
  ...over,
});

let dir: string;
let clock: Date;
let store: SnapshotStore;
const files = (cluster = 'prod-eu1') => readdirSync(join(dir, cluster)).sort();

/** A finished snapshot taken at the current clock; the clock then moves on by `advanceMs`. */
async function saved(node = 'node1', advanceMs = 60_000) {
  const p = await store.create('prod-eu1', { node });
  writeFileSync(p.tmpPath, Buffer.from(`data of ${p.id}`));
  const r = await p.finish(meta({ node }));
  clock = new Date(clock.getTime() + advanceMs);
  return r;
}

async function expectBadInput(p: Promise<unknown>) {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(isMedicError(e) && e.code).toBe('BAD_INPUT');
}

beforeEach(() => {
  dir = join(mkdtempSync(join(tmpdir(), 'medic-store-')), 'snapshots');
  clock = new Date('2024-01-02T03:04:05.678Z');
  store = createSnapshotStore({ dir, now: () => clock });
});
afterEach(() => rmSync(join(dir, '..'), { recursive: true, force: true }));

describe('snapshot store', () => {
  it('keeps <id>.db and <id>.json in a private per-cluster directory', async () => {
    const p = await store.create('prod-eu1', { node: 'node3' });
    expect(p.id).toMatch(/^20240102T030405Z-node3-[0-9a-f]{4}$/);
    expect(p.createdAt).toBe('2024-01-02T03:04:05.678Z');
    writeFileSync(p.tmpPath, Buffer.alloc(1234, 7));
    const r = await p.finish(meta({ node: 'node3', jobId: '42', kind: 'safety' }));

    expect(r).toMatchObject({ id: p.id, cluster: 'prod-eu1', node: 'node3', sizeBytes: 1234, createdAt: p.createdAt, jobId: '42', kind: 'safety' });
    expect(files()).toEqual([`${p.id}.db`, `${p.id}.json`]);
    expect(store.path(r)).toBe(join(dir, 'prod-eu1', `${p.id}.db`));
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'prod-eu1')).mode & 0o777).toBe(0o700);
    for (const f of files()) expect(statSync(join(dir, 'prod-eu1', f)).mode & 0o777).toBe(0o600);
    expect(await store.get('prod-eu1', p.id)).toEqual(r);
    expect(await store.list('prod-eu1')).toEqual([r]);
    expect(await store.list('other')).toEqual([]);
  });

  it('tightens an existing snapshot directory that others could read', async () => {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    chmodSync(dir, 0o755);
    await store.create('prod-eu1');
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it('lists newest first', async () => {
    const a = await saved('node1');
    const b = await saved('node2');
    const c = await saved('node3');
    expect((await store.list('prod-eu1')).map((r) => r.id)).toEqual([c.id, b.id, a.id]);
  });

  it('refuses hostile ids and cluster names before touching the filesystem', async () => {
    for (const id of ['../../etc/passwd', '..', '.', '', 'a/b', '.hidden', 'x y', 'x\n', 'a'.repeat(81), '%2e%2e', '-rf']) {
      await expectBadInput(store.get('prod-eu1', id));
    }
    for (const cluster of ['..', '../x', 'Prod', '', 'a/b']) await expectBadInput(store.get(cluster, 'x'));
    await expectBadInput(store.create('../x'));
    await expectBadInput(store.create('prod-eu1', { node: '../node1' }));
    expect(() => store.path({ cluster: 'prod-eu1', id: '../x' })).toThrow(/not a snapshot id/);
    expect(await store.get('prod-eu1', '20240102T030405Z-node1-abcd')).toBeUndefined();
  });

  it('hides an unfinished snapshot, keeps it while it is written, prunes it once stale', async () => {
    const live = createSnapshotStore({ dir }); // real clock: staleness is judged by mtime
    const done = await saved();
    const p = await live.create('prod-eu1', { node: 'node2' });
    writeFileSync(p.tmpPath, 'half');
    expect((await live.list('prod-eu1')).map((r) => r.id)).toEqual([done.id]);
    expect(await live.get('prod-eu1', p.id)).toBeUndefined();

    // Stale by mtime, but this process is still writing it: prune must leave it alone.
    // Also a .db whose .json was never written, and a metadata .part.
    writeFileSync(join(dir, 'prod-eu1', '20231201T000000Z-node9-0000.db'), 'renamed, no metadata');
    writeFileSync(join(dir, 'prod-eu1', '20231201T000000Z-node9-0000.json.part'), '{');
    const old = new Date(Date.now() - 2 * 3_600_000);
    for (const f of files()) utimesSync(join(dir, 'prod-eu1', f), old, old);
    expect(await live.prune('prod-eu1', {})).toEqual([]);
    expect(files()).toEqual([`${done.id}.db`, `${done.id}.json`, `${p.id}.db.part`]);

    // The process died (a new store instance knows nothing of it): its leftovers go too.
    await createSnapshotStore({ dir }).prune('prod-eu1', {});
    expect(files()).toEqual([`${done.id}.db`, `${done.id}.json`]);
  });

  it('leaves fresh leftovers of another process alone (it may still be writing)', async () => {
    await store.create('prod-eu1');
    const other = createSnapshotStore({ dir });
    await other.prune('prod-eu1', { keep: 0 });
    expect(files().some((f) => f.endsWith('.db.part'))).toBe(true);
  });

  it('abort removes the partial file; abort after finish keeps the snapshot', async () => {
    const p = await store.create('prod-eu1');
    writeFileSync(p.tmpPath, 'partial');
    await p.abort();
    await p.abort();
    expect(files()).toEqual([]);

    const q = await store.create('prod-eu1');
    writeFileSync(q.tmpPath, 'whole');
    await q.finish(meta());
    await q.abort();
    expect(files()).toHaveLength(2);
    await expect(q.finish(meta())).rejects.toThrow(/already finished/);
  });

  it('ignores unreadable metadata and never deletes the data behind it', async () => {
    const r = await saved();
    writeFileSync(join(dir, 'prod-eu1', `${r.id}.json`), '{ not json');
    expect(await store.list('prod-eu1')).toEqual([]);
    const old = new Date(Date.now() - 2 * 3_600_000);
    for (const f of files()) utimesSync(join(dir, 'prod-eu1', f), old, old);
    await createSnapshotStore({ dir }).prune('prod-eu1', { keep: 0 });
    expect(files()).toEqual([`${r.id}.db`, `${r.id}.json`]);
  });

  describe('prune', () => {
    it('keep: the newest N stay', async () => {
      const ids = [];
      for (let i = 0; i < 5; i++) ids.push((await saved(`node${i}`)).id);
      const removed = await store.prune('prod-eu1', { keep: 2 });
      expect(removed.map((r) => r.id)).toEqual([ids[2], ids[1], ids[0]]);
      expect((await store.list('prod-eu1')).map((r) => r.id)).toEqual([ids[4], ids[3]]);
      expect(files()).toHaveLength(4);
    });

    it('maxAgeDays: younger ones stay', async () => {
      const tenDays = await saved('node1', 5 * DAY);
      const fiveDays = await saved('node2', 4 * DAY);
      const oneDay = await saved('node3', DAY);
      const removed = await store.prune('prod-eu1', { maxAgeDays: 3 });
      expect(removed.map((r) => r.id)).toEqual([fiveDays.id, tenDays.id]);
      expect((await store.list('prod-eu1')).map((r) => r.id)).toEqual([oneDay.id]);
    });

    it('a snapshot stays when any rule keeps it; pinned ones always stay', async () => {
      const oldest = await saved('node1', 10 * DAY);
      const old = await saved('node2', 10 * DAY);
      const newest = await saved('node3', 10 * DAY);
      // Everything is older than 3 days, but keep:1 keeps the newest: never the last copy.
      expect((await store.prune('prod-eu1', { keep: 1, maxAgeDays: 3, pinned: [oldest.id] })).map((r) => r.id)).toEqual([old.id]);
      expect((await store.list('prod-eu1')).map((r) => r.id)).toEqual([newest.id, oldest.id]);
    });

    it('removes nothing finished without a rule, and refuses nonsense', async () => {
      await saved();
      expect(await store.prune('prod-eu1', { pinned: [] })).toEqual([]);
      await expectBadInput(store.prune('prod-eu1', { keep: -1 }));
      await expectBadInput(store.prune('prod-eu1', { keep: 1.5 }));
      await expectBadInput(store.prune('prod-eu1', { maxAgeDays: 0 }));
      await expectBadInput(store.prune('prod-eu1', { maxAgeDays: Number.NaN }));
      expect(await store.list('prod-eu1')).toHaveLength(1);
    });
  });
});
