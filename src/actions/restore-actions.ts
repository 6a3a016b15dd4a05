/**
 * Executor actions of restores from a snapshot (issue 4). Like every action, each checks
 * before it acts: a job resumed on another worker (possibly another host) after a crash
 * repeats the unfinished step, which finds its work done or redoes it equivalently.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { rm, stat } from 'node:fs/promises';
import { describeError, isMedicError, MedicError } from '../engine/errors';
import type { ActionName, StepSpec } from '../engine/plan';
import type { MemberInfo } from '../exec/types';
import { adaptPeerConfig } from '../runtime/flags';
import type { EtcdConfigDoc } from '../runtime/types';
import { installPaths, installRestoredData, installState } from '../restore/install';
import { PrepareOptions, prepareRestore, PrepareResult, RestoreMember, RestoreMethod, RestoreTool, sha256File } from '../restore/prepare';
import { inspectSnapshot } from '../snapshot/inspect';
import type { SnapshotRecord, SnapshotStore } from '../snapshot/store';
import type { Action, ActionContext } from './actions';
import { memberOf, poll, str, tagOf } from './actions';

/** Output keys: what prepareData made, read by installData (and by a regeneration elsewhere). */
const OUT = {
  tool: 'restore.tool',
  bump: 'restore.bump',
  host: 'restore.host',
  snapshot: 'restore.snapshot',
  sha256: 'restore.snapshotSha256',
  token: 'restore.token',
  initialCluster: 'restore.initialCluster',
  minTool: 'restore.minTool',
  tar: (node: string) => `restore.tar.${node}`,
  sha: (node: string) => `restore.sha256.${node}`,
};

const TRANSIENT = ['ETCD_UNAVAILABLE', 'ETCD_TIMEOUT', 'ETCD_ERROR', 'SSH_UNREACHABLE', 'REMOTE_TIMEOUT'];

/** Deadline of the restore tool and of tar, per node. */
const TOOL_TIMEOUT_MS = 120_000;

function storeOf(ctx: ActionContext): SnapshotStore {
  if (!ctx.snapshots) throw new MedicError('INTERNAL', 'no snapshot store configured in this worker (MEDIC_SNAPSHOT_DIR)');
  return ctx.snapshots.store;
}

function strings(step: StepSpec, name: string): string[] {
  const v = step.params[name];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new MedicError('INTERNAL', `step ${step.action}: parameter ${name} missing`);
  return v;
}

function num(step: StepSpec, name: string): number {
  const v = step.params[name];
  if (typeof v !== 'number') throw new MedicError('INTERNAL', `step ${step.action}: parameter ${name} missing`);
  return v;
}

/** The snapshot's record and file on this worker's host, the file checked against the plan's sha256. */
async function snapshotFile(ctx: ActionContext, id: string, want: string): Promise<{ rec: SnapshotRecord; path: string }> {
  const store = storeOf(ctx);
  const rec = await store.get(ctx.res.cluster.name, id);
  if (!rec) {
    throw new MedicError('SNAPSHOT_INVALID', `snapshot ${id} is not in the snapshot store of this worker (${hostname()}: ${store.dir}): `
      + 'it was removed, or this worker runs on another host than the one that has it');
  }
  const path = store.path(rec);
  const got = await sha256File(path);
  if (got !== want || rec.sha256 !== want) {
    throw new MedicError('SNAPSHOT_INVALID', `snapshot ${id} on the bot's host has sha256 ${got.slice(0, 16)}…, but it was ${want.slice(0, 16)}… when it was saved: `
      + 'the file changed or is damaged. Take a new snapshot (or pick another) and request the restore again');
  }
  return { rec, path };
}

/** Where prepareData puts this plan's data: inside the store's private directory, on the bot's host. */
function workDirOf(ctx: ActionContext): string {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(ctx.planId)) throw new MedicError('INTERNAL', `plan id ${JSON.stringify(ctx.planId)} can't name a directory`);
  return join(storeOf(ctx).dir, '.restore', ctx.planId);
}

/** etcd's appended SHA-256 is there (what `snapshot restore` checks unless told to skip it). */
const hasAppendedSha = (size: number) => size % 512 === 32;

/** What prepareData restores, from its step (or, for a regeneration, from what it recorded). */
/** minTool: the cluster's etcd minor version the tooling must reach ('' in plans made before it was recorded). */
interface RestoreInput { snapshot: string; sha256: string; token: string; initialCluster: string[]; minTool: string }

function inputOfStep(step: StepSpec): RestoreInput {
  const minTool = typeof step.params.minTool === 'string' ? step.params.minTool : '';
  return { snapshot: str(step, 'snapshot'), sha256: str(step, 'sha256'), token: str(step, 'token'), initialCluster: strings(step, 'initialCluster'), minTool };
}

