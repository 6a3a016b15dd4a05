/**
 * SSH to etcd nodes (ssh2). One connection per node per pool, reused for every command
 * and tunnel: a job's own pool lives until the job calls `pool.closeAll()`; a kept pool
 * (`idleMs`) is shared by a worker's read jobs, checks a connection that sat unused before
 * handing it out again, and closes the ones unused for `idleMs`.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { posix } from 'node:path';
import { Client, ClientChannel, SFTPWrapper } from 'ssh2';
import { abortReason } from '../engine/abort';
import { isMedicError, MedicError } from '../engine/errors';
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
  /**
   * Keep connections between uses: one with no command, transfer or tunnel for this long
   * is closed. Without it a connection lives until it is lost or `closeAll()`.
   */
  idleMs?: number;
  /** With idleMs: the most unused connections kept; the least recently used goes first (a fleet of 50 three-node clusters keeps 150). @defaultValue 256 */
  maxIdle?: number;
  /** With idleMs: a connection unused this long runs a no-op command before it is handed out again. @defaultValue 10 s */
  checkAfterMs?: number;
}

export interface ExecOptions {
  /** @defaultValue the pool's (or target's) commandTimeoutMs */
  timeoutMs?: number;
  /** Written to the command's standard input, then EOF. @defaultValue empty input */
  stdin?: string | Buffer;
  /** @defaultValue the pool's maxOutputBytes */
  maxOutputBytes?: number;
  /**
   * Aborts the command: refused before it starts (also after waiting for a channel slot),
   * killed if it runs. The remote `timeout -k` is the backstop on the node.
   */
  signal?: AbortSignal;
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
  /** False once the connection closed or was lost (a cached tunnel through it is dead too). */
  isOpen(): boolean;
  exec(cmd: RemoteCommand, opts?: ExecOptions): Promise<ExecResult>;
  /** Reads a whole remote file; REMOTE_FAILED if it is missing, unreadable or over the bound. */
  readFile(path: string, opts?: { maxBytes?: number; timeoutMs?: number }): Promise<Buffer>;
  /**
   * Writes a whole remote file over SFTP, atomically: `<path>.medic-tmp` gets the data, its
   * mode and an fsync, then replaces `path` by posix-rename. Readers (etcd, kubelet) see the
   * old file or the new one, never a half-written one. The directory must exist.
   */
  writeFile(path: string, data: Buffer, opts?: WriteFileOptions): Promise<void>;
  /** Stats a remote path over SFTP (following symlinks); a missing path is `{ exists: false }`. */
  stat(path: string, opts?: { timeoutMs?: number }): Promise<RemoteStat>;
  /** Forwards a local port to host:port dialled from the node. */
  openTunnel(host: string, port: number): Promise<SshTunnel>;
  close(): Promise<void>;
}

export interface WriteFileOptions {
  /** Permission bits of the new file, set before any data is written. @defaultValue 0o644 */
  mode?: number;
  /** Deadline of the whole write (SFTP session, data, rename). @defaultValue the pool's (or target's) commandTimeoutMs */
  timeoutMs?: number;
}

export interface RemoteStat {
  exists: boolean;
  /** Permission bits only (`mode & 0o7777`), e.g. 0o600. */
  mode?: number;
  size?: number;
  type?: 'file' | 'directory' | 'other';
}

export interface SshPool {
  /** A connected session to the target, shared by every caller of this pool. */
  session(target: SshTarget): Promise<SshSession>;
  /** Connections open now (connecting ones included). */
  size(): number;
  /** Closes this pool's connections to these targets (connecting ones as they connect); the next session() dials anew. */
  drop(targets: SshTarget[]): Promise<void>;
  closeAll(): Promise<void>;
}

