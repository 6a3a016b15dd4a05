/**
 * What executor actions work with during one job: SSH sessions to the nodes, etcd clients
 * through tunnels, node runtimes. Opened lazily, shared by the job's steps, closed at its end.
 * Every remote command a step runs is recorded for the audit trail.
 */
import type { ClusterConfig, NodeConfig } from '../config/schema';
import { posix } from 'node:path';
import { abortReason } from '../engine/abort';
import { describeError, MedicError } from '../engine/errors';
import type { EtcdMemberClient } from '../exec/etcd-client';
import { createTlsSource, memberClientThrough, sshTargetFor } from '../exec/probe';
import { RemoteCommand, sh } from '../exec/shell';
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
  /**
   * Binds the step about to run: its signal (timeout, lost lease, shutdown) is checked
   * before every remote command, file transfer and etcd call, and kills a command in flight.
   */
  beginStep(signal: AbortSignal): void;
  /**
   * Dials every node (SSH, then its etcd client's tunnel and TLS) at once, in the
   * background, so the steps find their connections ready instead of dialling one node
   * after another. Runs no command of the plan and records none; a node that can't be
   * reached fails here silently and again, with its reason, in the step that needs it.
   */
  warm(): void;
  /**
   * The same connections with a command record and a step binding of its own: for steps
   * that run at the same time. Closing a view closes the job's connections.
   */
  view(): JobResources;
  /**
   * Closes every connection; from then on session(), etcd() and runtime() throw. SSH
   * connections of a shared pool to this cluster's nodes are closed too (a failed step,
   * a lost lease: nothing of this job goes on on them).
   */
  close(): Promise<void>;
  /**
   * The job ended well: like close(), but SSH connections of a shared pool stay for the
   * next job and status (a later close() does nothing more).
   */
  release(): Promise<void>;
}

/**
 * Fencing (issue 8): the cluster lock's token reaches where changes happen. A node keeps
 * the highest token it has seen in `<workDir>/fence`, compared before each remote command
 * of the job; an etcd change is preceded by `check()` (the token is still the lock's).
 * A stale holder (a worker that was cut off and woke up late) is refused, not raced.
 */
export interface Fence {
  token: number;
  /** Throws FENCED (or LEASE_LOST) unless the lease is still this job's. */
  check(): Promise<void>;
}

export interface JobResourcesOptions {
  cluster: ClusterConfig;
  sshKey: Buffer;
  /** @defaultValue fs.promises.readFile */
  readLocalFile?: (path: string) => Promise<Buffer>;
  /** The job's lease token and check; without it (read jobs) nothing is fenced. */
  fence?: Fence;
  /**
   * The worker's kept SSH pool, shared with status probes and other jobs: the connections
   * the re-plan's probe just used are the ones the steps run on. Without it the job dials
   * its own and closes them at its end.
   */
  pool?: SshPool;
}

/** Exit status of the fence prefix when the node has seen a newer token. */
export const FENCE_EXIT = 97;
const FENCE_MARK = 'etcd-medic: fenced:';

const OUTPUT_EXCERPT = 600;

