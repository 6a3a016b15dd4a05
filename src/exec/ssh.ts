/**
 * SSH to etcd nodes (ssh2). One connection per node per job, reused for every command
 * and tunnel of that job; the job calls `pool.closeAll()` when it ends.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { Client, ClientChannel } from 'ssh2';
import { MedicError } from '../engine/errors';
import { isRemoteCommand, RemoteCommand, sh, shq } from './shell';

/** Where and as whom to connect, and which host key to trust. */
export interface SshTarget {
  /** Config node name, used in messages. */
  node: string;
  host: string;
  port: number;
  user: string;
  /** Pinned host key fingerprint as OpenSSH prints it: SHA256:<unpadded base64>. */
  hostKey: string;
  /** Overrides the pool's connectTimeoutMs for this node (per-cluster setting). */
  connectTimeoutMs?: number;
  /** Overrides the pool's commandTimeoutMs for this node (per-cluster setting). */
  commandTimeoutMs?: number;
}

export interface SshPoolOptions {
  /** The bot's private key (OpenSSH or PEM format). */
  privateKey: Buffer | string;
  /** Deadline from TCP connect to authenticated session. */
  connectTimeoutMs: number;
  /** Default deadline of one remote command. */
  commandTimeoutMs: number;
  /** Bytes kept per output stream; the rest is drained and dropped. @defaultValue 1 MiB */
  maxOutputBytes?: number;
}

export interface ExecOptions {
  /** @defaultValue the pool's (or target's) commandTimeoutMs */
  timeoutMs?: number;
  /** Written to the command's standard input, then EOF. @defaultValue empty input */
  stdin?: string | Buffer;
  /** @defaultValue the pool's maxOutputBytes */
  maxOutputBytes?: number;
}

export interface ExecResult {
  /** Exit status; null when the remote process died of a signal. */
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** True when stdout or stderr went over the bound and was cut. */
  truncated: boolean;
  durationMs: number;
}

export interface SshTunnel {
  /** Port on 127.0.0.1 that leads to host:port as seen from the node. */
  localPort: number;
  /** Last failure to open the forwarded connection on the node (e.g. "Connection refused"). */
  lastError(): string | undefined;
  close(): Promise<void>;
}

export interface SshSession {
  readonly target: SshTarget;
  exec(cmd: RemoteCommand, opts?: ExecOptions): Promise<ExecResult>;
  /** Reads a whole remote file; REMOTE_FAILED if it is missing, unreadable or over the bound. */
  readFile(path: string, opts?: { maxBytes?: number; timeoutMs?: number }): Promise<Buffer>;
  /** Forwards a local port to host:port dialled from the node. */
  openTunnel(host: string, port: number): Promise<SshTunnel>;
  close(): Promise<void>;
}

export interface SshPool {
  /** A connected session to the target, shared by every caller of this pool. */
  session(target: SshTarget): Promise<SshSession>;
  closeAll(): Promise<void>;
}

const DEFAULT_MAX_OUTPUT = 1024 * 1024;
/** `timeout -k`: seconds between TERM and KILL on the node. */
const KILL_AFTER_S = 2;
/** OpenSSH's MaxSessions is 10 per connection: stay below it, queue the rest. */
const MAX_CHANNELS = 8;

/** OpenSSH's fingerprint of a public key blob: "SHA256:" + unpadded base64. */
export function openSshFingerprint(keyBlob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '');
}

export function createSshPool(opts: SshPoolOptions): SshPool {
  const sessions = new Map<string, Promise<SessionImpl>>();
  const keyOf = (t: SshTarget) => `${t.user}@${t.host}:${t.port}/${t.hostKey}`;
  return {
    session(target) {
      const key = keyOf(target);
      let p = sessions.get(key);
      if (!p) {
        p = connect(target, opts, () => {
          if (sessions.get(key) === p) sessions.delete(key);
        });
        sessions.set(key, p);
        p.catch(() => {
          if (sessions.get(key) === p) sessions.delete(key);
        });
      }
      return p;
    },
    async closeAll() {
      const all = [...sessions.values()];
      sessions.clear();
      await Promise.all(all.map((p) => p.then((s) => s.close(), () => undefined)));
    },
  };
}

