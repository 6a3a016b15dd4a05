/**
 * saveSnapshot and inspectSnapshot against a real one-member etcd 3.4 of our own (not the
 * shared lab): the record must describe the real file, the file must restore into an etcd
 * that serves the keys, and every failure must leave nothing behind.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMedicError, MedicError } from '../src/engine/errors';
import { createEtcdMemberClient, EtcdMemberClient } from '../src/exec/etcd-client';
import { inspectSnapshot, parseSnapshotStatus } from '../src/snapshot/inspect';
import { saveSnapshot, SaveSnapshotOptions } from '../src/snapshot/save';
import { createSnapshotStore, SnapshotRecord, SnapshotStore } from '../src/snapshot/store';
import { SingleEtcd, startSingleEtcd } from './support/etcd-single';

jest.setTimeout(60_000);

const KEYS: Record<string, string> = { '/registry/a': 'alpha', '/registry/b': 'beta', '/medic/c': 'gamma' };
const CLUSTER = 'single';

let etcd: SingleEtcd;
let client: EtcdMemberClient;
let work: string;
let store: SnapshotStore;

const sha256File = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const clusterFiles = () => { try { return readdirSync(join(store.dir, CLUSTER)).sort(); } catch { return []; } };
const rejection = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a rejection'); }, (e: unknown) => e as MedicError);

function saveOpts(over: Partial<SaveSnapshotOptions> = {}): SaveSnapshotOptions {
  return {
    client, store, cluster: CLUSTER, node: 'single', requester: 'U123',
    reason: 'safety snapshot before replace-member node3 (job 42)', kind: 'safety', jobId: '42', etcdVersion: '3.4.23',
    deadlineMs: 15_000, // a stream that hangs fails the test with the client's error, not jest's timeout
    ...over,
  };
}

/** Files a finished record owns; anything else in the cluster dir is a leftover. */
const recordFiles = (records: SnapshotRecord[]) => records.flatMap((r) => [`${r.id}.db`, `${r.id}.json`]).sort();

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'medic-snap-'));
  store = createSnapshotStore({ dir: join(work, 'snapshots') });
  etcd = await startSingleEtcd({ keys: KEYS });
  client = createEtcdMemberClient({ endpoint: etcd.endpoint, deadlineMs: 5000 });
});
afterAll(async () => {
  client?.close();
  await etcd?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('saveSnapshot (real etcd)', () => {
  let record: SnapshotRecord;
  const progress: number[] = [];

  it('keeps a verified snapshot whose record describes the real file and member', async () => {
    const revision = await etcd.revision();
    const status = JSON.parse((await etcd.etcdctlOk(['endpoint', 'status', '-w', 'json'])).replace(/"member_id":(\d+)/, '"member_id":"$1"'));
    const memberHex = BigInt(status[0].Status.header.member_id).toString(16);

    record = await saveSnapshot(saveOpts({ onProgress: (b) => progress.push(b) }));
    const file = store.path(record);

    expect(record).toMatchObject({
      cluster: CLUSTER, node: 'single', memberId: memberHex, revision, etcdVersion: '3.4.23',
      requester: 'U123', reason: 'safety snapshot before replace-member node3 (job 42)', kind: 'safety', jobId: '42',
      verified: { by: 'etcdctl', revision, integrity: 'sha256' },
    });
    expect(record.sha256).toBe(sha256File(file));
    expect(record.sizeBytes).toBe(statSync(file).size);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(record.verified.totalKeys).toBeGreaterThanOrEqual(Object.keys(KEYS).length);
    // Live keys at the snapshot's revision, as etcd counts them (not totalKeys: every revision).
    expect(record.liveKeys).toBe(Number((await etcd.etcdctlOk(['get', '', '--prefix', '--limit=1', '-w', 'json', `--rev=${revision}`])).match(/"count":(\d+)/)![1]));
    expect(record.liveKeys).toBe(Object.keys(KEYS).length);
    expect(record.liveKeysNote).toBeUndefined();
    // The same numbers etcdctl reads from the file.
    const independent = parseSnapshotStatus((await etcd.etcdctlOk(['snapshot', 'status', '-w', 'json', file])));
    expect(record.verified).toMatchObject(independent);
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress.every((b) => b > 0 && b <= record.sizeBytes)).toBe(true);
    expect(await store.list(CLUSTER)).toEqual([record]);
    expect(await store.get(CLUSTER, record.id)).toEqual(record);
  });

  it('restores into a fresh etcd that serves the keys as of the snapshot', async () => {
    await etcd.etcdctlOk(['put', '/after/snapshot', 'later']);
    const restoreDir = join(work, 'restored');
    const peer = 'http://127.0.0.1:23794';
    await etcd.etcdctlOk(['snapshot', 'restore', store.path(record), '--name', 'restored', '--data-dir', restoreDir,
      '--initial-cluster', `restored=${peer}`, '--initial-advertise-peer-urls', peer, '--initial-cluster-token', 'medic-restore-test']);
    const restored = await startSingleEtcd({ clientPort: 23793, peerPort: 23794, name: 'restored', dataDir: restoreDir });
    try {
      for (const [k, v] of Object.entries(KEYS)) expect((await restored.etcdctlOk(['get', '--print-value-only', k])).trim()).toBe(v);
      expect((await restored.etcdctlOk(['get', '/after/snapshot'])).trim()).toBe('');
      expect(await restored.revision()).toBe(record.revision);
    } finally {
      await restored.stop();
      rmSync(restoreDir, { recursive: true, force: true });
    }
  });

  it('keeps the snapshot without a live key count when its revision was compacted first, and says so', async () => {
    // A real compaction between the snapshot and the count: etcd's own "compacted" error.
    const compacting: SaveSnapshotOptions['client'] = {
      status: () => client.status(),
      snapshot: (sink, o) => client.snapshot(sink, o),
      countKeys: async (o) => {
        await client.put('/medic/compact-me', 'x');
        await etcd.etcdctlOk(['compact', await etcd.revision()]);
        return client.countKeys(o);
      },
    };
    const r = await saveSnapshot(saveOpts({ client: compacting }));
    expect(r.liveKeys).toBeUndefined();
    expect(r.liveKeysNote).toMatch(new RegExp(`not counted: revision ${r.revision} was compacted`));
    expect(await store.get(CLUSTER, r.id)).toEqual(r);
  });

  it('a sink that fails mid-stream keeps nothing and says what to do', async () => {
    const before = await store.list(CLUSTER);
    const failing: SaveSnapshotOptions['client'] = {
      status: () => client.status(),
      snapshot: (sink, o) => client.snapshot(async (chunk) => { await sink(chunk); throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }); }, o),
    };
    const e = await rejection(saveSnapshot(saveOpts({ client: failing })));
    expect(isMedicError(e) && e.code).toBe('SNAPSHOT_FAILED');
    expect(e.message).toMatch(/nothing was kept.*no space left.*free space in .*snapshots/);
    expect(await store.list(CLUSTER)).toEqual(before);
    expect(clusterFiles()).toEqual(recordFiles(before));
  });

  it('a stream damaged in transit is refused by etcd\'s checksum and deleted', async () => {
    const before = await store.list(CLUSTER);
    let n = 0;
    const flipping: SaveSnapshotOptions['client'] = {
      status: () => client.status(),
      snapshot: (sink, o) => client.snapshot((chunk) => {
        const c = Buffer.from(chunk);
        if (n++ === 0) c[200] ^= 0xff;
        return sink(c);
      }, o),
    };
    const e = await rejection(saveSnapshot(saveOpts({ client: flipping })));
    expect(isMedicError(e) && e.code).toBe('SNAPSHOT_INVALID');
    expect(e.message).toMatch(/refused and deleted.*SHA-256/);
    expect(clusterFiles()).toEqual(recordFiles(before));
  });

  it('an unreachable member fails fast, retryable, naming the next step', async () => {
    const dead = createEtcdMemberClient({ endpoint: 'http://127.0.0.1:1', deadlineMs: 1000 });
    try {
      const e = await rejection(saveSnapshot(saveOpts({ client: dead })));
      expect(e).toMatchObject({ code: 'SNAPSHOT_FAILED', retryable: true });
      expect(e.message).toMatch(/\/etcd status single/);
    } finally {
      dead.close();
    }
  });
});