export function createJobResources(opts: JobResourcesOptions): JobResources {
  const { cluster } = opts;
  const pool: SshPool = opts.pool ?? createSshPool({
    privateKey: opts.sshKey,
    connectTimeoutMs: cluster.ssh.connectTimeoutMs,
    commandTimeoutMs: cluster.ssh.commandTimeoutMs,
  });
  const clients = new Map<string, Promise<{ client: EtcdMemberClient; close: () => Promise<void>; via: SshSession }>>();
  const state = { closed: false };

  const node = (name: string): NodeConfig => {
    const n = cluster.nodes.find((x) => x.name === name);
    if (!n) throw new MedicError('UNKNOWN_NODE', `node ${name} is not in cluster ${cluster.name}'s configuration`);
    return n;
  };

  const tlsFor = createTlsSource(cluster, opts.readLocalFile);

  const open = async (name: string) => {
    const n = node(name);
    const s = await pool.session(sshTargetFor(cluster, n));
    const url = new URL(n.clientUrl);
    const tls = url.protocol === 'https:' ? await tlsFor(s) : undefined;
    const tunnel = await s.openTunnel(url.hostname, Number(url.port));
    const client = memberClientThrough(cluster, n, tunnel, tls);
    return { client, close: async () => { client.close(); await tunnel.close(); }, via: s };
  };

  /** The job's client for `name`'s member: one per member, dialled again if its SSH connection died. */
  const clientOf = async (name: string): Promise<EtcdMemberClient> => {
    let p = clients.get(name);
    // A client whose tunnel's SSH connection died (the node went away, sshd restarted)
    // would fail every call until the step timed out: dial again instead.
    const cached = p && await p.catch(() => undefined);
    if (cached && !cached.via.isOpen()) {
      if (clients.get(name) === p) clients.delete(name);
      void cached.close().catch(() => undefined);
      p = undefined;
    }
    if (!p) {
      p = open(name);
      clients.set(name, p);
      p.catch(() => { if (clients.get(name) === p) clients.delete(name); });
    }
    return (await p).client;
  };

  // The job's etcd clients and tunnels always close with it; SSH connections of its own pool
  // too, those of a shared pool unless the job ended well (release).
  const end = async (keep: boolean) => {
    if (state.closed) return;
    state.closed = true;
    const all = [...clients.values()];
    clients.clear();
    await Promise.all(all.map((p) => p.then((c) => c.close(), () => undefined)));
    if (!opts.pool) await pool.closeAll();
    else if (!keep) await pool.drop(cluster.nodes.map((n) => sshTargetFor(cluster, n)));
  };
  const close = () => end(false);
  const release = () => end(true);

  // A view: the job's connections with its own command record and step signal, so steps
  // that run at once each record their own commands and stop on their own timeout.
  const view = (): JobResources => {
    const commands: CommandRecord[] = [];
    let stepSignal: AbortSignal | undefined;
    // Every use goes through here: resources closed once stay closed, an aborted step acts no more.
    const guard = (what: string) => {
      if (state.closed) throw new MedicError('CANCELLED', `${what}: this job's connections are closed (the job stopped); nothing was run`);
      if (stepSignal?.aborted) throw abortReason(stepSignal, `${what}: not run, the step was aborted`);
    };
    const guards: Guards = { guard, signal: () => stepSignal, fence: opts.fence, workDir: cluster.paths.workDir };

    const session = async (name: string): Promise<SshSession> => {
      guard(`ssh ${name}`);
      const raw = await pool.session(sshTargetFor(cluster, node(name)));
      guard(`ssh ${name}`);
      return guarded(raw, name, commands, guards);
    };

    const etcd = async (name: string): Promise<EtcdMemberClient> => {
      guard(`etcd on ${name}`);
      const client = await clientOf(name);
      guard(`etcd on ${name}`);
      return guardedEtcd(client, name, guards);
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
      warm() {
        for (const n of cluster.nodes) {
          // health() never throws: it makes the client dial (TLS, HTTP/2) once, here.
          if (!state.closed) void clientOf(n.name).then((c) => c.health(), () => undefined);
        }
      },
      beginStep(signal) { stepSignal = signal; },
      view,
      close,
      release,
    };
  };
  return view();
}

interface Guards {
  guard(what: string): void;
  signal(): AbortSignal | undefined;
  fence?: Fence;
  workDir: string;
}

/**
 * Run before a fenced command, in the same shell: refuses (exit FENCE_EXIT) when the node has seen
 * a newer lock token, and records this one when it is newer than what the node has.
 */
function fencePrefix(workDir: string, token: number): RemoteCommand {
  const file = posix.join(workDir, 'fence');
  return sh`medic_fence_f=${file}; medic_fence_t=$(cat "$medic_fence_f" 2>/dev/null || echo 0); case "$medic_fence_t" in ''|*[!0-9]*) medic_fence_t=0;; esac; if [ "$medic_fence_t" -gt ${token} ]; then printf 'etcd-medic: fenced: this node has seen lock token %s, this worker holds %s\\n' "$medic_fence_t" ${token} >&2; exit ${FENCE_EXIT}; fi; if [ "$medic_fence_t" -lt ${token} ]; then mkdir -p ${workDir} && printf '%s\\n' ${token} > "$medic_fence_f.$$" && mv -f "$medic_fence_f.$$" "$medic_fence_f" || { echo "etcd-medic: fenced: cannot record lock token ${token} in ${file}" >&2; exit ${FENCE_EXIT}; }; fi;`;
}

