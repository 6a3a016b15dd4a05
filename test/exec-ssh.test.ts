/**
 * ssh executor against a real, throwaway OpenSSH sshd on 127.0.0.1 (Debian's openssh-server).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { RemoteCommand, sh } from '../src/exec/shell';
import { createSshPool, SshPool, SshTarget } from '../src/exec/ssh';
import { freePort, keygen, Sshd, sshdTarget, startSshd, stopSshd } from './support/sshd';

/** pids whose full command line matches the pattern (no shell, so pgrep can't match its own wrapper). */
function pgrep(pattern: string): string[] {
  try {
    return execFileSync('pgrep', ['-f', pattern], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
  } catch {
    return []; // exit 1: no match
  }
}

async function eventually(check: () => boolean, tries = 50): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return check();
}

let sshd: Sshd;
let pool: SshPool;
let target: SshTarget;

beforeAll(async () => {
  sshd = await startSshd();
  target = sshdTarget(sshd);
  pool = createSshPool({ privateKey: sshd.clientKey, connectTimeoutMs: 5000, commandTimeoutMs: 10000 });
});

afterAll(async () => {
  await pool?.closeAll();
  await stopSshd(sshd);
});

describe('ssh session', () => {
  it('runs a command and reuses the connection', async () => {
    const s = await pool.session(target);
    const r = await s.exec(sh`id -un; echo err >&2; exit 3`);
    expect(r).toMatchObject({ code: 3, signal: null, stdout: 'root\n', stderr: 'err\n', truncated: false });
    expect(await pool.session(target)).toBe(s);
  });

  it('passes hostile arguments through both remote shells verbatim', async () => {
    const s = await pool.session(target);
    for (const evil of ["'; touch /tmp/x; '", '$(id) `id` $HOME', '"\\"; |&><*', "it's -n --"]) {
      expect((await s.exec(sh`printf '%s' ${evil}`)).stdout).toBe(evil);
    }
  });

  it('feeds stdin', async () => {
    const s = await pool.session(target);
    expect((await s.exec(sh`cat`, { stdin: 'hello\nworld' })).stdout).toBe('hello\nworld');
  });

  it('refuses a command not built with sh', async () => {
    const s = await pool.session(target);
    await expect(s.exec({ text: 'id' } as unknown as RemoteCommand)).rejects.toMatchObject({ code: 'INTERNAL' });
  });

  it('bounds output, drains the rest and says so', async () => {
    const p = createSshPool({ privateKey: sshd.clientKey, connectTimeoutMs: 5000, commandTimeoutMs: 10000, maxOutputBytes: 1000 });
    try {
      const s = await p.session(target);
      const r = await s.exec(sh`head -c 3000000 /dev/zero; echo done >&2`);
      expect(r.code).toBe(0); // the command was not blocked by the bound
      expect(r.truncated).toBe(true);
      expect(r.stdout.length).toBe(1000);
      expect(r.stderr).toBe('done\n');
    } finally {
      await p.closeAll();
    }
  });

  it('times out, and the remote process is gone', async () => {
    const s = await pool.session(target);
    const marker = `^sleep 29\\.${process.pid}$`;
    const run = s.exec(sh`sleep ${`29.${process.pid}`}; echo not-reached`, { timeoutMs: 1000 });
    const settled = run.catch((e: unknown) => e);
    expect(await eventually(() => pgrep(marker).length > 0)).toBe(true); // the marker finds it
    const err = await settled;
    expect(err).toMatchObject({ code: 'REMOTE_TIMEOUT' });
    expect(await eventually(() => pgrep(marker).length === 0)).toBe(true);
  });

  it('kills a command that ignores TERM', async () => {
    const s = await pool.session(target);
    const marker = `^sleep 28\\.${process.pid}$`;
    const err = await s.exec(sh`trap '' TERM; sleep ${`28.${process.pid}`}`, { timeoutMs: 1000 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'REMOTE_TIMEOUT' });
    expect(await eventually(() => pgrep(marker).length === 0)).toBe(true);
  });

  it('times out locally when the node never answers', async () => {
    const s = await pool.session(target);
    const marker = `^timeout -k 2 1 sh -c sleep '27\\.${process.pid}'$`;
    const settled = s.exec(sh`sleep ${`27.${process.pid}`}`, { timeoutMs: 1000 }).catch((e: unknown) => e);
    // Freeze the remote `timeout` so only the local deadline is left.
    expect(await eventually(() => pgrep(marker).length > 0)).toBe(true);
    const pid = Number(pgrep(marker)[0]);
    process.kill(pid, 'SIGSTOP');
    try {
      expect(await settled).toMatchObject({ code: 'REMOTE_TIMEOUT' });
    } finally {
      process.kill(-pid, 'SIGKILL'); // its process group: timeout and the sleep
    }
    // The connection is still usable.
    expect((await s.exec(sh`echo ok`)).stdout).toBe('ok\n');
  });

  it('queues channels beyond MaxSessions instead of failing', async () => {
    const s = await pool.session(target);
    const rs = await Promise.all(Array.from({ length: 14 }, (_, i) => s.exec(sh`sleep 0.2; echo ${i}`)));
    expect(rs.map((r) => r.stdout.trim())).toEqual(Array.from({ length: 14 }, (_, i) => String(i)));
  });

  it('opens again a channel sshd refused while it still counted closed ones (a busy node): every command runs once', async () => {
    // An sshd that allows 3 sessions where the bot opens up to 8: refusals every time.
    const tight = await startSshd({ maxSessions: 3 });
    const p = createSshPool({ privateKey: tight.clientKey, connectTimeoutMs: 5000, commandTimeoutMs: 10000 });
    try {
      const s = await p.session(sshdTarget(tight));
      const marks = join(tight.dir, 'ran');
      const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => s.exec(sh`sleep 0.05; echo ${i} >> ${marks}; echo ${i}`)));
      expect(rs.map((r) => r.stdout.trim())).toEqual(Array.from({ length: 8 }, (_, i) => String(i)));
      // Nothing ran twice: a refused channel never started its command.
      expect(readFileSync(marks, 'utf8').trim().split('\n').sort()).toEqual(Array.from({ length: 8 }, (_, i) => String(i)).sort());
      // SFTP sessions are channels too.
      await Promise.all(Array.from({ length: 6 }, (_, i) => s.writeFile(join(tight.dir, `f${i}`), Buffer.from(String(i)))));
      expect(readFileSync(join(tight.dir, 'f5'), 'utf8')).toBe('5');
    } finally {
      await p.closeAll();
      await stopSshd(tight);
    }
  });

  it('reads a file, and fails clearly on a missing one', async () => {
    const s = await pool.session(target);
    const path = join(sshd.dir, 'some file');
    writeFileSync(path, Buffer.from([0, 1, 2, 255]));
    expect(await s.readFile(path)).toEqual(Buffer.from([0, 1, 2, 255]));
    await expect(s.readFile(join(sshd.dir, 'missing'))).rejects.toMatchObject({ code: 'REMOTE_FAILED' });
    await expect(s.readFile(path, { maxBytes: 2 })).rejects.toMatchObject({ code: 'REMOTE_FAILED' });
  });

  it('tunnels to a TCP server as seen from the node', async () => {
    const echo = net.createServer((c) => c.pipe(c));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    const s = await pool.session(target);
    const tunnel = await s.openTunnel('127.0.0.1', (echo.address() as net.AddressInfo).port);
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        const c = net.connect(tunnel.localPort, '127.0.0.1', () => c.write('ping through ssh'));
        c.once('error', reject);
        c.once('data', (d) => { resolve(d.toString()); c.destroy(); });
      });
      expect(reply).toBe('ping through ssh');
    } finally {
      await tunnel.close();
      await new Promise((r) => echo.close(r));
    }
  });

  it('reports a tunnel whose target refuses', async () => {
    const s = await pool.session(target);
    const tunnel = await s.openTunnel('127.0.0.1', await freePort());
    try {
      await new Promise<void>((resolve) => {
        const c = net.connect(tunnel.localPort, '127.0.0.1');
        c.on('error', () => undefined);
        c.once('close', () => resolve());
      });
      expect(tunnel.lastError()).toMatch(/refused/i);
    } finally {
      await tunnel.close();
    }
  });
});

