import { spawn, ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RedisServer {
  url: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    const done = (ok: boolean) => { s.destroy(); resolve(ok); };
    s.setTimeout(500, () => done(false));
    s.on('error', () => done(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

export interface RedisOptions {
  /**
   * Keep data across restarts as production does (AOF, fsync on every write), in `dir`;
   * `stop()` then leaves `dir` for the next start. @defaultValue no persistence, fresh dir
   */
  persistIn?: string;
}

/** A real redis-server (Debian's) on loopback, as BullMQ wants it (noeviction). */
export async function startRedis(port: number, opts: RedisOptions = {}): Promise<RedisServer> {
  // A Redis already on the port would answer for ours and outlive the run: refuse.
  if (await ping(port)) throw new Error(`something already answers on 127.0.0.1:${port} (a leftover redis-server?): stop it first`);
  const dir = opts.persistIn ?? mkdtempSync(join(tmpdir(), 'medic-redis-'));
  const persistence = opts.persistIn ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
  const child: ChildProcess = spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence,
    '--maxmemory-policy', 'noeviction', '--dir', dir, '--daemonize', 'no',
  ], { stdio: 'ignore', detached: true });
  child.unref();
  const deadline = Date.now() + 10000;
  while (!(await ping(port)) || child.exitCode !== null) {
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error(`redis-server on port ${port} did not start (is the port taken, or redis-server missing?)`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    async stop() {
      try { process.kill(child.pid!, 'SIGKILL'); } catch { /* already gone */ }
      const until = Date.now() + 5000;
      while (await ping(port) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      if (!opts.persistIn) rmSync(dir, { recursive: true, force: true });
    },
  };
}


/** startRedis, waiting while another suite still holds the port (suites that share one). */
export async function startRedisWhenFree(port: number, waitMs = 100000): Promise<RedisServer> {
  const until = Date.now() + waitMs;
  for (;;) {
    try {
      return await startRedis(port);
    } catch (e) {
      if (Date.now() > until || !/already answers|did not start/.test(String(e))) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
