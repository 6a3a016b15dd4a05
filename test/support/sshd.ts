/**
 * A real, throwaway OpenSSH sshd on 127.0.0.1 (Debian's openssh-server) for executor tests:
 * its own host key, client key, config and port; SFTP enabled like a stock sshd_config.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SshTarget } from '../../src/exec/ssh';

export interface Sshd {
  port: number;
  /** OpenSSH's own fingerprint of the host key (ssh-keygen -lf), to pin. */
  fingerprint: string;
  clientKey: Buffer;
  /** Temp dir holding the keys and config; removed by stopSshd. */
  dir: string;
  child: ChildProcess;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

export function keygen(path: string): void {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'medic-test', '-f', path]);
}

export interface SshdOptions {
  /**
   * Bind mounts seen only by this sshd and its sessions (a private mount namespace, as the
   * lab's nodes have): `{ from: host dir, to: path the node sees }`. Lets two "nodes" on one
   * host have different files at the same path. Needs root.
   * @defaultValue none: the host's filesystem as it is
   */
  binds?: { from: string; to: string }[];
  /** sshd's MaxSessions (channels per connection). @defaultValue sshd's own, 10 */
  maxSessions?: number;
  /** More sshd_config lines, e.g. `PermitTTY no`. */
  config?: string[];
}

export async function startSshd(opts: SshdOptions = {}): Promise<Sshd> {
  const dir = mkdtempSync(join(tmpdir(), 'medic-sshd-'));
  mkdirSync('/run/sshd', { recursive: true }); // sshd's privilege separation directory
  keygen(join(dir, 'host_key'));
  keygen(join(dir, 'client_key'));
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client_key.pub')));
  const port = await freePort();
  writeFileSync(join(dir, 'sshd_config'), [
    'ListenAddress 127.0.0.1',
    `Port ${port}`,
    `HostKey ${join(dir, 'host_key')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    'UsePAM no',
    'PermitRootLogin prohibit-password',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'StrictModes no',
    'LogLevel ERROR',
    // Stock Debian/Ubuntu sshd_config enables SFTP (as the lab's nodes do): writeFile needs it.
    'Subsystem sftp internal-sftp',
    // bash skips ~/.bashrc below shell level 2: keeps this machine's root rc files (slow,
    // and pyenv's rehash can block on a stale lock) out of the test.
    'SetEnv SHLVL=1',
    ...(opts.maxSessions ? [`MaxSessions ${opts.maxSessions}`] : []),
    ...(opts.config ?? []),
    '',
  ].join('\n'));
  const sshdArgv = ['/usr/sbin/sshd', '-D', '-e', '-f', join(dir, 'sshd_config')];
  const binds = opts.binds ?? [];
  // unshare execs sh, which execs sshd: the child's pid stays sshd's, so stopSshd still works.
  const [cmd = '', ...argv] = binds.length === 0 ? sshdArgv : [
    'unshare', '--mount', '--propagation', 'private', 'sh', '-c',
    'while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 1; shift 2; done; shift; exec "$@"',
    'sh', ...binds.flatMap((b) => [b.from, b.to]), '--', ...sshdArgv,
  ];
  const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; i < 100 && !(await canConnect(port)); i++) {
    if (child.exitCode !== null) throw new Error(`sshd exited with ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // "256 SHA256:… medic-test (ED25519)": OpenSSH's own fingerprint, to check ours against.
  const fingerprint = execFileSync('ssh-keygen', ['-lf', join(dir, 'host_key.pub')], { encoding: 'utf8' }).split(' ')[1] ?? '';
  return { port, fingerprint, clientKey: readFileSync(join(dir, 'client_key')), dir, child };
}

/** Stops sshd (waiting for it to exit) and removes its temp dir. */
export async function stopSshd(sshd: Sshd | undefined): Promise<void> {
  if (!sshd) return;
  if (sshd.child.exitCode === null && sshd.child.signalCode === null) {
    const exited = new Promise((r) => sshd.child.once('exit', r));
    sshd.child.kill('SIGTERM');
    await exited;
  }
  rmSync(sshd.dir, { recursive: true, force: true });
}

/** A target for this sshd, as root, with its host key pinned. */
export function sshdTarget(sshd: Sshd, node = 'node1'): SshTarget {
  return { node, host: '127.0.0.1', port: sshd.port, user: 'root', hostKey: sshd.fingerprint };
}