function inputOfOutputs(ctx: ActionContext): RestoreInput {
  const o = ctx.outputs;
  const [snapshot, sha256, token, ic] = [o[OUT.snapshot], o[OUT.sha256], o[OUT.token], o[OUT.initialCluster]];
  if (!snapshot || !sha256 || !token || !ic) throw new MedicError('INTERNAL', 'restore.prepareData left no record of what it restored: request the restore again');
  return { snapshot, sha256, token, initialCluster: ic.split(','), minTool: o[OUT.minTool] ?? '' };
}

function membersOf(input: RestoreInput): RestoreMember[] {
  return input.initialCluster.map((entry) => {
    const i = entry.indexOf('=');
    return { name: entry.slice(0, i), peerUrl: entry.slice(i + 1) };
  });
}

function methodText(m: RestoreMethod & { version?: string }): string {
  const tool = m.version ? `${m.tool} ${m.version}` : m.tool;
  return m.bump > 0 ? `${tool}, revision bumped by ${m.bump} and marked compacted`
    : `${tool}, revision NOT bumped${m.tool === 'etcdctl' ? ' (etcd 3.4 tooling: no etcdutl on the bot\'s host)' : ' (this etcdutl has no --bump-revision)'}: restart every kube-apiserver, their watch caches may serve stale data`;
}

function outputsOf(r: PrepareResult, input: RestoreInput): Record<string, string> {
  const out: Record<string, string> = {
    [OUT.tool]: r.tool, [OUT.bump]: String(r.bump), [OUT.host]: hostname(),
    [OUT.snapshot]: input.snapshot, [OUT.sha256]: input.sha256, [OUT.token]: input.token, [OUT.initialCluster]: input.initialCluster.join(','), [OUT.minTool]: input.minTool,
  };
  for (const n of r.nodes) {
    out[OUT.tar(n.node)] = n.tar;
    out[OUT.sha(n.node)] = n.sha256;
  }
  return out;
}

async function tarReady(path: string | undefined, sha: string | undefined): Promise<boolean> {
  if (!path || !sha) return false;
  if (!(await stat(path).then((s) => s.isFile(), () => false))) return false;
  return (await sha256File(path)) === sha;
}

async function prepare(ctx: ActionContext, input: RestoreInput, nodes: string[], method: PrepareOptions['method']): Promise<PrepareResult> {
  const { path } = await snapshotFile(ctx, input.snapshot, input.sha256);
  const size = (await stat(path)).size;
  return prepareRestore({
    snapshotPath: path, workDir: workDirOf(ctx), members: membersOf(input), nodes, token: input.token, method, minVersion: input.minTool || undefined,
    skipHashCheck: !hasAppendedSha(size), timeoutMs: TOOL_TIMEOUT_MS, progress: ctx.progress,
  });
}

/** Flags the restored node's config must carry; the data itself ignores them once it exists. */
function restoreFlags(step: StepSpec, node: string): Array<[string, string]> {
  return [
    ['--name', node],
    ['--initial-cluster', str(step, 'initialCluster')],
    ['--initial-cluster-state', 'new'],
    ['--initial-cluster-token', str(step, 'token')],
  ];
}

