/**
 * A local S3-API server (s3rver, from npm) on loopback with one bucket, for the offsite
 * snapshot store; its objects live in a private directory the test can inspect.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// s3rver ships no types.
// eslint-disable-next-line @typescript-eslint/no-var-requires
const S3rver = require('s3rver') as new (o: Record<string, unknown>) => { run(): Promise<{ port: number }>; close(): Promise<void> };

export interface LocalS3 {
  endpoint: string;
  bucket: string;
  /** What the bot is configured with (s3rver accepts these credentials). */
  credentials: { accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

export async function startLocalS3(bucket = 'medic-offsite'): Promise<LocalS3> {
  const dir = mkdtempSync(join(tmpdir(), 'medic-s3-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir, configureBuckets: [{ name: bucket }] });
  const { port } = await server.run();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    async stop() {
      await server.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