describe('ssh file transfer (SFTP)', () => {
  it('writes a new file with its mode, byte-exact, leaving no temp file', async () => {
    const s = await pool.session(target);
    const path = join(sshd.dir, 'new key');
    const data = Buffer.concat([Buffer.from([0, 1, 2, 255]), Buffer.alloc(300 * 1024, 7)]); // > one SFTP packet
    await s.writeFile(path, data, { mode: 0o600 });
    expect(readFileSync(path).equals(data)).toBe(true);
    expect(statSync(path).mode & 0o7777).toBe(0o600);
    expect(() => statSync(path + '.medic-tmp')).toThrow();
  });

  it('replaces an existing file atomically: a reader keeps the old inode, never a half-written file', async () => {
    const s = await pool.session(target);
    const path = join(sshd.dir, 'manifest.yaml');
    writeFileSync(path, 'old\n', { mode: 0o644 });
    const before = statSync(path).ino;
    await s.writeFile(path, Buffer.from('new\n'), { mode: 0o640 });
    expect(readFileSync(path, 'utf8')).toBe('new\n');
    const after = statSync(path);
    expect(after.ino).not.toBe(before); // renamed over, not truncated and rewritten in place
    expect(after.mode & 0o7777).toBe(0o640);
  });

  it('sets the mode on a leftover temp file before writing a secret into it', async () => {
    const s = await pool.session(target);
    const path = join(sshd.dir, 'ca.key');
    writeFileSync(path + '.medic-tmp', 'stale junk from an interrupted write', { mode: 0o666 });
    await s.writeFile(path, Buffer.from('secret'), { mode: 0o600 });
    expect(statSync(path).mode & 0o7777).toBe(0o600);
    expect(readFileSync(path, 'utf8')).toBe('secret');
    expect(() => statSync(path + '.medic-tmp')).toThrow();
  });

  it('fails clearly, naming node and path, when the directory is missing', async () => {
    const s = await pool.session(target);
    const path = join(sshd.dir, 'no-such-dir', 'ca.crt');
    const err = await s.writeFile(path, Buffer.from('x')).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'MedicError', code: 'REMOTE_FAILED' });
    expect((err as Error).message).toContain(path);
    expect((err as Error).message).toContain('(node1)');
    expect((err as Error).message).toMatch(/no such file or directory/);
  });

  it('stats files, directories and missing paths', async () => {
    const s = await pool.session(target);
    const path = join(sshd.dir, 'stat-me');
    writeFileSync(path, '12345', { mode: 0o600 });
    expect(await s.stat(path)).toEqual({ exists: true, mode: 0o600, size: 5, type: 'file' });
    expect(await s.stat(sshd.dir)).toMatchObject({ exists: true, type: 'directory' });
    expect(await s.stat(join(sshd.dir, 'missing'))).toEqual({ exists: false });
  });

  it('ends every SFTP session: more than MaxSessions of them, in a row and at once', async () => {
    const s = await pool.session(target);
    const path = join(sshd.dir, 'many');
    for (let i = 0; i < 12; i++) await s.writeFile(path, Buffer.from(String(i)));
    const all = await Promise.all(Array.from({ length: 14 }, () => s.stat(path)));
    expect(all.every((st) => st.exists && st.size === 2)).toBe(true);
    expect((await s.exec(sh`cat -- ${path}`)).stdout).toBe('11');
  });

  it('times out with REMOTE_TIMEOUT and leaves the connection usable', async () => {
    const s = await pool.session(target);
    const path = join(sshd.dir, 'slow');
    // 1 ms: the SFTP subsystem can't even start in time.
    const err = await s.writeFile(path, Buffer.from('x'), { timeoutMs: 1 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'REMOTE_TIMEOUT' });
    expect((err as Error).message).toContain(path);
    await s.writeFile(path, Buffer.from('y'));
    expect(readFileSync(path, 'utf8')).toBe('y');
  });
});

