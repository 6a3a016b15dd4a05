/**
 * Snapshots kept off the nodes and off the bot's disk, in an object store with the S3 API
 * (AWS S3, MinIO, Ceph RGW): `<prefix>/<cluster>/<id>.db` and its record `<id>.json`.
 * A copy counts as offsite only once it was read back and its SHA-256 matched the
 * snapshot's. With a key, objects are encrypted at rest (AES-256-GCM; the stored object is
 * then not an etcd snapshot at all) and decrypted and checked on the way back.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rm, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import {
  DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { MedicError, describeError } from '../engine/errors';
import { sha256File } from '../restore/prepare';
import type { SnapshotRecord } from './store';

export interface OffsiteOptions {
  bucket: string;
  /** Key prefix inside the bucket. @defaultValue 'etcd-medic' */
  prefix?: string;
  /** Endpoint of a non-AWS store (MinIO, Ceph RGW, a local test server). @defaultValue AWS's */
  endpoint?: string;
  /** @defaultValue 'us-east-1' */
  region?: string;
  /** Path-style URLs (bucket in the path), as MinIO and most self-hosted stores want. @defaultValue true with an endpoint */
  forcePathStyle?: boolean;
  /** Credentials; otherwise the AWS SDK's default chain (AWS_ACCESS_KEY_ID…, files, instance roles). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** 32-byte AES-256-GCM key: objects are encrypted at rest. @defaultValue not encrypted */
  key?: Buffer;
  /** Bound on one upload or download. @defaultValue 600000 */
  timeoutMs?: number;
  /** Bound on listing, reading a record, deleting (status and plans list snapshots). @defaultValue 10000 */
  listTimeoutMs?: number;
}

/** Where a snapshot's offsite copy is, and what was checked of it. */
export interface OffsiteCopy {
  /** s3://bucket/key of the data object. */
  url: string;
  encrypted: boolean;
  /** SHA-256 of the object as stored (the ciphertext when encrypted). */
  storedSha256: string;
  /** When it was read back and matched the snapshot's SHA-256. */
  verifiedAt: string;
}

export interface Offsite {
  readonly describe: string;
  /** Uploads the file, reads it back, checks it; the record's `offsite` says where and how. */
  upload(record: SnapshotRecord, path: string): Promise<OffsiteCopy>;
  /** The records of a cluster's offsite snapshots (newest first). */
  list(cluster: string): Promise<SnapshotRecord[]>;
  /** Downloads (and decrypts) one into `dest`, checked against the record's SHA-256. */
  download(record: SnapshotRecord, dest: string): Promise<void>;
  /** Deletes the data and record objects of these snapshots. */
  remove(records: SnapshotRecord[]): Promise<void>;
  /** The stored bytes as they are (tests check encryption at rest). */
  rawObject(record: Pick<SnapshotRecord, 'cluster' | 'id'>, dest: string): Promise<void>;
}

/** Encrypted objects start with this, then a 12-byte IV; the 16-byte GCM tag ends them. */
const MAGIC = Buffer.from('EMEDIC1\n');
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A key file: 32 raw bytes, or 64 hex digits, or base64 of 32 bytes (trailing newline allowed). */
export function parseKey(data: Buffer, source: string): Buffer {
  if (data.length === 32) return data;
  const text = data.toString('utf8').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  const b64 = /^[A-Za-z0-9+/]{43}=?$/.test(text) ? Buffer.from(text, 'base64') : undefined;
  if (b64?.length === 32) return b64;
  throw new MedicError('CONFIG_INVALID', `${source}: an AES-256 key is 32 bytes (raw, 64 hex digits, or base64); make one with: openssl rand -hex 32 > ${source}`);
}

async function encryptFile(src: string, dest: string, key: Buffer): Promise<void> {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const out = createWriteStream(dest, { mode: 0o600 });
  out.write(Buffer.concat([MAGIC, iv]));
  await pipeline(createReadStream(src), cipher, out, { end: false }).catch(async (e) => { out.destroy(); throw e; });
  await new Promise<void>((resolve, reject) => out.end(cipher.getAuthTag(), (e?: Error | null) => (e ? reject(e) : resolve())));
}

