/**
 * A throwaway one-member etcd (Debian's /usr/bin/etcd, 3.4) for tests that need a real
 * member but must not touch the shared lab: plain http on loopback, its own temp dir,
 * stopped by pid. Default ports 23791 (client) / 23792 (peer).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, RunResult } from './lab';

export interface SingleEtcdOptions {
  /** @defaultValue 23791 */
  clientPort?: number;
  /** @defaultValue 23792 */
  peerPort?: number;
  /** Member name. @defaultValue 'single' */
  name?: string;
  /** Start on an existing data dir (e.g. one restored from a snapshot) instead of a new one. */
  dataDir?: string;
  /** Keys to put once it is healthy. @defaultValue none */
  keys?: Record<string, string>;
  /** Deadline to become healthy. @defaultValue 20000 */
  startTimeoutMs?: number;
}

export interface SingleEtcd {
  readonly endpoint: string;
  readonly dataDir: string;
  readonly pid: number;
  /** etcdctl (API v3) against this member; never rejects on exit status. */
  etcdctl(args: string[], timeoutMs?: number): Promise<RunResult>;
  /** etcdctl that rejects (with stderr) on a non-zero exit; resolves with stdout. */
  etcdctlOk(args: string[], timeoutMs?: number): Promise<string>;
  /** The member's current revision, from `endpoint status` (text, as etcd's header carries it). */
  revision(): Promise<string>;
  /** SIGKILL now (a crash); does not wait and does not remove anything. */
  kill(): void;
  /** Kills it, waits until the port is free, removes the temp dir (and a data dir we created). */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function healthy(endpoint: string): Promise<boolean> {
  try {
    const r = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
    return r.ok && ((await r.json()) as { health?: string }).health === 'true';
  } catch {
    return false;
  }
}

/** Starts a one-member etcd and waits until `/health` says so. Refuses a port that answers already. */
export async function startSingleEtcd(o: SingleEtcdOptions = {}): Promise<SingleEtcd> {
  const clientPort = o.clientPort ?? 23791;
  const peerPort = o.peerPort ?? 23792;
  const name = o.name ?? 'single';
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  // Another etcd on our port would answer for ours and outlive the run: refuse.
  if (await healthy(endpoint)) throw new Error(`an etcd already answers on ${endpoint} (a leftover from an earlier run?): stop it first`);

  const dir = mkdtempSync(join(tmpdir(), 'medic-etcd-'));
  const dataDir = o.dataDir ?? join(dir, 'data');
  const log = openSync(join(dir, 'etcd.log'), 'a');
  const child: ChildProcess = spawn('/usr/bin/etcd', [
    '--name', name, '--data-dir', dataDir,
    '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
    '--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl,
    '--initial-cluster', `${name}=${peerUrl}`, '--initial-cluster-state', 'new',
    '--initial-cluster-token', `medic-test-${process.pid}`,
  ], { stdio: ['ignore', log, log], detached: true });
  closeSync(log);
  child.unref();

  const pid = child.pid!;
  const kill = () => { try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ } };
  const etcdctl = (args: string[], timeoutMs = 20_000) => run('etcdctl', [`--endpoints=${endpoint}`, '--dial-timeout=2s', '--command-timeout=10s', ...args],
    { timeoutMs, env: { ...process.env, ETCDCTL_API: '3' } });
  const etcdctlOk = async (args: string[], timeoutMs?: number) => {
    const r = await etcdctl(args, timeoutMs);
    if (r.code !== 0) throw new Error(`etcdctl ${args.join(' ')} failed (exit ${r.code ?? r.signal}): ${r.stderr.trim()}`);
    return r.stdout;
  };
  const stop = async () => {
    kill();
    const until = Date.now() + 5000;
    while (child.exitCode === null && child.signalCode === null && Date.now() < until) await sleep(50);
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + (o.startTimeoutMs ?? 20_000);
  while (!(await healthy(endpoint))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`etcd on ${endpoint} did not become healthy (exit ${child.exitCode}); ports ${clientPort}/${peerPort} taken?`);
    }
    await sleep(100);
  }

  const self: SingleEtcd = {
    endpoint, dataDir, pid, etcdctl, etcdctlOk, kill, stop,
    // `-w json` prints the header's uint64s as bare numbers; the revision is small here,
    // but read it as text anyway (JSON.parse rounds past 2^53).
    async revision() {
      const out = await etcdctlOk(['endpoint', 'status', '-w', 'json']);
      const m = /"revision":(\d+)/.exec(out);
      if (!m) throw new Error(`no revision in endpoint status: ${out}`);
      return m[1]!;
    },
  };
  for (const [k, v] of Object.entries(o.keys ?? {})) await etcdctlOk(['put', k, v]);
  return self;
}