function label(t: SshTarget): string {
  return `ssh ${t.user}@${t.host}:${t.port} (${t.node})`;
}

function connect(target: SshTarget, opts: SshPoolOptions, onClosed: () => void): Promise<SessionImpl> {
  const connectTimeoutMs = target.connectTimeoutMs ?? opts.connectTimeoutMs;
  return new Promise((resolve, reject) => {
    const client = new Client();
    let seenKey: string | undefined;
    let settled = false;
    const fail = (e: MedicError) => {
      if (settled) return;
      settled = true;
      client.end();
      reject(e);
    };
    client.once('ready', () => {
      settled = true;
      resolve(new SessionImpl(client, target, opts, onClosed));
    });
    client.on('error', (err: Error & { level?: string; code?: string }) => {
      fail(mapConnectError(err, target, seenKey, connectTimeoutMs));
    });
    client.once('close', () => fail(new MedicError('SSH_UNREACHABLE', `${label(target)}: connection closed during handshake`, true)));
    try {
      client.connect({
        host: target.host,
        port: target.port,
        username: target.user,
        privateKey: opts.privateKey,
        // Covers TCP connect, key exchange and authentication.
        readyTimeout: connectTimeoutMs,
        keepaliveInterval: 5000,
        keepaliveCountMax: 3,
        // Without a verifier ssh2 accepts any host key.
        hostVerifier: (key: Buffer) => {
          seenKey = openSshFingerprint(key);
          return seenKey === target.hostKey;
        },
      });
    } catch (e) {
      // ssh2 throws synchronously on an unparsable private key.
      fail(new MedicError('CONFIG_INVALID', `${label(target)}: ${(e as Error).message} (check the bot's SSH private key)`));
    }
  });
}

function mapConnectError(err: Error & { level?: string; code?: string }, t: SshTarget, seenKey: string | undefined, timeoutMs: number): MedicError {
  if (seenKey !== undefined && seenKey !== t.hostKey) {
    return new MedicError('SSH_HOST_KEY_MISMATCH',
      `${t.node} host key changed (expected ${t.hostKey}, got ${seenKey}): verify the node, then update clusters.yaml`);
  }
  if (err.level === 'client-authentication') {
    return new MedicError('SSH_AUTH_FAILED', `${label(t)}: authentication failed: is the bot's public key in ${t.user}'s authorized_keys?`);
  }
  if (err.level === 'client-timeout') {
    return new MedicError('SSH_UNREACHABLE', `${label(t)}: connect timed out after ${timeoutMs} ms`, true);
  }
  const detail = err.code ? `connect ${err.code}` : err.message;
  return new MedicError('SSH_UNREACHABLE', `${label(t)}: ${detail}`, true, { cause: err });
}

/** A counting semaphore for channels of one connection. */
class Slots {
  private free: number;
  private waiting: (() => void)[] = [];
  constructor(n: number) { this.free = n; }
  async acquire(): Promise<void> {
    if (this.free > 0) { this.free--; return; }
    await new Promise<void>((r) => this.waiting.push(r));
  }
  release(): void {
    const next = this.waiting.shift();
    if (next) next(); else this.free++;
  }
}

interface RawResult { code: number | null; signal: string | null; stdout: Buffer; stderr: Buffer; truncated: boolean; durationMs: number }

class SessionImpl implements SshSession {
  private closed = false;
  private readonly slots = new Slots(MAX_CHANNELS);
  private readonly tunnels = new Set<SshTunnel>();
  private readonly lost = new Set<(e: MedicError) => void>();