describe('ssh connect failures', () => {
  it('refuses a host key that is not the pinned one, naming both', async () => {
    const wrong = 'SHA256:' + 'A'.repeat(43);
    const p = createSshPool({ privateKey: sshd.clientKey, connectTimeoutMs: 5000, commandTimeoutMs: 5000 });
    try {
      const err = await p.session({ ...target, node: 'node3', hostKey: wrong }).catch((e: unknown) => e);
      expect(err).toMatchObject({ name: 'MedicError', code: 'SSH_HOST_KEY_MISMATCH' });
      const msg = (err as Error).message;
      expect(msg).toContain(`expected ${wrong}`);
      expect(msg).toContain(`got ${sshd.fingerprint}`);
      expect(msg).toMatch(/^node3 host key changed .*update clusters\.yaml$/);
    } finally {
      await p.closeAll();
    }
  });

  it('reports a key the node does not accept', async () => {
    const other = join(sshd.dir, 'stranger_key');
    keygen(other);
    const p = createSshPool({ privateKey: readFileSync(other), connectTimeoutMs: 5000, commandTimeoutMs: 5000 });
    try {
      await expect(p.session(target)).rejects.toMatchObject({ code: 'SSH_AUTH_FAILED' });
    } finally {
      await p.closeAll();
    }
  });

  it('a node whose sshd refuses PTYs (PermitTTY no) still runs commands', async () => {
    const strict = await startSshd({ config: ['PermitTTY no'] });
    const p = createSshPool({ privateKey: strict.clientKey, connectTimeoutMs: 5000, commandTimeoutMs: 5000 });
    try {
      const s = await p.session(sshdTarget(strict));
      expect((await s.exec(sh`echo still; exit 4`))).toMatchObject({ code: 4, stdout: 'still\n' });
    } finally {
      await p.closeAll();
      await stopSshd(strict);
    }
  });

  it('reports a refused connection as unreachable, and does not cache the failure', async () => {
    const port = await freePort();
    const p = createSshPool({ privateKey: sshd.clientKey, connectTimeoutMs: 5000, commandTimeoutMs: 5000 });
    try {
      const t = { ...target, node: 'node3', port };
      const err = await p.session(t).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'SSH_UNREACHABLE', retryable: true });
      expect((err as Error).message).toBe(`ssh root@127.0.0.1:${port} (node3): connect ECONNREFUSED`);
      await expect(p.session(t)).rejects.toMatchObject({ code: 'SSH_UNREACHABLE' });
    } finally {
      await p.closeAll();
    }
  });
});

