/**
 * The restore itself, done on the bot's host: real control-plane nodes have no etcdctl or
 * etcdutl (they live only in the etcd image), so the snapshot is restored here into one
 * data dir per node and packed as a tar for the node (RUNBOOK: "What a real kubeadm
 * control-plane node has"). Tools run with execFile, never through a shell, each under a
 * deadline.
 *
 * A restored member's id and the cluster id follow from its name, peer URLs and the
 * token, so a data dir restored again (on another worker, after a crash) is equivalent:
 * same ids, same keys. Equivalent only with the same revision bump: nodes restored with
 * different bumps would disagree on every revision. The bump used is recorded and a
 * regeneration must match it.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, lstat, mkdir, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MedicError } from '../engine/errors';
import { atLeastMinor, hostTools, restoreToolFor, runTool } from '../exec/host-tools';

export type { EtcdTool as RestoreTool } from '../exec/host-tools';
import type { EtcdTool as RestoreTool } from '../exec/host-tools';

/** One member of the restored cluster: its --name and --initial-advertise-peer-urls. */
export interface RestoreMember { name: string; peerUrl: string }

/** How the data was (or must be) restored. `bump` 0 means the revision was not bumped. */
export interface RestoreMethod { tool: RestoreTool; bump: number }

export interface PrepareOptions {
  snapshotPath: string;
  /** Private (0700) directory for this plan's output, on the bot's host. */
  workDir: string;
  /** Every member of the restored cluster, in --initial-cluster order. */
  members: RestoreMember[];
  /** Which of them to produce data for. */
  nodes: string[];
  token: string;
  /**
   * `{ auto: N }`: bump by N where the tool can (etcdutl with --bump-revision), else don't.
   * A RestoreMethod: exactly that tool and bump, or fail (data already restored elsewhere
   * with it must match).
   */
  method: { auto: number } | RestoreMethod;
  /** The snapshot carries no appended SHA-256 (a db file copied out of a data dir). */
  skipHashCheck?: boolean;
  /** Deadline of each tool run. @defaultValue 120000 */
  timeoutMs?: number;
  /** Tools to try, in order. @defaultValue ['etcdutl', 'etcdctl'] */
  tools?: RestoreTool[];
  /**
   * The cluster's etcd minor version ("3.5"): a tool older than it is not used (its data
   * would not be what the cluster's etcd writes). Unset: any version.
   */
  minVersion?: string;
  progress?: (text: string) => void;
}

export interface PreparedNode { node: string; tar: string; sha256: string; bytes: number }

/** version: what the tool said of itself (`etcdutl version`), when it did. */
export interface PrepareResult extends RestoreMethod { nodes: PreparedNode[]; version?: string }

const lastLines = (s: string) => s.trim().split('\n').filter((l) => !/deprecat/i.test(l)).slice(-3).join(' / ');

/** SHA-256 (hex) of a whole file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** mkdir -p 0700, refusing a symlink or someone else's directory in its place. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  if (!st.isDirectory()) throw new MedicError('INTERNAL', `${dir} is not a directory`);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
    throw new MedicError('INTERNAL', `${dir} belongs to uid ${st.uid}, not the bot's user: refusing to put restored data (every Secret of the cluster) there`);
  }
  if ((st.mode & 0o077) !== 0) await chmod(dir, 0o700);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

function restoreArgs(tool: RestoreTool, o: PrepareOptions, m: RestoreMember, dataDir: string, bump: number): string[] {
  // --flag=value throughout: no value can ever be read as another flag.
  return [
    'snapshot', 'restore', resolve(o.snapshotPath),
    `--name=${m.name}`,
    `--initial-cluster=${o.members.map((x) => `${x.name}=${x.peerUrl}`).join(',')}`,
    `--initial-cluster-token=${o.token}`,
    `--initial-advertise-peer-urls=${m.peerUrl}`,
    `--data-dir=${dataDir}`,
    ...(o.skipHashCheck ? ['--skip-hash-check'] : []),
    ...(tool === 'etcdutl' && bump > 0 ? [`--bump-revision=${bump}`, '--mark-compacted'] : []),
  ];
}

/** Restores one member's data dir; 'unsupported' when the tool doesn't know the bump flags. */
async function restoreOne(tool: RestoreTool, o: PrepareOptions, m: RestoreMember, dataDir: string, bump: number): Promise<'missing' | 'unsupported' | 'ok'> {
  const timeoutMs = o.timeoutMs ?? 120_000;
  await rm(dataDir, { recursive: true, force: true }); // a half-written leftover of ours
  const r = await runTool(tool, restoreArgs(tool, o, m, dataDir, bump), timeoutMs);
  if (r.missing) return 'missing';
  if (r.killed) throw new MedicError('SNAPSHOT_FAILED', `${tool} snapshot restore for ${m.name} did not finish within ${timeoutMs} ms on the bot's host`, true);
  if (typeof r.code === 'string') throw new MedicError('SNAPSHOT_FAILED', `could not run ${tool} on the bot's host (${r.code})`);
  if (r.code !== undefined) {
    if (bump > 0 && /unknown flag|flag provided but not defined/i.test(r.stderr)) return 'unsupported';
    throw new MedicError('SNAPSHOT_FAILED', `${tool} snapshot restore for ${m.name} failed on the bot's host: ${lastLines(r.stderr || r.stdout) || `exit ${r.code}`}`);
  }
  if (!(await exists(join(dataDir, 'member', 'snap'))) || !(await exists(join(dataDir, 'member', 'wal')))) {
    throw new MedicError('SNAPSHOT_FAILED', `${tool} snapshot restore for ${m.name} left no member/snap and member/wal in ${dataDir}`);
  }
  return 'ok';
}