const DEFAULT_MAX_OUTPUT = 1024 * 1024;
/** `timeout -k`: seconds between TERM and KILL on the node. */
const KILL_AFTER_S = 2;
/** OpenSSH's MaxSessions is 10 per connection: stay below it, queue the rest. */
const MAX_CHANNELS = 8;
/**
 * Waits before opening a refused channel again. sshd counts a session until it has freed
 * it, a moment after the client saw it close, and refuses more than MaxSessions: a busy
 * node refuses an open the bot's own count allows. Nothing ran on a refused channel, so
 * trying again can't run a command twice.
 */
const OPEN_RETRY_MS = [100, 200, 400, 800, 1600];
const refusedOpen = (e: unknown) => (e as { channelRefused?: boolean } | undefined)?.channelRefused === true;
const sleepMs = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Suffix of the temporary file `writeFile` renames into place. */
const TMP_SUFFIX = '.medic-tmp';
/** SSH_FX_* status codes (draft-ietf-secsh-filexfer-02) that get a plainer message. */
const SFTP_NO_SUCH_FILE = 2;
const SFTP_PERMISSION_DENIED = 3;

/** OpenSSH's fingerprint of a public key blob: "SHA256:" + unpadded base64. */
export function openSshFingerprint(keyBlob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '');
}

/** A kept connection's no-op check before reuse. */
const CHECK_TIMEOUT_MS = 3000;

