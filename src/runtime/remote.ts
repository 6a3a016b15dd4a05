/**
 * What both node runtimes do the same way over SSH: run a command and fail loudly, poll
 * with a deadline, and the file moves, backups and writes that must never lose a file.
 */
import { posix } from 'node:path';
import { MedicError } from '../engine/errors';
import type { ExecResult, SshSession } from '../exec/ssh';
import { RemoteCommand, sh } from '../exec/shell';
import type { WaitOptions } from './types';

/** Backup and data-aside names embed the tag: it must stay one plain path component. */
const TAG = /^[A-Za-z0-9._-]{1,64}$/;
const DEFAULT_POLL_MS = 500;
/** Bounds `logs(lines)`: the output travels back through one SSH channel and into chat. */
export const MAX_LOG_LINES = 5000;

export function checkTag(tag: string): void {
  if (!TAG.test(tag) || tag === '.' || tag === '..') {
    throw new MedicError('BAD_INPUT', `tag ${JSON.stringify(tag.slice(0, 80))}: use 1-64 letters, digits, '.', '_' or '-'`);
  }
}

export function checkLines(lines: number): void {
  if (!Number.isInteger(lines) || lines < 1 || lines > MAX_LOG_LINES) {
    throw new MedicError('BAD_INPUT', `log lines: a whole number from 1 to ${MAX_LOG_LINES}, not ${lines}`);
  }
}

/** 2024-05-01T12:34:56.789Z -> 20240501T123456Z: sorts as text, no ':' in file names. */
export function utcStamp(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z').replace(/[-:]/g, '');
}

/** A session bound to its node's name, for error messages that say where it failed. */
export class Remote {
  constructor(readonly session: SshSession, readonly node: string) {}

  /** Runs cmd; REMOTE_FAILED unless it exits with one of `ok` (default 0). */
  async run(cmd: RemoteCommand, what: string, o: { stdin?: string; ok?: number[] } = {}): Promise<ExecResult> {
    const r = await this.session.exec(cmd, { stdin: o.stdin });
    if (r.code === null || !(o.ok ?? [0]).includes(r.code)) throw this.failed(what, r);
    return r;
  }

  async readText(path: string): Promise<string> {
    return (await this.session.readFile(path)).toString('utf8');
  }

  failed(what: string, r: ExecResult): MedicError {
    const why = r.stderr.trim().split('\n').slice(-3).join(' / ') || `exit ${r.code ?? r.signal}`;
    return new MedicError('REMOTE_FAILED', `${this.node}: ${what} failed: ${why}`);
  }
}

/**
 * Polls `done` until it answers true or the deadline passes (REMOTE_TIMEOUT). Elapsed
 * time comes from the runtime's clock, so tests replaying a transcript see the same
 * number of polls every run.
 */
export async function waitFor(what: string, o: WaitOptions, now: () => Date, done: () => Promise<boolean>): Promise<void> {
  const start = now().getTime();
  for (;;) {
    if (await done()) return;
    const elapsed = now().getTime() - start;
    o.onWait?.(elapsed);
    if (elapsed >= o.timeoutMs) {
      throw new MedicError('REMOTE_TIMEOUT', `${what}: not done after ${elapsed} ms (limit ${o.timeoutMs} ms)`);
    }
    await new Promise((r) => setTimeout(r, Math.min(o.pollMs ?? DEFAULT_POLL_MS, o.timeoutMs - elapsed)));
  }
}

/** A temp name in dst's own directory (rename is atomic only within one filesystem). Dot-prefixed: kubelet skips those in the manifests directory. */
function tempBeside(dst: string): string {
  return posix.join(posix.dirname(dst), `.${posix.basename(dst)}.medic-tmp`);
}

/**
 * Moves src to dst without ever leaving neither: a rename on one filesystem; across
 * filesystems copy, fsync, rename into place, and only then delete the source.
 */
export function moveFile(src: string, dst: string): RemoteCommand {
  const dir = posix.dirname(dst);
  const tmp = tempBeside(dst);
  return sh`umask 077 && mkdir -p -- ${dir} && if [ "$(stat -c %d -- ${posix.dirname(src)})" = "$(stat -c %d -- ${dir})" ]; then mv -f -- ${src} ${dst}; else cp -p -- ${src} ${tmp} && sync -- ${tmp} && mv -f -- ${tmp} ${dst} && rm -f -- ${src}; fi`;
}

/**
 * Copies src to backup; an existing backup of the same name is kept, because it is the
 * older copy (a step retried within the same second with the same tag).
 */
export function backupFile(src: string, backup: string): RemoteCommand {
  const tmp = tempBeside(backup);
  return sh`umask 077 && mkdir -p -- ${posix.dirname(backup)} && if [ ! -e ${backup} ]; then cp -p -- ${src} ${tmp} && sync -- ${tmp} && mv -f -- ${tmp} ${backup}; fi`;
}

/** Writes stdin to path atomically, mode 0600 for a new file (kubeadm writes its manifests 0600). */
export function writeFile(path: string): RemoteCommand {
  const tmp = tempBeside(path);
  return sh`umask 077 && mkdir -p -- ${posix.dirname(path)} && cat > ${tmp} && sync -- ${tmp} && mv -f -- ${tmp} ${path}`;
}

/** Where writeConfig copies a file before replacing it. */
export function backupPath(workDir: string, file: string, now: Date, tag: string): string {
  return posix.join(workDir, 'backup', `${posix.basename(file)}.${utcStamp(now)}.${tag}`);
}

/**
 * Moves dataDir/member aside, idempotently. Prints one word: moved | already (an earlier
 * attempt moved it) | none (no data) | both (aside exists and etcd made new data since).
 */
export function moveDataAsideCmd(member: string, aside: string): RemoteCommand {
  return sh`if [ -e ${aside} ]; then if [ -e ${member} ]; then echo both; else echo already; fi; elif [ -e ${member} ]; then mv -T -- ${member} ${aside} && echo moved; else echo none; fi`;
}

export async function moveDataAside(remote: Remote, dataDir: string, tag: string): Promise<{ movedTo?: string }> {
  const member = posix.join(dataDir, 'member');
  const aside = posix.join(dataDir, `member.medic-${tag}`);
  const r = await remote.run(moveDataAsideCmd(member, aside), `moving ${member} aside`);
  const word = r.stdout.trim();
  if (word === 'moved' || word === 'already') return { movedTo: aside };
  if (word === 'none') return {};
  if (word === 'both') {
    throw new MedicError('REMOTE_FAILED', `${remote.node}: both ${member} and ${aside} exist: etcd made new data after the earlier move; use another tag`);
  }
  throw new MedicError('REMOTE_FAILED', `${remote.node}: moving ${member} aside: unexpected output ${JSON.stringify(r.stdout.slice(0, 200))}`);
}