describe('inspectSnapshot', () => {
  let good: string;
  beforeAll(async () => {
    good = join(work, 'good.db');
    await etcd.etcdctlOk(['snapshot', 'save', good]);
  });
  const damaged = (name: string, edit: (b: Buffer) => Buffer) => {
    const p = join(work, name);
    writeFileSync(p, edit(Buffer.from(readFileSync(good))));
    return p;
  };
  const invalid = async (p: string, opts = {}) => {
    const e = await rejection(inspectSnapshot(p, opts));
    expect(isMedicError(e) && e.code).toBe('SNAPSHOT_INVALID');
    return e.message;
  };

  it('reads a good file with etcdctl (no etcdutl here) and checks etcd\'s checksum', async () => {
    const v = await inspectSnapshot(good);
    expect(v).toMatchObject({ by: 'etcdctl', integrity: 'sha256', revision: await etcd.revision() });
    expect(v.hash).toMatch(/^[0-9a-f]+$/);
  });

  it('catches flipped bytes that `snapshot status` alone misses', async () => {
    // Byte 100 is in bbolt's first meta page (it falls back to the second); 16 KiB+ in
    // pages status never reads. etcdctl snapshot status prints the same numbers for both.
    for (const [name, at] of [['meta.db', 100], ['page.db', 16_500]] as const) {
      const p = damaged(name, (b) => { for (let i = at; i < at + 16; i++) b[i]! ^= 0xff; return b; });
      // Whether etcdctl notices depends on which pages the damage hits (it usually does
      // not); the checksum catches it either way.
      const status = await etcd.etcdctl(['snapshot', 'status', p]);
      expect(await invalid(p)).toMatch(status.code === 0 ? /does not match the SHA-256/ : /SHA-256|snapshot status failed/);
    }
  });

  it('refuses truncated, empty, foreign and missing files', async () => {
    const trimmed = damaged('trimmed.db', (b) => b.subarray(0, b.length - 32));
    expect(await invalid(trimmed, { requireChecksum: true })).toMatch(/without the SHA-256/);
    expect(await invalid(damaged('short.db', (b) => b.subarray(0, 8000)))).toMatch(/etcdctl snapshot status failed: .*too small/);
    expect(await invalid(damaged('empty.db', () => Buffer.alloc(0)))).toMatch(/empty/);
    expect(await invalid(damaged('foreign.db', () => Buffer.from('hello world'.repeat(100))))).toMatch(/invalid database/);
    expect(await invalid(join(work, 'missing.db'))).toMatch(/cannot read it/);
  });

  it('without any tool, still checks etcd\'s checksum (and says it read nothing else)', async () => {
    expect(await inspectSnapshot(good, { tools: ['etcdutl'] })).toEqual({ by: 'none', integrity: 'sha256' });
    const e = await rejection(inspectSnapshot(damaged('nosum.db', (b) => b.subarray(0, b.length - 32)), { tools: ['etcdutl'] }));
    expect(e.code).toBe('SNAPSHOT_FAILED');
    expect(e.message).toMatch(/install etcd-client/);
  });

  it('reads uint64 revisions as text', () => {
    expect(parseSnapshotStatus('{"hash":4294967295,"revision":18446744073709551615,"totalKey":7,"totalSize":20480,"version":"3.5.0"}\n'))
      .toEqual({ hash: 'ffffffff', revision: '18446744073709551615', totalKeys: 7, totalSize: 20480 });
    expect(() => parseSnapshotStatus('Error: invalid database')).toThrow(/not a JSON object/);
  });
});

// Last: it kills the member.
describe('saveSnapshot when etcd dies mid-stream', () => {
  it('keeps nothing, and prune finds no leftovers', async () => {
    // ~24 MiB, so the member is still streaming when the first chunk reaches us.
    const big = 'x'.repeat(1 << 20);
    for (let i = 0; i < 24; i++) await client.put(`/big/${i}`, big);
    const before = await store.list(CLUSTER);
    const e = await rejection(saveSnapshot(saveOpts({ onProgress: () => etcd.kill() })));
    expect(e).toMatchObject({ code: 'SNAPSHOT_FAILED', retryable: true });
    expect(e.message).toMatch(/nothing was kept.*\/etcd status single/);
    expect(await store.list(CLUSTER)).toEqual(before);
    expect(clusterFiles()).toEqual(recordFiles(before));
    await store.prune(CLUSTER, {});
    expect(clusterFiles()).toEqual(recordFiles(before));
  });
});
