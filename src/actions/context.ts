/**
 * What executor actions work with during one job: SSH sessions to the nodes, etcd clients
 * through tunnels, node runtimes. Opened lazily, shared by the job's steps, closed at its end.
 * Every remote command a step runs is recorded for the audit trail.
 */
import type { ClusterConfig, NodeConfig } from '../config/schema';
import { describeError, MedicError } from '../engine/errors';
import type { EtcdMemberClient } from '../exec/etcd-client';
import { createTlsSource, memberClientThrough, sshTargetFor } from '../exec/probe';
import type { RemoteCommand } from '../exec/shell';
import { createSshPool, ExecOptions, ExecResult, SshPool, SshSession } from '../exec/ssh';
import { createRuntime } from '../runtime';
import type { NodeRuntime } from '../runtime/types';

/** One remote command as the audit trail keeps it. */
export interface CommandRecord {
  node: string;
  command: string;
  exit: number | null;
  durationMs: number;
  output: string;
}

export interface JobResources {
  readonly cluster: ClusterConfig;
  node(name: string): NodeConfig;
  session(node: string): Promise<SshSession>;
  runtime(node: string): Promise<NodeRuntime>;
  /** An etcd client for one member, dialled from its own node through an SSH tunnel. */
  etcd(node: string): Promise<EtcdMemberClient>;
  /**
   * A client for a member that passes its health check, preferring `prefer`, then the
   * others in config order; `exclude` nodes are never used (e.g. the node being replaced).
   */
  healthyEtcd(opts?: { exclude?: string[]; prefer?: string }): Promise<{ node: string; client: EtcdMemberClient }>;
  /** Drains the commands recorded since the last call (one step's worth). */
  takeCommands(): CommandRecord[];
  close(): Promise<void>;
}

export interface JobResourcesOptions {
  cluster: ClusterConfig;
  sshKey: Buffer;
  /** @defaultValue fs.promises.readFile */
  readLocalFile?: (path: string) => Promise<Buffer>;
}

const OUTPUT_EXCERPT = 600;

export function createJobResources(opts: JobResourcesOptions): JobResources {
  const { cluster } = opts;
  const pool: SshPool = createSshPool({
    privateKey: opts.sshKey,
    connectTimeoutMs: cluster.ssh.connectTimeoutMs,
    commandTimeoutMs: cluster.ssh.commandTimeoutMs,
  });
  const clients = new Map<string, Promise<{ client: EtcdMemberClient; close: () => Promise<void> }>>();
  const commands: CommandRecord[] = [];

  const node = (name: string): NodeConfig => {
    const n = cluster.nodes.find((x) => x.name === name);
    if (!n) throw new MedicError('UNKNOWN_NODE', `node ${name} is not in cluster ${cluster.name}'s configuration`);
    return n;
  };

  const session = async (name: string): Promise<SshSession> => {
    const raw = await pool.session(sshTargetFor(cluster, node(name)));
    return recording(raw, name, commands);
  };

  const tlsFor = createTlsSource(cluster, opts.readLocalFile);

  const open = async (name: string) => {
    const n = node(name);
    const s = await pool.session(sshTargetFor(cluster, n));
    const url = new URL(n.clientUrl);
    const tls = url.protocol === 'https:' ? await tlsFor(s) : undefined;
    const tunnel = await s.openTunnel(url.hostname, Number(url.port));
    const client = memberClientThrough(cluster, n, tunnel, tls);
    return { client, close: async () => { client.close(); await tunnel.close(); } };
  };

  const etcd = async (name: string): Promise<EtcdMemberClient> => {
    let p = clients.get(name);
    if (!p) {
      p = open(name);
      clients.set(name, p);
      p.catch(() => { if (clients.get(name) === p) clients.delete(name); });
    }
    return (await p).client;
  };

  return {
    cluster,
    node,
    session,
    async runtime(name) {
      return createRuntime(cluster.runtime, {
        session: await session(name), node: name, paths: cluster.paths, systemd: cluster.systemd,
      });
    },
    etcd,
    async healthyEtcd(o = {}) {
      const order = cluster.nodes.map((n) => n.name).filter((n) => !o.exclude?.includes(n))
        .sort((a, b) => Number(b === o.prefer) - Number(a === o.prefer));
      const why: string[] = [];
      for (const name of order) {
        try {
          const client = await etcd(name);
          const h = await client.health();
          if (h.healthy) return { node: name, client };
          why.push(`${name}: ${h.error ?? 'unhealthy'}`);
        } catch (e) {
          why.push(`${name}: ${describeError(e)}`);
        }
      }
      throw new MedicError('ETCD_UNAVAILABLE', `no healthy member to talk to (${why.join('; ') || 'none left to try'})`, true);
    },
    takeCommands: () => commands.splice(0, commands.length),
    async close() {
      const all = [...clients.values()];
      clients.clear();
      await Promise.all(all.map((p) => p.then((c) => c.close(), () => undefined)));
      await pool.closeAll();
    },
  };
}

/** The same session, with every exec recorded (command, exit status, duration, output excerpt). */
function recording(s: SshSession, node: string, sink: CommandRecord[]): SshSession {
  const exec = async (cmd: RemoteCommand, o?: ExecOptions): Promise<ExecResult> => {
    const start = Date.now();
    try {
      const r = await s.exec(cmd, o);
      sink.push({ node, command: cmd.text, exit: r.code, durationMs: r.durationMs, output: excerpt(`${r.stdout}${r.stderr}`) });
      return r;
    } catch (e) {
      sink.push({ node, command: cmd.text, exit: null, durationMs: Date.now() - start, output: excerpt(describeError(e)) });
      throw e;
    }
  };
  return new Proxy(s, {
    get(target, prop, receiver) {
      if (prop === 'exec') return exec;
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

function excerpt(s: string): string {
  const t = s.trim();
  return t.length > OUTPUT_EXCERPT ? `${t.slice(0, OUTPUT_EXCERPT)}…` : t;
}