/** Every process under pid (sshd's per-connection monitor and session processes). */
function descendants(pid: number): number[] {
  const kids = (() => {
    try { return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number); } catch { return []; }
  })();
  return kids.flatMap((k) => [k, ...descendants(k)]);
}

describe('kept ssh pool (shared by a worker\'s status jobs)', () => {
  const keptPool = (o: { idleMs: number; checkAfterMs?: number; maxIdle?: number }) =>
    createSshPool({ privateKey: sshd.clientKey, connectTimeoutMs: 5000, commandTimeoutMs: 10000, ...o });

  it('hands out the same connection again, a healthy one that sat unused included', async () => {
    const p = keptPool({ idleMs: 60_000, checkAfterMs: 100 });
    try {
      const s = await p.session(target);
      await s.exec(sh`true`);
      await new Promise((r) => setTimeout(r, 300));
      // Checked (a no-op command) before reuse, and still the same connection.
      expect(await p.session(target)).toBe(s);
      expect((await s.exec(sh`echo ok`)).stdout).toBe('ok\n');
      expect(p.size()).toBe(1);
    } finally {
      await p.closeAll();
    }
  });

  it('replaces a connection that went silent (its sshd stopped) instead of handing it out', async () => {
    const p = keptPool({ idleMs: 60_000, checkAfterMs: 100 });
    const before = new Set(descendants(sshd.child.pid!));
    const s = await p.session(target);
    await s.exec(sh`true`);
    const mine = descendants(sshd.child.pid!).filter((x) => !before.has(x));
    expect(mine.length).toBeGreaterThan(0);
    try {
      for (const pid of mine) process.kill(pid, 'SIGSTOP');
      await new Promise((r) => setTimeout(r, 300));
      // The no-op check gives up after 3 s (the keepalive alone would take 15 s to notice).
      const fresh = await p.session(target);
      expect(fresh).not.toBe(s);
      expect((await fresh.exec(sh`echo fresh`)).stdout).toBe('fresh\n');
    } finally {
      for (const pid of mine) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
      await p.closeAll();
    }
  });

  it('closes a connection unused for idleMs, on both ends, but never one in use', async () => {
    const p = keptPool({ idleMs: 300 });
    try {
      const before = new Set(descendants(sshd.child.pid!));
      const s = await p.session(target);
      // A command longer than idleMs: the connection stays for it.
      expect((await s.exec(sh`sleep 1; echo done`)).stdout).toBe('done\n');
      expect(s.isOpen()).toBe(true);
      expect(await eventually(() => p.size() === 0 && !s.isOpen(), 50)).toBe(true);
      // sshd's processes for it are gone too.
      expect(await eventually(() => descendants(sshd.child.pid!).every((x) => before.has(x)), 50)).toBe(true);
      // The next use connects again.
      expect((await (await p.session(target)).exec(sh`echo again`)).stdout).toBe('again\n');
    } finally {
      await p.closeAll();
    }
  });

  it('keeps at most maxIdle unused connections, the most recently used ones', async () => {
    const p = keptPool({ idleMs: 60_000, maxIdle: 1 });
    try {
      const a = await p.session({ ...target, node: 'a', host: '127.0.0.1' });
      await a.exec(sh`true`);
      const b = await p.session({ ...target, node: 'b', host: 'localhost' });
      await b.exec(sh`true`);
      expect(p.size()).toBe(2);
      // The sweep runs every 5 s at most; the closed connection reads closed once its end is confirmed.
      expect(await eventually(() => p.size() === 1 && !a.isOpen(), 80)).toBe(true);
      expect(b.isOpen()).toBe(true);
    } finally {
      await p.closeAll();
    }
  });

  it('drops every kept connection to a node that now shows another host key', async () => {
    const p = keptPool({ idleMs: 60_000 });
    try {
      const s = await p.session(target);
      await s.exec(sh`true`);
      // The pinned key changed (clusters.yaml edited to a key the node does not have): refused, and
      // what the pool held for that address is not used again.
      const other = { ...target, hostKey: 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' };
      await expect(p.session(other)).rejects.toMatchObject({ code: 'SSH_HOST_KEY_MISMATCH' });
      expect(await eventually(() => !s.isOpen())).toBe(true);
      expect(p.size()).toBe(0);
    } finally {
      await p.closeAll();
    }
  });
});