export const restoreActions: Partial<Record<ActionName, Action>> = {
  'snapshot.verifyFile': async (step, ctx) => {
    const { rec, path } = await snapshotFile(ctx, str(step, 'snapshot'), str(step, 'sha256'));
    // The same checks as when it was saved: etcd's appended checksum and a full read by the tool.
    const v = await inspectSnapshot(path, { timeoutMs: TOOL_TIMEOUT_MS });
    const planned = str(step, 'revision');
    if (v.revision !== undefined && planned !== '0' && v.revision !== planned) {
      throw new MedicError('SNAPSHOT_INVALID', `snapshot ${rec.id} now reads as revision ${v.revision}, but it was ${planned} when the plan was made: the file changed. Nothing was touched`);
    }
    const read = v.by === 'none' ? 'no etcdctl/etcdutl on this host to read it' : `${v.by} snapshot status: revision ${v.revision}, ${v.totalKeys} entries`;
    return {
      status: 'done',
      detail: `snapshot ${rec.id}: sha256 as recorded, etcd checksum ${v.integrity === 'sha256' ? 'matches' : 'absent (a copied db file)'}, ${read}`,
    };
  },

  'restore.prepareData': async (step, ctx) => {
    const nodes = strings(step, 'nodes');
    // Done already (the job resumed right after this step, on this host): the tars are still good.
    const ready = ctx.outputs[OUT.tool] !== undefined
      && (await Promise.all(nodes.map((n) => tarReady(ctx.outputs[OUT.tar(n)], ctx.outputs[OUT.sha(n)])))).every(Boolean);
    if (ready) {
      return { status: 'skipped', detail: `restored data for ${nodes.join(', ')} already prepared (${methodText({ tool: ctx.outputs[OUT.tool] as RestoreTool, bump: Number(ctx.outputs[OUT.bump]) })})` };
    }
    const input = inputOfStep(step);
    const r = await prepare(ctx, input, nodes, { auto: num(step, 'bump') });
    const sizes = r.nodes.map((n) => `${n.node} ${(n.bytes / 1024).toFixed(0)} KiB`).join(', ');
    return {
      status: 'done',
      detail: `snapshot ${str(step, 'snapshot')} restored on the bot's host (${hostname()}) for ${nodes.join(', ')} with ${methodText(r)}; token ${str(step, 'token')}; packed: ${sizes}`,
      outputs: outputsOf(r, input),
    };
  },

  'restore.installData': async (step, ctx) => {
    const node = str(step, 'node');
    const rt = await ctx.res.runtime(node);
    const state = await rt.state();
    // Data swapped under a running etcd would be overwritten or ignored by it.
    if (state.running || state.config === 'active') {
      throw new MedicError('UNSAFE', `etcd is ${state.running ? 'running' : 'about to be started by kubelet'} on ${node}: refusing to install restored data under it. Stop it (the plan's node.stopEtcd step) and resume`);
    }
    const session = await ctx.res.session(node);
    const dataDir = ctx.res.cluster.paths.dataDir;
    let tar = ctx.outputs[OUT.tar(node)];
    let sha = ctx.outputs[OUT.sha(node)];
    const outputs: Record<string, string> = {};
    let regenerated = '';
    const placed = await installState(session, node, installPaths(dataDir, ctx.planId));
    if (placed === 'installed') return { status: 'skipped', detail: `${node}: this restore's data is already in ${dataDir}/member` };
    if (!(await tarReady(tar, sha))) {
      // Another worker (or host) made the tars, or they are gone: restore again the same way.
      const tool = ctx.outputs[OUT.tool];
      if (tool !== 'etcdutl' && tool !== 'etcdctl') throw new MedicError('INTERNAL', 'restore.prepareData recorded no tool: it did not finish; request the restore again');
      const method: RestoreMethod = { tool, bump: Number(ctx.outputs[OUT.bump] ?? '0') };
      const r = await prepare(ctx, inputOfOutputs(ctx), [node], method);
      tar = r.nodes[0].tar;
      sha = r.nodes[0].sha256;
      outputs[OUT.tar(node)] = tar;
      outputs[OUT.sha(node)] = sha;
      regenerated = ` (restored again on ${hostname()} with ${methodText({ ...method, version: r.version })}: the data prepared on ${ctx.outputs[OUT.host] ?? 'another worker'} was not here)`;
    }
    const r = await installRestoredData({ session, node, dataDir, planId: ctx.planId, tar: tar!, sha256: sha!, progress: ctx.progress });
    if (r.result === 'already') return { status: 'skipped', detail: `${node}: this restore's data is already in ${dataDir}/member`, outputs };
    return {
      status: 'done',
      detail: `${node}: ${(r.bytes / 1024).toFixed(0)} KiB copied, sha256 ${sha!.slice(0, 12)} checked on the node, unpacked into ${dataDir}/member${regenerated}`,
      outputs,
    };
  },

  'node.writeRestoreConfig': async (step, ctx) => {
    const name = str(step, 'node');
    const node = ctx.res.node(name);
    const rt = await ctx.res.runtime(name);
    let current = await rt.readConfig();
    let derived = '';
    if (!current) {
      // No config on this node at all: start from another node's, as add-member does.
      for (const other of ctx.res.cluster.nodes.filter((n) => n.name !== name)) {
        const peer = await (await ctx.res.runtime(other.name)).readConfig().catch(() => undefined);
        if (!peer) continue;
        const doc = rt.parseConfig(peer.doc.toString(), `${other.name}'s configuration`);
        adaptPeerConfig(doc, other, node);
        current = { doc, place: 'stopped' };
        derived = ` (derived from ${other.name}'s)`;
        break;
      }
      if (!current) throw new MedicError('REMOTE_FAILED', `${name} has no etcd configuration and no other node has one to derive it from`);
    }
    const doc: EtcdConfigDoc = current.doc;
    const dataDir = ctx.res.cluster.paths.dataDir;
    const configured = doc.flag('--data-dir');
    // The restored data went to paths.dataDir: a config pointing elsewhere would start an empty member.
    if (configured !== undefined && configured.replace(/\/+$/, '') !== dataDir.replace(/\/+$/, '')) {
      throw new MedicError('UNSAFE', `${name}'s etcd config has --data-dir=${configured}, but the restored data is in ${dataDir} (paths.dataDir in clusters.yaml): fix one of them, then resume`);
    }
    const flags = restoreFlags(step, name);
    if (flags.every(([f, v]) => doc.flag(f) === v) && doc.flag('--force-new-cluster') === undefined && !derived) {
      return { status: 'skipped', detail: `${name}'s etcd config already has the restored cluster's flags` };
    }
    for (const [f, v] of flags) doc.set(f, v);
    // Left in place it would re-form a one-member cluster at every restart.
    doc.remove('--force-new-cluster');
    const w = await rt.writeConfig(doc, tagOf(ctx));
    return { status: 'done', detail: `${w.path}${derived}: --initial-cluster-state=new, --initial-cluster=${str(step, 'initialCluster')}, --initial-cluster-token=${str(step, 'token')}${w.backup ? `; backup ${w.backup}` : ''}` };
  },

  'restore.verify': async (step, ctx) => verifyRestore(step, ctx),
};