  constructor(private readonly client: Client, readonly target: SshTarget, private readonly opts: SshPoolOptions, onClosed: () => void) {
    client.on('error', () => undefined); // after 'ready', failures surface as 'close'
    client.once('close', () => {
      this.closed = true;
      onClosed();
      const e = new MedicError('SSH_UNREACHABLE', `${label(target)}: connection lost`, true);
      for (const f of this.lost) f(e);
    });
  }

  async exec(cmd: RemoteCommand, o: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.execRaw(cmd, o);
    return { ...r, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
  }

  async readFile(path: string, o: { maxBytes?: number; timeoutMs?: number } = {}): Promise<Buffer> {
    const maxBytes = o.maxBytes ?? this.opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    const r = await this.execRaw(sh`cat -- ${path}`, { maxOutputBytes: maxBytes, timeoutMs: o.timeoutMs });
    if (r.code !== 0) {
      throw new MedicError('REMOTE_FAILED', `${label(this.target)}: cannot read ${path}: ${r.stderr.toString('utf8').trim() || `exit ${r.code ?? r.signal}`}`);
    }
    if (r.truncated) throw new MedicError('REMOTE_FAILED', `${label(this.target)}: ${path} is larger than ${maxBytes} bytes`);
    return r.stdout;
  }

  private async execRaw(cmd: RemoteCommand, o: ExecOptions): Promise<RawResult> {
    if (!isRemoteCommand(cmd)) throw new MedicError('INTERNAL', 'exec takes only commands built with sh`...`');
    if (this.closed) throw new MedicError('SSH_UNREACHABLE', `${label(this.target)}: connection closed`, true);
    const timeoutMs = o.timeoutMs ?? this.target.commandTimeoutMs ?? this.opts.commandTimeoutMs;
    await this.slots.acquire();
    try {
      return await this.runChannel(cmd, timeoutMs, o);
    } finally {
      this.slots.release();
    }
  }

  private runChannel(cmd: RemoteCommand, timeoutMs: number, o: ExecOptions): Promise<RawResult> {
    const max = o.maxOutputBytes ?? this.opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    // sshd closing the channel does not kill the process: `timeout` does, on the node.
    // Its own process group means children of the command die with it.
    const secs = Math.max(1, Math.ceil(timeoutMs / 1000));
    const wrapped = `timeout -k ${KILL_AFTER_S} ${secs} sh -c ${shq(cmd.text)}`;
    const started = Date.now();
    const timedOut = () => new MedicError('REMOTE_TIMEOUT',
      `${label(this.target)}: command timed out after ${timeoutMs} ms: ${cmd.text.slice(0, 200)}`);

    return new Promise<RawResult>((resolve, reject) => {
      let done = false;
      let channel: ClientChannel | undefined;
      const out = new Capture(max);
      const err = new Capture(max);
      let exit: { code: number | null; signal: string | null } | undefined;

      const finish = (f: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.lost.delete(onLost);
        f();
      };
      const onLost = (e: MedicError) => finish(() => reject(e));
      this.lost.add(onLost);
      // Local deadline: the remote `timeout` should have answered well before this.
      const timer = setTimeout(() => finish(() => {
        if (channel) {
          try { channel.signal('KILL'); } catch { /* best effort; `timeout` still fires */ }
          channel.close();
        }
        reject(timedOut());
      }), timeoutMs + (KILL_AFTER_S + 1) * 1000);

      const onChannel = (e: Error | undefined, ch: ClientChannel) => {
        if (e) return finish(() => reject(new MedicError('REMOTE_FAILED', `${label(this.target)}: cannot start command: ${e.message}`, true)));
        if (done) { ch.close(); return; }
        channel = ch;
        ch.on('data', (d: Buffer) => out.add(d));
        ch.stderr.on('data', (d: Buffer) => err.add(d));
        ch.on('exit', (code: number | null, signal?: string) => { exit = { code: code ?? null, signal: signal ?? null }; });
        ch.on('error', () => undefined);
        ch.on('close', () => finish(() => {
          const durationMs = Date.now() - started;
          const code = exit?.code ?? null;
          // 124: `timeout` sent TERM. After the deadline, 137 or death by KILL: it had to send
          // KILL (to its whole process group, itself included when the login shell exec'd it).
          const killed = code === 137 || /^(SIG)?KILL$/.test(exit?.signal ?? '');
          if (code === 124 || (killed && durationMs >= timeoutMs)) return reject(timedOut());
          if (!exit && this.closed) return reject(new MedicError('SSH_UNREACHABLE', `${label(this.target)}: connection lost`, true));
          resolve({ code, signal: exit?.signal ?? null, stdout: out.bytes(), stderr: err.bytes(), truncated: out.truncated || err.truncated, durationMs });
        }));
        ch.end(o.stdin ?? undefined);
      };
      try {
        this.client.exec(wrapped, onChannel);
      } catch (e) {
        // ssh2 throws at once, instead of calling back, when the connection is already gone.
        finish(() => reject(new MedicError('SSH_UNREACHABLE', `${label(this.target)}: connection lost: ${(e as Error).message}`, true)));
      }
    });
  }

  async openTunnel(host: string, port: number): Promise<SshTunnel> {
    if (this.closed) throw new MedicError('SSH_UNREACHABLE', `${label(this.target)}: connection closed`, true);
    const sockets = new Set<net.Socket>();
    let lastError: string | undefined;
    let closing = false;
    const server = net.createServer((sock) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
      sock.on('error', () => sock.destroy());
      const forwarded = (e: Error | undefined, ch: ClientChannel) => {
        if (e) {
          lastError = `${label(this.target)}: tunnel to ${host}:${port}: ${e.message}`;
          sock.destroy();
          return;
        }
        if (closing || sock.destroyed) { ch.close(); sock.destroy(); return; }
        const end = () => { sock.destroy(); ch.close(); };
        ch.on('error', end);
        ch.on('close', end);
        sock.on('close', end);
        sock.pipe(ch).pipe(sock);
      };
      try {
        this.client.forwardOut('127.0.0.1', sock.remotePort ?? 0, host, port, forwarded);
      } catch (e) {
        // Thrown synchronously when the SSH connection is gone: inside a server callback an
        // uncaught throw would take the whole worker down.
        lastError = `${label(this.target)}: tunnel to ${host}:${port}: ${(e as Error).message}`;
        sock.destroy();
      }
    });
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(0, '127.0.0.1', () => res());
    });
    const localPort = (server.address() as net.AddressInfo).port;
    const tunnel: SshTunnel = {
      localPort,
      lastError: () => lastError,
      close: () => {
        if (closing) return Promise.resolve();
        closing = true;
        this.tunnels.delete(tunnel);
        for (const s of sockets) s.destroy();
        return new Promise<void>((res) => server.close(() => res()));
      },
    };
    this.tunnels.add(tunnel);
    return tunnel;
  }

  async close(): Promise<void> {
    await Promise.all([...this.tunnels].map((t) => t.close()));
    if (this.closed) return;
    const gone = new Promise<void>((res) => this.client.once('close', () => res()));
    this.client.end();
    // A dead peer may never confirm: don't let cleanup hang a job.
    await Promise.race([gone, new Promise<void>((res) => setTimeout(res, 2000).unref())]);
  }
}

/** Keeps the first `max` bytes of a stream and counts the rest. */
class Capture {
  private chunks: Buffer[] = [];
  private kept = 0;
  truncated = false;
  constructor(private readonly max: number) {}
  add(d: Buffer): void {
    const room = this.max - this.kept;
    if (d.length > room) this.truncated = true;
    if (room <= 0) return;
    const part = d.length > room ? d.subarray(0, room) : d;
    this.chunks.push(part);
    this.kept += part.length;
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}
