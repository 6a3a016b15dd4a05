/**
 * The offsite store against a real S3-API server (s3rver on loopback): upload, read back and
 * checked before it counts; listed and fetched back after the local copy is gone; retention
 * applied to both; encrypted at rest (the object is not the snapshot's bytes; a changed
 * object or another key is refused, not restored); a store that can't be reached leaves the
 * local snapshot and says why.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createOffsite, parseKey } from '../src/snapshot/offsite';
import { createSnapshotStore, SnapshotMeta } from '../src/snapshot/store';
import { withOffsite } from '../src/snapshot/tiered';
import { offsiteFromEnv } from '../src/settings';
import { LocalS3, startLocalS3 } from './support/s3';

function meta(data: Buffer): SnapshotMeta {
  return {
    node: 'node1', memberId: 'abc', revision: '42', etcdVersion: '3.5.30', sha256: createHash('sha256').update(data).digest('hex'),
    requester: 'U0ALICE', reason: 'offsite test', kind: 'manual', verified: { by: 'etcdutl', integrity: 'sha256' },
  };
}

describe('offsite snapshots (s3rver)', () => {
  let s3: LocalS3;
  let dir: string;
  beforeAll(async () => { s3 = await startLocalS3(); });
  afterAll(async () => { await s3.stop(); });
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'medic-offsite-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const tiered = (prefix: string, key?: Buffer) => {
    const offsite = createOffsite({ bucket: s3.bucket, endpoint: s3.endpoint, credentials: s3.credentials, prefix, key });
    return withOffsite(createSnapshotStore({ dir }), offsite);
  };
  async function save(store: ReturnType<typeof tiered>, data: Buffer) {
    const p = await store.create('lab', { node: 'node1' });
    writeFileSync(p.tmpPath, data);
    return p.finish(meta(data));
  }

  it('a saved snapshot is uploaded and read back; with the local copy gone it is listed and fetched back, checked', async () => {
    const store = tiered(`t1-${Date.now()}`);
    const data = randomBytes(70_000);
    const rec = await save(store, data);
    expect(rec.offsite).toMatchObject({ encrypted: false, storedSha256: rec.sha256 });
    expect(rec.offsite!.url).toMatch(new RegExp(`^s3://${s3.bucket}/t1-\\d+/lab/${rec.id}\\.db$`));
    expect(Date.parse(rec.offsite!.verifiedAt)).toBeGreaterThan(0);
    // The record on disk says so too.
    expect(JSON.parse(readFileSync(join(dir, 'lab', `${rec.id}.json`), 'utf8')).offsite.url).toBe(rec.offsite!.url);

    rmSync(join(dir, 'lab'), { recursive: true, force: true });
    const listed = await store.list('lab');
    expect(listed.map((r) => [r.id, r.offsiteOnly])).toEqual([[rec.id, true]]);
    const back = await store.get('lab', rec.id);
    expect(back?.sha256).toBe(rec.sha256);
    expect(readFileSync(store.path(back!)).equals(data)).toBe(true);
    expect((await store.list('lab')).map((r) => r.offsiteOnly)).toEqual([undefined]);
  });

  it('a snapshot larger than one part (12 MiB: multipart upload) comes back byte for byte, encrypted too', async () => {
    for (const key of [undefined, randomBytes(32)]) {
      const store = tiered(`t5-${Date.now()}-${key ? 'enc' : 'plain'}`, key);
      const data = randomBytes(12 << 20);
      const rec = await save(store, data);
      expect(rec.offsite?.encrypted).toBe(!!key);
      rmSync(join(dir, 'lab'), { recursive: true, force: true });
      const back = await store.get('lab', rec.id);
      expect(readFileSync(store.path(back!)).equals(data)).toBe(true);
    }
  });

  it('retention applies offsite too', async () => {
    const store = tiered(`t2-${Date.now()}`);
    const recs = [];
    for (let i = 0; i < 3; i++) { recs.push(await save(store, randomBytes(1000))); await new Promise((r) => setTimeout(r, 1100)); }
    const removed = await store.prune('lab', { keep: 1 });
    expect(removed.map((r) => r.id).sort()).toEqual([recs[0].id, recs[1].id].sort());
    rmSync(join(dir, 'lab'), { recursive: true, force: true });
    expect((await store.list('lab')).map((r) => r.id)).toEqual([recs[2].id]);
  });

  it('encrypted at rest: the object is not the snapshot; decrypted and checked on the way back; another key or a changed object is refused', async () => {
    const key = randomBytes(32);
    const prefix = `t3-${Date.now()}`;
    const store = tiered(prefix, key);
    const data = Buffer.concat([Buffer.from('not-really-bbolt '), randomBytes(50_000)]);
    const rec = await save(store, data);
    expect(rec.offsite).toMatchObject({ encrypted: true });
    expect(rec.offsite!.storedSha256).not.toBe(rec.sha256);
    const raw = join(dir, 'raw');
    await store.offsite.rawObject(rec, raw);
    const stored = readFileSync(raw);
    expect(stored.subarray(0, 8).toString()).toBe('EMEDIC1\n');
    expect(stored.includes(data.subarray(0, 64))).toBe(false);
    expect(createHash('sha256').update(stored).digest('hex')).toBe(rec.offsite!.storedSha256);

    const wrongKey = createOffsite({ bucket: s3.bucket, endpoint: s3.endpoint, credentials: s3.credentials, prefix, key: randomBytes(32) });
    await expect(wrongKey.download(rec, join(dir, 'x'))).rejects.toThrow(/does not decrypt with this key/);
    const noKey = createOffsite({ bucket: s3.bucket, endpoint: s3.endpoint, credentials: s3.credentials, prefix });
    await expect(noKey.download(rec, join(dir, 'y'))).rejects.toThrow(/encrypted offsite and this worker has no key/);
    // One byte changed in the stored object: GCM's tag refuses it, nothing is kept.
    stored[stored.length >> 1] ^= 0x01;
    const client = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials });
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/lab/${rec.id}.db`, Body: stored }));
    rmSync(join(dir, 'lab'), { recursive: true, force: true });
    await expect(store.get('lab', rec.id)).rejects.toThrow(/does not decrypt with this key .*the object was changed/);
    expect(await createSnapshotStore({ dir }).list('lab')).toEqual([]);
  });

  it('an unreachable store: the snapshot is saved locally, the record says why the offsite copy failed', async () => {
    const offsite = createOffsite({ bucket: s3.bucket, endpoint: 'http://127.0.0.1:9', credentials: s3.credentials, timeoutMs: 3000 });
    const store = withOffsite(createSnapshotStore({ dir }), offsite);
    const p = await store.create('lab', { node: 'node1' });
    const data = randomBytes(1000);
    writeFileSync(p.tmpPath, data);
    const rec = await p.finish(meta(data));
    expect(rec.offsite).toBeUndefined();
    expect(rec.offsiteError).toMatch(/offsite store s3:\/\/medic-offsite\/etcd-medic: uploading lab\/|ECONNREFUSED/);
    expect((await createSnapshotStore({ dir }).get('lab', rec.id))?.offsiteError).toBe(rec.offsiteError);
  });
});

describe('a safety snapshot and the object store', () => {
  it('is kept at once while its upload is still going (a repair does not wait for the bucket)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'medic-offsite-'));
    try {
      let release!: () => void;
      const uploading = new Promise<void>((r) => { release = r; });
      const uploads: string[] = [];
      const slow = {
        describe: 'never answers', list: async () => [], download: async () => undefined, remove: async () => undefined, rawObject: async () => undefined,
        upload: async (rec: { id: string }) => { uploads.push(rec.id); await uploading; return { url: 's3://b/k', encrypted: false, storedSha256: 'x', verifiedAt: new Date().toISOString() }; },
      };
      const store = withOffsite(createSnapshotStore({ dir }), slow);
      const p = await store.create('lab', { node: 'node1' });
      const data = randomBytes(100);
      writeFileSync(p.tmpPath, data);
      const rec = await p.finish({ ...meta(data), kind: 'safety' });
      expect(rec.offsite).toBeUndefined();
      expect(uploads).toEqual([rec.id]);
      expect((await store.get('lab', rec.id))?.id).toBe(rec.id);
      release();
      // Once the upload is done, the record says where the copy is.
      for (let i = 0; i < 50 && !(await store.get('lab', rec.id))?.offsite; i++) await new Promise((r) => setTimeout(r, 20));
      expect((await store.get('lab', rec.id))?.offsite?.url).toBe('s3://b/k');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('offsite settings', () => {
  it('reads the bucket, endpoint and key file; refuses half a configuration and bad keys', () => {
    expect(offsiteFromEnv({})).toBeUndefined();
    expect(() => offsiteFromEnv({ MEDIC_OFFSITE_S3_ENDPOINT: 'http://x' })).toThrow(/set without MEDIC_OFFSITE_S3_BUCKET/);
    expect(() => offsiteFromEnv({ MEDIC_OFFSITE_S3_BUCKET: 'Bad_Bucket' })).toThrow(/not an S3 bucket name/);
    const d = mkdtempSync(join(tmpdir(), 'medic-key-'));
    try {
      writeFileSync(join(d, 'key'), `${randomBytes(32).toString('hex')}\n`);
      const o = offsiteFromEnv({ MEDIC_OFFSITE_S3_BUCKET: 'medic-snapshots', MEDIC_OFFSITE_S3_ENDPOINT: 'http://127.0.0.1:9000', MEDIC_OFFSITE_KEY_FILE: join(d, 'key') })!;
      expect(o).toMatchObject({ bucket: 'medic-snapshots', endpoint: 'http://127.0.0.1:9000', prefix: 'etcd-medic', region: 'us-east-1' });
      expect(o.key).toHaveLength(32);
      writeFileSync(join(d, 'short'), 'abc');
      expect(() => offsiteFromEnv({ MEDIC_OFFSITE_S3_BUCKET: 'medic-snapshots', MEDIC_OFFSITE_KEY_FILE: join(d, 'short') })).toThrow(/an AES-256 key is 32 bytes/);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
    expect(parseKey(Buffer.from(randomBytes(32).toString('base64')), 'k')).toHaveLength(32);
  });
});