async function decryptFile(src: string, dest: string, key: Buffer, what: string): Promise<void> {
  const { size } = await stat(src);
  const fh = await open(src, 'r');
  let header: Buffer; let tag: Buffer;
  try {
    header = Buffer.alloc(MAGIC.length + IV_BYTES);
    tag = Buffer.alloc(TAG_BYTES);
    if (size < header.length + TAG_BYTES) throw new MedicError('SNAPSHOT_INVALID', `${what} is too short to be an encrypted snapshot (${size} bytes)`);
    await fh.read(header, 0, header.length, 0);
    await fh.read(tag, 0, TAG_BYTES, size - TAG_BYTES);
  } finally {
    await fh.close();
  }
  if (!header.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new MedicError('SNAPSHOT_INVALID', `${what} is not encrypted by etcd-medic (no header): was it uploaded without a key?`);
  }
  const decipher = createDecipheriv('aes-256-gcm', key, header.subarray(MAGIC.length));
  decipher.setAuthTag(tag);
  try {
    await pipeline(createReadStream(src, { start: header.length, end: size - TAG_BYTES - 1 }), decipher, createWriteStream(dest, { mode: 0o600 }));
  } catch (e) {
    await rm(dest, { force: true });
    throw new MedicError('SNAPSHOT_INVALID', `${what} does not decrypt with this key (${describeError(e)}): another key, or the object was changed`, false, { cause: e });
  }
}