/**
 * The same session, checked and recorded: every use first passes the job's guard (closed
 * resources, aborted step); with a fence, every command carries the fence check and every
 * file write is preceded by one; every exec is recorded (command, exit status, duration,
 * output excerpt) as the audit trail keeps it.
 */
function guarded(s: SshSession, node: string, sink: CommandRecord[], g: Guards): SshSession {
  const fenced = (r: ExecResult) => {
    if (r.code === FENCE_EXIT && r.stderr.includes(FENCE_MARK)) {
      throw new MedicError('FENCED', `${node}: ${r.stderr.trim().replace(/^etcd-medic: fenced: /, '')}: a newer holder of the cluster's lock acted on this node (another worker, or another etcd-medic with its own Redis); this one stops. If nothing else acts on this cluster, remove ${posix.join(g.workDir, 'fence')} on ${node}`);
    }
    return r;
  };
  const run = (cmd: RemoteCommand, o?: ExecOptions) => {
    const signal = g.signal();
    const opts = signal ? { ...o, signal } : o;
    return s.exec(g.fence ? sh`${fencePrefix(g.workDir, g.fence.token)} ${cmd}` : cmd, opts).then(fenced);
  };
  const exec = async (cmd: RemoteCommand, o?: ExecOptions): Promise<ExecResult> => {
    g.guard(`${node}: ${cmd.text.slice(0, 80)}`);
    const start = Date.now();
    try {
      const r = await run(cmd, o);
      sink.push({ node, command: cmd.text, exit: r.code, durationMs: r.durationMs, output: excerpt(`${r.stdout}${r.stderr}`) });
      return r;
    } catch (e) {
      sink.push({ node, command: cmd.text, exit: null, durationMs: Date.now() - start, output: excerpt(describeError(e)) });
      throw e;
    }
  };
  const checked = <A extends unknown[], R>(what: string, f: (...a: A) => Promise<R>, fence = false) => async (...a: A): Promise<R> => {
    g.guard(`${node}: ${what}`);
    if (fence && g.fence) await run(sh`true`);
    g.guard(`${node}: ${what}`);
    return f(...a);
  };
  const overrides: Partial<SshSession> = {
    exec,
    readFile: checked('read a file', s.readFile.bind(s)),
    writeFile: checked('write a file', s.writeFile.bind(s), true),
    stat: checked('stat a file', s.stat.bind(s)),
    openTunnel: checked('open a tunnel', s.openTunnel.bind(s)),
  };
  return new Proxy(s, {
    get(target, prop, receiver) {
      if (prop in overrides) return overrides[prop as keyof SshSession];
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** etcd calls that change the cluster: the fence is checked immediately before each. */
const ETCD_CHANGES = new Set<keyof EtcdMemberClient>(['memberAdd', 'memberRemove', 'memberPromote', 'defragment', 'alarmDisarm', 'put']);

/** The same etcd client, every call behind the job's guard and every change behind the fence. */
function guardedEtcd(c: EtcdMemberClient, node: string, g: Guards): EtcdMemberClient {
  return new Proxy(c, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      const f = (v as (...a: unknown[]) => unknown).bind(target);
      if (prop === 'close') return f;
      return async (...a: unknown[]) => {
        g.guard(`etcd on ${node}: ${String(prop)}`);
        if (g.fence && ETCD_CHANGES.has(prop as keyof EtcdMemberClient)) {
          await g.fence.check();
          g.guard(`etcd on ${node}: ${String(prop)}`);
        }
        return f(...a);
      };
    },
  });
}

function excerpt(s: string): string {
  const t = s.trim();
  return t.length > OUTPUT_EXCERPT ? `${t.slice(0, OUTPUT_EXCERPT)}…` : t;
}