/**
 * What the restore promised: exactly the restored members, all healthy voters, the
 * revision at least the snapshot's (past the bump when there was one), and when the
 * snapshot recorded its live keys, that many keys at the restored revision.
 */
async function verifyRestore(step: StepSpec, ctx: ActionContext) {
  const names = strings(step, 'nodes');
  const snapRev = BigInt(str(step, 'revision'));
  const liveKeys = num(step, 'liveKeys');
  const bump = BigInt(ctx.outputs[OUT.bump] ?? '0');
  const minRev = snapRev > 0n ? snapRev + bump : 0n;
  // A member just started may refuse connections or time out for a moment.
  const retry = (e: unknown) => isMedicError(e) && (e.retryable || TRANSIENT.includes(e.code));
  const text = await poll(ctx, 'verifying the restored cluster', 170_000, async () => {
    const clients = await Promise.all(names.map(async (n) => ({ n, c: await ctx.res.etcd(n) })));
    const health = await Promise.all(clients.map(async ({ n, c }) => ({ n, h: await c.health() })));
    const sick = health.filter((x) => !x.h.healthy);
    if (sick.length) {
      ctx.progress(`not healthy yet: ${sick.map((x) => `${x.n} (${x.h.error ?? 'unhealthy'})`).join(', ')}`);
      return undefined;
    }
    const members: MemberInfo[] = await clients[0].c.memberList();
    const missing = names.filter((n) => !memberOf(members, ctx.res.node(n)));
    const extra = members.filter((m) => !names.some((n) => memberOf([m], ctx.res.node(n))));
    if (missing.length || extra.length || members.some((m) => m.isLearner)) {
      ctx.progress(`members: ${members.map((m) => `${m.name || m.id}${m.isLearner ? ' (learner)' : ''}`).join(', ')}; expected ${names.join(', ')}`);
      return undefined;
    }
    const now = await clients[0].c.countKeys();
    if (BigInt(now.revision) < minRev) {
      throw new MedicError('UNSAFE', `the restored cluster is at revision ${now.revision}, below ${minRev} (snapshot ${snapRev}${bump ? ` + bump ${bump}` : ''}): it is not the restored data`);
    }
    let keys = `${now.count} keys at revision ${now.revision}`;
    if (liveKeys >= 0) {
      // At the restored revision itself the count is exact, whatever was written since.
      // (With the bump everything below it is marked compacted: read at the bumped revision.)
      const at = minRev > 0n ? await clients[0].c.countKeys({ revision: minRev.toString() }).catch(() => undefined) : undefined;
      // Without that read, the current count is exact only while nothing was written since.
      const seen = at ?? (minRev === 0n || BigInt(now.revision) === minRev ? now : undefined);
      if (!seen) {
        keys += `; revision ${minRev} could not be read and writes since changed the count: the snapshot's ${liveKeys} keys were not compared`;
      } else if (seen.count !== liveKeys) {
        throw new MedicError('UNSAFE', `the restored cluster has ${seen.count} keys at revision ${seen.revision}, the snapshot had ${liveKeys}: not the snapshot's data. Check before relying on it`);
      } else {
        keys += `; ${liveKeys} keys at revision ${seen.revision}, as in the snapshot`;
      }
    }
    const ids = members.map((m) => `${m.name || '?'} ${m.id}`).join(', ');
    return `${names.length}/${names.length} members healthy (${ids}), no learner; ${keys} (snapshot revision ${snapRev}${bump ? `, bumped by ${bump}` : ''})`;
  }, retry);
  // The unpacked copies on the bot's host hold every Secret of the cluster: gone once installed.
  await rm(workDirOf(ctx), { recursive: true, force: true }).catch((e: unknown) => ctx.progress(`could not remove ${workDirOf(ctx)}: ${describeError(e)}`));
  return { status: 'done' as const, detail: text };
}
