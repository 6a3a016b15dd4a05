import { existsSync, readFileSync, rmSync } from 'node:fs';
import { labDown } from './support/lab';

// One state file per Redis port: a second jest run (another port) must not stop this one's Redis.
const STATE = `/tmp/etcd-medic-test-services-${process.env.TEST_REDIS_PORT ?? 6399}.json`;

export default async function globalTeardown(): Promise<void> {
  if (existsSync(STATE)) {
    const { redisPid } = JSON.parse(readFileSync(STATE, 'utf8')) as { redisPid: number };
    try { process.kill(redisPid, 'SIGKILL'); } catch { /* gone */ }
    rmSync(STATE, { force: true });
  }
  if (process.env.KEEP_LAB !== '1' && process.env.NO_LAB !== '1') await labDown();
}
