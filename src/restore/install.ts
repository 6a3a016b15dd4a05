/**
 * Installing restored data on a node: the tar made on the bot's host goes to the node over
 * SSH in bounded chunks (stdin of fixed `sh` templates, so memory stays bounded and no
 * value becomes shell syntax), into a staging directory beside dataDir/member (same
 * filesystem: the final move is one rename). On the node its sha256 is checked, it is
 * unpacked, owned like dataDir, marked with `.medic-restore-<plan>` and only then moved
 * into place. The marker makes the step safe to repeat: present means done.
 */
import { open } from 'node:fs/promises';
import { posix } from 'node:path';
import { MedicError } from '../engine/errors';
import type { SshSession } from '../exec/ssh';
import { RemoteCommand, sh } from '../exec/shell';
import { checkTag, Remote } from '../runtime/remote';

/** Bytes per SSH exec. @defaultValue 8 MiB */
export const CHUNK_BYTES = 8 << 20;
/** Deadline of one chunk or of the unpack on the node. */
const REMOTE_STEP_MS = 120_000;

export interface InstallPaths {
  member: string;
  marker: string;
  staging: string;
  file: string;
  unpacked: string;
}

export function installPaths(dataDir: string, planId: string): InstallPaths {
  checkTag(planId);
  const member = posix.join(dataDir, 'member');
  const staging = posix.join(dataDir, `.medic-restore-${planId}`);
  return {
    member,
    marker: posix.join(member, `.medic-restore-${planId}`),
    staging,
    file: posix.join(staging, 'data.tar.gz'),
    unpacked: posix.join(staging, 'unpacked'),
  };
}

/** installed: this plan's data is in place; occupied: some other data dir is; empty: nothing there. */
export type InstallState = 'installed' | 'occupied' | 'empty';

export async function installState(session: SshSession, node: string, p: InstallPaths): Promise<InstallState> {
  const r = await new Remote(session, node).run(
    sh`if [ -e ${p.marker} ]; then echo installed; elif [ -e ${p.member} ]; then echo occupied; else echo empty; fi`,
    `looking for ${p.member}`);
  const word = r.stdout.trim();
  if (word === 'installed' || word === 'occupied' || word === 'empty') return word;
  throw new MedicError('REMOTE_FAILED', `${node}: unexpected answer looking for ${p.member}: ${JSON.stringify(r.stdout.slice(0, 100))}`);
}

export interface InstallOptions {
  session: SshSession;
  node: string;
  dataDir: string;
  planId: string;
  /** The tar on the bot's host and its sha256 (hex). */
  tar: string;
  sha256: string;
  progress?: (text: string) => void;
  /** @defaultValue CHUNK_BYTES */
  chunkBytes?: number;
}

/** Copies the tar into the node's staging directory, chunk by chunk, checking the size after each. */
async function upload(o: InstallOptions, p: InstallPaths, remote: Remote): Promise<number> {
  const chunkBytes = o.chunkBytes ?? CHUNK_BYTES;
  const fh = await open(o.tar, 'r');
  try {
    const { size } = await fh.stat();
    const buf = Buffer.alloc(Math.min(chunkBytes, Math.max(size, 1)));
    let sent = 0;
    do {
      const { bytesRead } = await fh.read(buf, 0, buf.length, sent);
      const chunk = buf.subarray(0, bytesRead);
      // The first chunk starts a fresh staging directory (a leftover of an earlier attempt is ours).
      const cmd = sent === 0
        ? sh`umask 077 && mkdir -p -- ${o.dataDir} && rm -rf -- ${p.staging} && mkdir -- ${p.staging} && cat > ${p.file} && stat -c %s -- ${p.file}`
        : sh`cat >> ${p.file} && stat -c %s -- ${p.file}`;
      const r = await remote.session.exec(cmd, { stdin: chunk, timeoutMs: REMOTE_STEP_MS });
      if (r.code !== 0) throw remote.failed(`copying the restored data (${sent} of ${size} bytes sent)`, r);
      sent += bytesRead;
      if (r.stdout.trim() !== String(sent)) {
        throw new MedicError('REMOTE_FAILED', `${o.node}: ${p.file} has ${r.stdout.trim()} bytes after ${sent} were sent: the copy was cut; retry`, true);
      }
      o.progress?.(`copying ${o.node}'s restored data: ${(sent / (1 << 20)).toFixed(1)} of ${(size / (1 << 20)).toFixed(1)} MiB`);
    } while (sent < size);
    return size;
  } finally {
    await fh.close();
  }
}

/**
 * Checks the copy's sha256 on the node, unpacks it, gives it dataDir's owner, marks it,
 * and moves it into dataDir/member unless something appeared there meanwhile.
 */
function unpackCmd(o: InstallOptions, p: InstallPaths): RemoteCommand {
  const markerName = posix.basename(p.marker);
  const check = sh`f=${p.file}; x=${p.unpacked}; got=$(sha256sum < "$f" | cut -c1-64); if [ "$got" != ${o.sha256} ]; then echo "sha256 of the copy on the node is $got, not the one sent" >&2; exit 3; fi`;
  const unpack = sh`rm -rf -- "$x"; mkdir -- "$x"; tar -xzf "$f" -C "$x" --no-same-owner; test -d "$x/member"; chown -R --reference=${o.dataDir} -- "$x/member"; chmod 700 -- "$x/member"; : > "$x/member/"${markerName}; sync`;
  const place = sh`if [ -e ${p.member} ]; then echo occupied; exit 0; fi; mv -T -- "$x/member" ${p.member}; sync; rm -rf -- ${p.staging}; echo installed`;
  return sh`set -e; ${check}; ${unpack}; ${place}`;
}

/**
 * Installs the tar as dataDir/member. 'already' when this plan's data is in place;
 * UNSAFE when other data occupies dataDir/member (it is never overwritten).
 */
export async function installRestoredData(o: InstallOptions): Promise<{ result: 'installed' | 'already'; bytes: number }> {
  const p = installPaths(o.dataDir, o.planId);
  const remote = new Remote(o.session, o.node);
  const occupied = () => new MedicError('UNSAFE', `${o.node}: ${p.member} exists and is not this restore's data (no ${posix.basename(p.marker)} in it): `
    + 'etcd or someone made data there after it was moved aside. Nothing was overwritten: move it aside by hand, then resume or request the restore again');
  const before = await installState(o.session, o.node, p);
  if (before === 'installed') return { result: 'already', bytes: 0 };
  if (before === 'occupied') throw occupied();
  const bytes = await upload(o, p, remote);
  // sha256sum, cut, tar and chown come with coreutils/tar on every kubeadm node.
  const r = await o.session.exec(unpackCmd(o, p), { timeoutMs: REMOTE_STEP_MS });
  if (r.code === 3) throw new MedicError('REMOTE_FAILED', `${o.node}: the restored data arrived damaged (${r.stderr.trim()}): retry`, true);
  if (r.code !== 0) throw remote.failed('unpacking the restored data', r);
  const word = r.stdout.trim().split('\n').pop();
  if (word === 'occupied') throw occupied();
  if (word !== 'installed') throw new MedicError('REMOTE_FAILED', `${o.node}: unexpected answer unpacking the restored data: ${JSON.stringify(r.stdout.slice(0, 200))}`);
  return { result: 'installed', bytes };
}