export function createSshPool(opts: SshPoolOptions): SshPool {
  const sessions = new Map<string, Promise<SessionImpl>>();
  const ready = new Map<string, SessionImpl>();
  const keyOf = (t: SshTarget) => `${t.user}@${t.host}:${t.port}/${t.hostKey}`;
  const kept = opts.idleMs !== undefined;
  const checkAfterMs = opts.checkAfterMs ?? 10_000;
  let sweeper: NodeJS.Timeout | undefined;

  const forget = (key: string, p: Promise<SessionImpl>) => {
    if (sessions.get(key) !== p) return;
    sessions.delete(key);
    ready.delete(key);
    if (!sessions.size && sweeper) { clearInterval(sweeper); sweeper = undefined; }
  };
  // Unused for idleMs: closed. More unused than maxIdle: the least recently used closed.
  const sweep = () => {
    const idle = [...ready.entries()].filter(([, s]) => !s.busy()).sort(([, a], [, b]) => b.idleFor() - a.idleFor());
    let over = idle.length - (opts.maxIdle ?? 256);
    for (const [key, s] of idle) {
      if (s.idleFor() < opts.idleMs! && over <= 0) break;
      over--;
      forget(key, sessions.get(key)!);
      void s.close();
    }
  };
  const connectNew = (target: SshTarget, key: string): Promise<SessionImpl> => {
    const p: Promise<SessionImpl> = connect(target, opts, () => forget(key, p));
    sessions.set(key, p);
    p.then((s) => { if (sessions.get(key) === p) ready.set(key, s); }, (e: unknown) => {
      forget(key, p);
      // The node now shows another key: nothing this pool holds to that address is used again.
      if (isMedicError(e) && e.code === 'SSH_HOST_KEY_MISMATCH') {
        for (const [k, s] of [...ready]) {
          if (s.target.host === target.host && s.target.port === target.port) { forget(k, sessions.get(k)!); void s.close(); }
        }
      }
    });
    if (kept && !sweeper) {
      sweeper = setInterval(sweep, Math.max(50, Math.min(5000, opts.idleMs! / 2)));
      sweeper.unref();
    }
    return p;
  };

  return {
    async session(target) {
      const key = keyOf(target);
      const p = sessions.get(key);
      if (!p) return connectNew(target, key);
      if (!kept) return p;
      const s = ready.get(key);
      // Sat unused a while: prove it still carries a command before anyone relies on it.
      if (s && !s.busy() && s.idleFor() >= checkAfterMs && !(await s.check(CHECK_TIMEOUT_MS))) {
        forget(key, p);
        void s.close();
        return sessions.get(key) ?? connectNew(target, key);
      }
      return p;
    },
    size: () => sessions.size,
    async drop(targets) {
      const gone = targets.map(keyOf).flatMap((key) => {
        const p = sessions.get(key);
        if (!p) return [];
        forget(key, p);
        return [p];
      });
      await Promise.all(gone.map((p) => p.then((s) => s.close(), () => undefined)));
    },
    async closeAll() {
      const all = [...sessions.values()];
      sessions.clear();
      ready.clear();
      if (sweeper) { clearInterval(sweeper); sweeper = undefined; }
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
      // Commands and etcd calls are small request/answer exchanges: Nagle's algorithm would
      // hold each small write until the peer's delayed ACK, 40 ms a call. Our side: noDelay.
      client.setNoDelay(true);
      void markInteractive(client).then(() => {
        if (settled) return;
        settled = true;
        resolve(new SessionImpl(client, target, opts, onClosed));
      });
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

/** Bound on the one PTY command of a new connection; past it the connection is used as it is. */
const INTERACTIVE_MS = 2000;

/**
 * sshd sets TCP_NODELAY on a connection only once a session on it asks for a PTY (OpenSSH's
 * packet_set_interactive), and never clears it. Without it every answer that comes in two
 * packets (a command's output, then its exit status; an etcd reply's frames) waits for our
 * delayed ACK: about 40 ms per command or etcd call. One `true` with a PTY, once per
 * connection, takes that away. A node that refuses PTYs (PermitTTY no) works as before, slower.
 * The PTY login is recorded by the node (utmp) like any login.
 */
function markInteractive(client: Client): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, INTERACTIVE_MS);
    const done = () => { clearTimeout(timer); resolve(); };
    try {
      // A fixed command, nothing from chat: the same on every node.
      client.exec('true', { pty: true }, (e, ch) => {
        if (e) return done();
        ch.on('close', done);
        ch.on('error', done);
        ch.resume();
        ch.stderr.resume();
      });
    } catch {
      done();
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

/** A counting semaphore for channels of one connection; it also tells how long it sat unused. */
class Slots {
  private free: number;
  private waiting: (() => void)[] = [];
  /** Holders and waiters. */
  used = 0;
  lastUsed = Date.now();
  constructor(n: number) { this.free = n; }
  async acquire(): Promise<void> {
    this.used++;
    this.lastUsed = Date.now();
    if (this.free > 0) { this.free--; return; }
    await new Promise<void>((r) => this.waiting.push(r));
  }
  release(): void {
    this.used--;
    this.lastUsed = Date.now();
    const next = this.waiting.shift();
    if (next) next(); else this.free++;
  }
}

interface RawResult { code: number | null; signal: string | null; stdout: Buffer; stderr: Buffer; truncated: boolean; durationMs: number }

class SessionImpl implements SshSession {
  private closed = false;
  isOpen(): boolean { return !this.closed; }
  private readonly slots = new Slots(MAX_CHANNELS);
  private readonly tunnels = new Set<SshTunnel>();
  private readonly lost = new Set<(e: MedicError) => void>();

  /** A command or transfer under way, or a tunnel open. */
  busy(): boolean { return this.slots.used > 0 || this.tunnels.size > 0; }
  /** Milliseconds since the last command or transfer began or ended (0 while busy). */
  idleFor(): number { return this.busy() ? 0 : Date.now() - this.slots.lastUsed; }
  /** True when a no-op command runs and exits 0 within timeoutMs. */
  async check(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((r) => { timer = setTimeout(() => r(false), timeoutMs); });
    const ran = this.execRaw(sh`true`, { timeoutMs }).then((r) => r.code === 0, () => false);
    try {
      return await Promise.race([ran, late]);
    } finally {
      clearTimeout(timer);
    }
  }

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
    throwIfAborted(o.signal, this.target);
    await this.slots.acquire();
    try {
      for (let attempt = 0; ; attempt++) {
        throwIfAborted(o.signal, this.target);
        try {
          return await this.runChannel(cmd, timeoutMs, o);
        } catch (e) {
          if (!refusedOpen(e) || attempt >= OPEN_RETRY_MS.length || this.closed) throw e;
          await sleepMs(OPEN_RETRY_MS[attempt]);
        }
      }
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
        o.signal?.removeEventListener('abort', onAbort);
        f();
      };
      const onAbort = () => finish(() => {
        if (channel) {
          try { channel.signal('KILL'); } catch { /* best effort; `timeout` still fires */ }
          channel.close();
        }
        reject(abortReason(o.signal!, `${label(this.target)}: command aborted`));
      });
      o.signal?.addEventListener('abort', onAbort, { once: true });
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
        if (e) return finish(() => reject(Object.assign(new MedicError('REMOTE_FAILED', `${label(this.target)}: cannot start command: ${e.message}`, true), { channelRefused: true })));
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

  async writeFile(path: string, data: Buffer, o: WriteFileOptions = {}): Promise<void> {
    const mode = o.mode ?? 0o644;
    const tmp = path + TMP_SUFFIX;
    await this.withSftp(`write ${path}`, o.timeoutMs, async (sftp) => {
      try {
        const handle = await sftpCall<Buffer>((cb) => sftp.open(tmp, 'w', { mode }, cb));
        try {
          // open's mode applies only to a new file: a leftover temp file keeps its old mode,
          // so set it before the data (a CA key) lands in it.
          await sftpCall((cb) => sftp.fchmod(handle, mode, cb));
          await sftpCall((cb) => sftp.write(handle, data, 0, data.length, 0, cb));
          await this.fsync(sftp, handle);
        } finally {
          await sftpCall((cb) => sftp.close(handle, cb)).catch(() => undefined);
        }
      } catch (e) {
        await sftpCall((cb) => sftp.unlink(tmp, cb)).catch(() => undefined);
        throw this.sftpError(`cannot write ${path}`, e);
      }
      await this.rename(sftp, tmp, path);
    });
  }

  async stat(path: string, o: { timeoutMs?: number } = {}): Promise<RemoteStat> {
    return this.withSftp(`stat ${path}`, o.timeoutMs, async (sftp) => {
      try {
        const st = await sftpCall<{ mode: number; size: number; isFile(): boolean; isDirectory(): boolean }>((cb) => sftp.stat(path, cb));
        const type = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : 'other';
        return { exists: true, mode: st.mode & 0o7777, size: st.size, type };
      } catch (e) {
        if ((e as { code?: unknown }).code === SFTP_NO_SUCH_FILE) return { exists: false };
        throw this.sftpError(`cannot stat ${path}`, e);
      }
    });
  }

  /** Flushes the temp file before the rename, so a crash can't leave an empty file under the real name. */
  private async fsync(sftp: SFTPWrapper, handle: Buffer): Promise<void> {
    try {
      await sftpCall((cb) => sftp.ext_openssh_fsync(handle, cb));
    } catch (e) {
      // ssh2 throws synchronously when the server lacks fsync@openssh.com: the rename is
      // still atomic, only less durable.
      if (!/does not support/.test((e as Error).message)) throw e;
    }
  }

  /** posix-rename replaces the target atomically; plain SFTP rename fails when it exists. */
  private async rename(sftp: SFTPWrapper, tmp: string, path: string): Promise<void> {
    try {
      await sftpCall((cb) => sftp.ext_openssh_rename(tmp, path, cb));
    } catch (e) {
      await sftpCall((cb) => sftp.unlink(tmp, cb)).catch(() => undefined);
      throw this.sftpError(`cannot rename ${tmp} to ${posix.basename(path)}`, e);
    }
  }

  private sftpError(what: string, e: unknown): MedicError {
    if (isMedicError(e)) return e;
    const code = (e as { code?: unknown }).code;
    const detail = code === SFTP_NO_SUCH_FILE ? 'no such file or directory (does the directory exist?)'
      : code === SFTP_PERMISSION_DENIED ? 'permission denied'
        : (e as Error).message;
    return new MedicError('REMOTE_FAILED', `${label(this.target)}: ${what}: ${detail}`, false, { cause: e });
  }

  /**
   * Runs `fn` on a fresh SFTP session under one deadline, holding a channel slot (an SFTP
   * session is a channel: MaxSessions counts it), and always ends the session.
   */
  private async withSftp<T>(what: string, timeoutMs: number | undefined, fn: (sftp: SFTPWrapper) => Promise<T>): Promise<T> {
    if (this.closed) throw new MedicError('SSH_UNREACHABLE', `${label(this.target)}: connection closed`, true);
    const ms = timeoutMs ?? this.target.commandTimeoutMs ?? this.opts.commandTimeoutMs;
    await this.slots.acquire();
    const session: { sftp?: SFTPWrapper; abandoned: boolean } = { abandoned: false };
    let timer: NodeJS.Timeout | undefined;
    let onLost: ((e: MedicError) => void) | undefined;
    const stop = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new MedicError('REMOTE_TIMEOUT', `${label(this.target)}: ${what} timed out after ${ms} ms`)), ms);
      onLost = reject;
      this.lost.add(onLost);
    });
    try {
      return await Promise.race([stop, this.openSftpRetrying(session).then(fn)]);
    } finally {
      clearTimeout(timer);
      if (onLost) this.lost.delete(onLost);
      session.abandoned = true;
      if (!this.closed) await endSftp(session.sftp);
      this.slots.release();
    }
  }

  private async openSftpRetrying(session: { sftp?: SFTPWrapper; abandoned: boolean }): Promise<SFTPWrapper> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.openSftp(session);
      } catch (e) {
        if (!refusedOpen(e) || attempt >= OPEN_RETRY_MS.length || this.closed || session.abandoned) throw e;
        await sleepMs(OPEN_RETRY_MS[attempt]);
      }
    }
  }

  private openSftp(session: { sftp?: SFTPWrapper; abandoned: boolean }): Promise<SFTPWrapper> {
    return new Promise((resolve, reject) => {
      try {
        this.client.sftp((e, sftp) => {
          if (e) return reject(Object.assign(new MedicError('REMOTE_FAILED', `${label(this.target)}: cannot start SFTP: ${e.message} (is the sftp subsystem enabled in sshd_config?)`, true), { channelRefused: true }));
          // Opened after the deadline: nobody will end it but us.
          if (session.abandoned) { sftp.end(); return; }
          session.sftp = sftp;
          sftp.on('error', () => undefined);
          resolve(sftp);
        });
      } catch (e) {
        // ssh2 throws at once when the connection is already gone.
        reject(new MedicError('SSH_UNREACHABLE', `${label(this.target)}: connection lost: ${(e as Error).message}`, true));
      }
    });
  }

  async openTunnel(host: string, port: number): Promise<SshTunnel> {
    if (this.closed) throw new MedicError('SSH_UNREACHABLE', `${label(this.target)}: connection closed`, true);
    const sockets = new Set<net.Socket>();
    let lastError: string | undefined;
    let closing = false;
    const server = net.createServer((sock) => {
      sock.setNoDelay(true);
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

/** Promisifies one SFTP request; ssh2's synchronous throws (unsupported extension) become rejections. */
function sftpCall<T = void>(start: (cb: (err: Error | undefined | null, v?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    try {
      start((err, v) => (err ? reject(err) : resolve(v as T)));
    } catch (e) {
      reject(e);
    }
  });
}

/** Ends an SFTP session and waits (bounded) for its channel to close, so its slot is really free. */
function throwIfAborted(signal: AbortSignal | undefined, target: SshTarget): void {
  if (signal?.aborted) throw abortReason(signal, `${label(target)}: command not run, the step was aborted`);
}

async function endSftp(sftp: SFTPWrapper | undefined): Promise<void> {
  if (!sftp) return;
  const closed = new Promise<void>((res) => sftp.once('close', () => res()));
  sftp.end();
  await Promise.race([closed, new Promise<void>((res) => setTimeout(res, 2000).unref())]);
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
