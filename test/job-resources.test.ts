/**
 * A plan job's connections on the worker's kept SSH pool, against a real throwaway sshd:
 * a job that ended well leaves them for the next job (and status); a job that failed or lost
 * its lease closes them, so nothing of it goes on and the next one dials anew.
 */
import { createJobResources } from '../src/actions/context';
import { configSchema, ClusterConfig } from '../src/config/schema';
import { sh } from '../src/exec/shell';
import { createSshPool, SshPool } from '../src/exec/ssh';
import { Sshd, startSshd, stopSshd } from './support/sshd';

let sshd: Sshd;
let pool: SshPool;
let cluster: ClusterConfig;

beforeAll(async () => {
  sshd = await startSshd();
  pool = createSshPool({ privateKey: sshd.clientKey, connectTimeoutMs: 5000, commandTimeoutMs: 10_000, idleMs: 60_000 });
  cluster = configSchema.parse({
    clusters: [{
      name: 'c1', channels: ['console'],
      nodes: [{ name: 'node1', ssh: { host: '127.0.0.1', port: sshd.port, user: 'root', hostKey: sshd.fingerprint }, clientUrl: 'https://127.0.0.1:2379', peerUrl: 'https://127.0.0.1:2380' }],
    }],
  }).clusters[0];
});

afterAll(async () => {
  await pool?.closeAll();
  await stopSshd(sshd);
});

/** The client side of the SSH connection a job's command ran over ("<address> <port>"), as sshd sees it. */
async function connectionOf(job: ReturnType<typeof createJobResources>): Promise<string> {
  const r = await (await job.session('node1')).exec(sh`echo "$SSH_CLIENT" | cut -d' ' -f1,2`);
  return r.stdout.trim();
}

describe('plan jobs on the kept pool', () => {
  it('a job that ended well leaves its connection to the next job; one that failed closes it', async () => {
    const a = createJobResources({ cluster, sshKey: sshd.clientKey, pool });
    const first = await connectionOf(a);
    await a.release();
    await a.close(); // the workflow's finally: nothing more once released
    expect(pool.size()).toBe(1);
    await expect(a.session('node1')).rejects.toThrow(/connections are closed/);

    const b = createJobResources({ cluster, sshKey: sshd.clientKey, pool });
    expect(await connectionOf(b)).toBe(first);
    await b.close();
    expect(pool.size()).toBe(0);

    const c = createJobResources({ cluster, sshKey: sshd.clientKey, pool });
    const third = await connectionOf(c);
    expect(third).not.toBe(first);
    await c.release();
  });

  it('without a shared pool a job dials its own and closes it at its end, even when it ended well', async () => {
    const kept = await connectionOf(createJobResources({ cluster, sshKey: sshd.clientKey, pool }));
    const own = createJobResources({ cluster, sshKey: sshd.clientKey });
    const mine = await connectionOf(own);
    expect(mine).not.toBe(kept);
    const session = await own.session('node1');
    await own.release();
    expect(session.isOpen()).toBe(false);
    expect(pool.size()).toBe(1);
  });
});