export function createOffsite(o: OffsiteOptions): Offsite {
  const prefix = (o.prefix ?? 'etcd-medic').replace(/^\/+|\/+$/g, '');
  const client = new S3Client({
    region: o.region ?? 'us-east-1',
    endpoint: o.endpoint,
    forcePathStyle: o.forcePathStyle ?? !!o.endpoint,
    credentials: o.credentials,
  });
  const timeoutMs = o.timeoutMs ?? 600_000;
  const dataKey = (r: Pick<SnapshotRecord, 'cluster' | 'id'>) => `${prefix}/${r.cluster}/${r.id}.db`;
  const metaKey = (r: Pick<SnapshotRecord, 'cluster' | 'id'>) => `${prefix}/${r.cluster}/${r.id}.json`;
  const url = (key: string) => `s3://${o.bucket}/${key}`;
  const signal = () => AbortSignal.timeout(timeoutMs);
  const quick = () => AbortSignal.timeout(o.listTimeoutMs ?? 10_000);
  const fail = (what: string, e: unknown): never => {
    if (e instanceof MedicError) throw e;
    throw new MedicError('OFFSITE_FAILED', `offsite store ${url(prefix)}: ${what}: ${describeError(e)}`, true, { cause: e });
  };

  async function getToFile(key: string, dest: string): Promise<void> {
    try {
      const r = await client.send(new GetObjectCommand({ Bucket: o.bucket, Key: key }), { abortSignal: signal() });
      await pipeline(r.Body as Readable, createWriteStream(dest, { mode: 0o600 }));
    } catch (e) {
      await rm(dest, { force: true });
      fail(`reading ${key}`, e);
    }
  }

  /** The snapshot's bytes from the store into dest (decrypted when a key is set), checked. */
  async function download(record: SnapshotRecord, dest: string): Promise<void> {
    const encrypted = record.offsite?.encrypted ?? !!o.key;
    if (encrypted && !o.key) throw new MedicError('SNAPSHOT_INVALID', `snapshot ${record.id} is encrypted offsite and this worker has no key (MEDIC_OFFSITE_KEY_FILE)`);
    const raw = encrypted ? `${dest}.enc` : dest;
    await getToFile(dataKey(record), raw);
    try {
      if (encrypted) await decryptFile(raw, dest, o.key!, `offsite object ${url(dataKey(record))}`);
    } finally {
      if (encrypted) await rm(raw, { force: true });
    }
    const got = await sha256File(dest);
    if (got !== record.sha256) {
      await rm(dest, { force: true });
      throw new MedicError('SNAPSHOT_INVALID', `offsite copy of ${record.id} has sha256 ${got.slice(0, 16)}…, the snapshot had ${record.sha256.slice(0, 16)}…: it is damaged; pick another snapshot`);
    }
  }

  return {
    describe: `${url(prefix)}${o.endpoint ? ` at ${o.endpoint}` : ''}${o.key ? ', encrypted (AES-256-GCM)' : ''}`,

    async upload(record, path) {
      const key = dataKey(record);
      const staged = o.key ? `${path}.offsite.part` : path;
      try {
        if (o.key) await encryptFile(path, staged, o.key);
        const storedSha256 = o.key ? await sha256File(staged) : record.sha256;
        const { size } = await stat(staged);
        // Multipart above 5 MiB (a database of gigabytes), the whole upload bounded.
        const ac = new AbortController();
        const timer = setTimeout(() => ac.abort(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        try {
          await new Upload({
            client, abortController: ac,
            params: { Bucket: o.bucket, Key: key, Body: createReadStream(staged), ContentLength: size, ContentType: 'application/octet-stream' },
          }).done();
        } catch (e) {
          fail(`uploading ${key}`, e);
        } finally {
          clearTimeout(timer);
        }
        // Read back before it counts: the bytes there, decrypted, must be the snapshot's.
        const back = `${path}.offsite-check.part`;
        try {
          await download({ ...record, offsite: { url: url(key), encrypted: !!o.key, storedSha256, verifiedAt: '' } }, back);
        } finally {
          await rm(back, { force: true });
        }
        const copy: OffsiteCopy = { url: url(key), encrypted: !!o.key, storedSha256, verifiedAt: new Date().toISOString() };
        try {
          await client.send(new PutObjectCommand({
            Bucket: o.bucket, Key: metaKey(record), ContentType: 'application/json',
            Body: JSON.stringify({ ...record, offsite: copy }, null, 2) + '\n',
          }), { abortSignal: signal() });
        } catch (e) {
          fail(`writing ${metaKey(record)}`, e);
        }
        return copy;
      } finally {
        if (o.key) await rm(staged, { force: true });
      }
    },

    async list(cluster) {
      const keys: string[] = [];
      let token: string | undefined;
      try {
        do {
          const r = await client.send(new ListObjectsV2Command({ Bucket: o.bucket, Prefix: `${prefix}/${cluster}/`, ContinuationToken: token }), { abortSignal: quick() });
          for (const c of r.Contents ?? []) if (c.Key?.endsWith('.json')) keys.push(c.Key);
          token = r.IsTruncated ? r.NextContinuationToken : undefined;
        } while (token);
      } catch (e) {
        fail(`listing ${prefix}/${cluster}/`, e);
      }
      const records = await Promise.all(keys.map(async (key) => {
        try {
          const r = await client.send(new GetObjectCommand({ Bucket: o.bucket, Key: key }), { abortSignal: quick() });
          const rec = JSON.parse(await r.Body!.transformToString()) as SnapshotRecord;
          return rec.cluster === cluster && `${prefix}/${cluster}/${rec.id}.json` === key && rec.offsite ? rec : undefined;
        } catch {
          return undefined;
        }
      }));
      return records.filter((r): r is SnapshotRecord => !!r).sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
    },

    download,

    async remove(records) {
      if (!records.length) return;
      try {
        await client.send(new DeleteObjectsCommand({
          Bucket: o.bucket,
          Delete: { Objects: records.flatMap((r) => [{ Key: metaKey(r) }, { Key: dataKey(r) }]) },
        }), { abortSignal: quick() });
      } catch (e) {
        fail('deleting old snapshots', e);
      }
    },

    rawObject: (record, dest) => getToFile(dataKey(record), dest),
  };
}
