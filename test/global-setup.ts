import { writeFileSync } from 'node:fs';
import { startRedis } from './support/redis';
import { labUp, useLabTools } from './support/lab';

/** Port of the Redis the suites share; each suite uses its own queue name. */
export const TEST_REDIS_PORT = Number(process.env.TEST_REDIS_PORT ?? 6399);
// One state file per Redis port: a second jest run (another port) must not stop this one's Redis.
const STATE = `/tmp/etcd-medic-test-services-${process.env.TEST_REDIS_PORT ?? 6399}.json`;

export default async function globalSetup(): Promise<void> {
  const redis = await startRedis(TEST_REDIS_PORT);
  writeFileSync(STATE, JSON.stringify({ redisPid: redis.pid }));
  process.env.TEST_REDIS_URL = redis.url;
  // NO_LAB=1: unit suites only (a second jest beside a lab run must not touch the lab).
  if (process.env.NO_LAB !== '1') {
    await labUp();
    await useLabTools();
  }
}
