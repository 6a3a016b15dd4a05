import { existsSync, readFileSync, rmSync } from 'node:fs';
import { labDown } from './support/lab';

const STATE = '/tmp/etcd-medic-test-services.json';

export default async function globalTeardown(): Promise<void> {
  if (existsSync(STATE)) {
    const { redisPid } = JSON.parse(readFileSync(STATE, 'utf8')) as { redisPid: number };
    try { process.kill(redisPid, 'SIGKILL'); } catch { /* gone */ }
    rmSync(STATE, { force: true });
  }
  if (process.env.KEEP_LAB !== '1' && process.env.NO_LAB !== '1') await labDown();
}