/** Packs dataDir/member as a gzipped tar (the WAL is preallocated zeros: it shrinks to almost nothing). */
async function pack(dataDir: string, tar: string, timeoutMs: number): Promise<void> {
  const part = `${tar}.part`;
  await rm(part, { force: true });
  const r = await runTool('tar', ['--create', '--gzip', '--numeric-owner', `--file=${part}`, `--directory=${dataDir}`, '--', 'member'], timeoutMs);
  if (r.missing || r.code !== undefined) {
    throw new MedicError('SNAPSHOT_FAILED', `packing ${dataDir}/member on the bot's host failed: ${r.missing ? 'tar is not installed' : lastLines(r.stderr) || `exit ${r.code}`}`);
  }
  await rename(part, tar);
}

/** The tools to try for a method, in order, and the bump each gets. */
function candidates(o: PrepareOptions): Array<{ tool: RestoreTool; bump: number; strict: boolean }> {
  const tools = o.tools ?? ['etcdutl', 'etcdctl'];
  if ('auto' in o.method) {
    const n = o.method.auto;
    return tools.flatMap((tool) => (tool === 'etcdutl' && n > 0 ? [{ tool, bump: n, strict: false }, { tool, bump: 0, strict: false }] : [{ tool, bump: 0, strict: false }]));
  }
  const { tool, bump } = o.method;
  return tools.includes(tool) ? [{ tool, bump, strict: true }] : [];
}

/**
 * Restores the snapshot once per node into `workDir/<node>.d`, packs each as
 * `workDir/<node>.tar.gz`, and removes the unpacked dir. All nodes with the same tool and bump.
 */
export async function prepareRestore(o: PrepareOptions): Promise<PrepareResult> {
  const timeoutMs = o.timeoutMs ?? 120_000;
  await ensurePrivateDir(o.workDir);
  const members = o.nodes.map((n) => {
    const m = o.members.find((x) => x.name === n);
    if (!m) throw new MedicError('INTERNAL', `${n} is not one of the restored members (${o.members.map((x) => x.name).join(', ')})`);
    return m;
  });
  const tried: string[] = [];
  const versions = await hostTools({ fresh: true });
  for (const c of candidates(o)) {
    if (o.minVersion) {
      const found = versions.find((t) => t.tool === c.tool);
      if (found && !atLeastMinor(found.version, o.minVersion)) {
        if (c.strict) {
          throw new MedicError('SNAPSHOT_FAILED', `the restore started with ${c.tool}, and this worker's ${c.tool} ${found.version} is older than the cluster's etcd ${o.minVersion}: `
            + 'the other nodes\' data must be restored the same way. Install a newer one here, or run the job on the first worker\'s host');
        }
        tried.push(`${c.tool} ${found.version}: older than the cluster's etcd ${o.minVersion}`);
        continue;
      }
    }
    const first = await restoreOne(c.tool, o, members[0], join(o.workDir, `${members[0].name}.d`), c.bump);
    if (first === 'missing') { tried.push(`${c.tool}: not installed`); continue; }
    if (first === 'unsupported') {
      if (c.strict) throw new MedicError('SNAPSHOT_FAILED', `${c.tool} on this host has no --bump-revision, but the restore started with a bump of ${c.bump}: run the job on a worker with etcdutl ≥ 3.5, or request the restore again`);
      tried.push(`${c.tool}: no --bump-revision`);
      continue;
    }
    const out: PreparedNode[] = [];
    for (const [i, m] of members.entries()) {
      const dir = join(o.workDir, `${m.name}.d`);
      if (i > 0) {
        const r = await restoreOne(c.tool, o, m, dir, c.bump);
        if (r !== 'ok') throw new MedicError('SNAPSHOT_FAILED', `${c.tool} snapshot restore for ${m.name} failed after it worked for ${members[0].name} (${r})`);
      }
      const tar = join(o.workDir, `${m.name}.tar.gz`);
      await pack(dir, tar, timeoutMs);
      await rm(dir, { recursive: true, force: true });
      const st = await stat(tar);
      out.push({ node: m.name, tar, sha256: await sha256File(tar), bytes: st.size });
      o.progress?.(`restored ${m.name}'s data with ${c.tool} (${out.length}/${members.length})`);
    }
    return { tool: c.tool, bump: c.bump, nodes: out, version: versions.find((t) => t.tool === c.tool)?.version };
  }
  if (!('auto' in o.method)) {
    throw new MedicError('SNAPSHOT_FAILED', `the restore started with ${o.method.tool}${o.method.bump ? ` (revision bump ${o.method.bump})` : ''}, which this worker's host does not have: the other nodes' data must be restored the same way. Install it here, or run the job on the first worker's host`);
  }
  if (o.minVersion && tried.some((t) => t.includes('older than'))) {
    const pick = restoreToolFor(versions, o.minVersion);
    throw new MedicError('SNAPSHOT_FAILED', 'refusal' in pick ? pick.refusal : `no usable etcd restore tool on the bot's host (${tried.join('; ')})`);
  }
  throw new MedicError('SNAPSHOT_FAILED', `no etcd restore tool on the bot's host (${tried.join('; ') || 'none tried'}): install etcdutl (etcd ≥ 3.5) or etcd-client (Debian's etcdctl)`);
}
