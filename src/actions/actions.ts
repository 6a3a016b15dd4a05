/**
 * Executor actions: what each plan step does. Every action checks before it acts, so a
 * step repeated after a crash (the job resumes at the step that didn't finish) finds its
 * work done and reports 'skipped' instead of doing it twice.
 */
import type { NodeConfig } from '../config/schema';
import { abortableSleep, abortReason, untilAborted } from '../engine/abort';
import { describeError, isMedicError, MedicError } from '../engine/errors';
import type { ActionName, StepSpec } from '../engine/plan';
import type { ClusterMemory } from '../engine/cluster-memory';
import type { MemberInfo } from '../exec/types';
import { hostOf } from '../engine/status-summary';
import type { JobResources } from './context';
import { ensurePki } from './pki-step';
import { adaptPeerConfig } from '../runtime/flags';
import { safetySnapshot, SnapshotDeps } from './snapshot-step';
import { restoreActions } from './restore-actions';
import { quorumActions } from './quorum-actions';

export interface StepOutcome {
  status: 'done' | 'skipped';
  /** One line for the thread and the audit trail. */
  detail: string;
  /** Values later steps need (e.g. the id etcd gave a new member). */
  outputs?: Record<string, string>;
}

/** What cluster.verify looks at, from a fresh probe. */
export interface ClusterCheck {
  voters: number;
  learners: number;
  healthyVoters: number;
  quorum: number;
  /** Nodes whose member is a voter that passed its health read. */
  healthyVoterNodes: string[];
  text: string;
}

export interface ActionContext {
  res: JobResources;
  planId: string;
  requester: string;
  /** Values earlier steps produced. */
  outputs: Record<string, string>;
  /** Progress of a long step (shown on the plan message and in the console). */
  progress(text: string): void;
  /** Probe + summarize, for verification steps. */
  verify(): Promise<ClusterCheck>;
  snapshots?: SnapshotDeps;
  /** @defaultValue setTimeout-based sleep (tests shorten it) */
  sleep?: (ms: number) => Promise<void>;
  /**
   * Aborts the action: the job's signal (lost lease, shutdown) given to runAction, which
   * adds the step's timeout. Checked by every remote command and etcd call of `res`.
   */
  signal?: AbortSignal;
  /**
   * Names what this plan leaves on nodes (data moved aside, config backups): the plan id and
   * its creation time, so a Redis that lost its data and numbers plans from 1 again never
   * collides with an earlier plan's leftovers. @defaultValue `job-<planId>`
   */
  tag?: string;
  /** What the bot remembers of each cluster (bot.forgetMemory). */
  memory?: ClusterMemory;
  /** Overrides of the class timeouts (fault tests and drills). @defaultValue STEP_TIMEOUT_MS */
  stepTimeoutMs?: Partial<typeof STEP_TIMEOUT_MS>;
}

/** Timeouts by class of step, declared once: changes are quick, waits for health are not. */
export const STEP_CLASS: Record<ActionName, 'change' | 'wait'> = {
  'snapshot.safety': 'wait',
  'etcd.memberRemove': 'change',
  'etcd.memberAddLearner': 'wait',
  'etcd.waitLearnerSynced': 'wait',
  'etcd.memberPromote': 'wait',
  'etcd.defragment': 'wait',
  'etcd.alarmDisarm': 'change',
  'node.stopEtcd': 'wait',
  'node.moveDataAside': 'change',
  'node.ensurePki': 'change',
  'node.writeConfig': 'change',
  'node.startEtcd': 'wait',
  'cluster.verify': 'wait',
  'snapshot.verifyFile': 'wait',
  'restore.prepareData': 'wait',
  'restore.installData': 'wait',
  'node.writeRestoreConfig': 'change',
  'restore.verify': 'wait',
  'node.copyDataAside': 'wait',
  'node.setFlag': 'change',
  'etcd.waitSingleMember': 'wait',
  'bot.forgetMemory': 'change',
};
export const STEP_TIMEOUT_MS = { change: 60_000, wait: 180_000 };

export { memberOf, assertNotLiveMember, str };

export type Action = (step: StepSpec, ctx: ActionContext) => Promise<StepOutcome>;

/** The plan's tag for what it leaves on nodes. */
export const tagOf = (ctx: Pick<ActionContext, 'tag' | 'planId'>) => ctx.tag ?? `job-${ctx.planId}`;

const sleepOf = (ctx: ActionContext) => ctx.sleep ?? ((ms: number) => abortableSleep(ms, ctx.signal));



function str(step: StepSpec, name: string): string {
  const v = step.params[name];
  if (typeof v !== 'string') throw new MedicError('INTERNAL', `step ${step.action}: parameter ${name} missing`);
  return v;
}

/** The member that stands for a node: same peer URL host:port. */
function memberOf(members: MemberInfo[], node: NodeConfig): MemberInfo | undefined {
  return members.find((m) => m.peerUrls.some((u) => hostOf(u) === hostOf(node.peerUrl)));
}

/**
 * Polls `fn` until it returns a value, with a deadline and bounded backoff; each miss is
 * reported as progress. Errors listed as retryable by `retryOn` count as misses.
 */
export async function poll<T>(
  ctx: ActionContext, what: string, timeoutMs: number, fn: () => Promise<T | undefined>,
  retryOn: (e: unknown) => boolean = () => false,
  /** Filled in with how long etcd refused (retryable errors) before it answered, and its last word. */
  refused?: { ms: number; last?: string },
): Promise<T> {
  const start = Date.now();
  // Starts short (most waits end within a second), backs off to at most a second.
  let delay = 100;
  let last = 'not yet';
  let firstRefusal: number | undefined;
  for (;;) {
    if (ctx.signal?.aborted) throw abortReason(ctx.signal);
    try {
      const v = await fn();
      if (v !== undefined) {
        if (refused && firstRefusal !== undefined) { refused.ms = Date.now() - firstRefusal; refused.last = last; }
        return v;
      }
    } catch (e) {
      if (!retryOn(e)) throw e;
      last = describeError(e);
      firstRefusal ??= Date.now();
    }
    const elapsed = Date.now() - start;
    if (elapsed >= timeoutMs) throw new MedicError('TIMEOUT', `${what}: gave up after ${Math.round(elapsed / 1000)} s (last: ${last})`);
    ctx.progress(`${what}: waiting (${Math.round(elapsed / 1000)} s${last !== 'not yet' ? `, last: ${last}` : ''})`);
    await sleepOf(ctx)(delay);
    delay = Math.min(delay * 2, 1000);
  }
}

/** ` (etcd refused it for 5.1 s first: unhealthy cluster)`, or nothing when it accepted at once. */
function refusedText(r: { ms: number; last?: string }): string {
  return r.ms ? ` (etcd refused it for ${(r.ms / 1000).toFixed(1)} s first: ${r.last ?? 'retryable'})` : '';
}

const isTransient = (e: unknown) => isMedicError(e) && (e.retryable
  || /unhealthy cluster|not in sync|can only promote|too many learner|timed out|leader changed/i.test(e.message));

/**
 * Refuses when `node` still stands for a member of the cluster: by its peer URL in the
 * member list, or by the member id its own etcd answers with (if it answers at all).
 */
async function assertNotLiveMember(ctx: ActionContext, node: string, what: string): Promise<void> {
  const { node: via, client } = await ctx.res.healthyEtcd({ exclude: [node] });
  const members = await client.memberList();
  const byUrl = memberOf(members, ctx.res.node(node));
  if (byUrl) throw new MedicError('UNSAFE', `${node} is still member ${byUrl.id} of the cluster (seen on ${via}): refusing to ${what} it. Remove the member first`);
  let ownId: string | undefined;
  try {
    ownId = (await (await ctx.res.etcd(node)).status()).memberId;
  } catch {
    return; // its etcd does not answer: nothing there serves the cluster
  }
  const live = members.find((m) => m.id === ownId);
  if (live) throw new MedicError('UNSAFE', `etcd on ${node} answers as member ${live.id} (${live.name || 'unnamed'}), which is in the cluster (seen on ${via}): refusing to ${what} it`);
}

/** Stops or starts etcd through the node's runtime, waiting (with progress) for the process. */
async function switchEtcd(ctx: ActionContext, node: string, to: 'stop' | 'start'): Promise<StepOutcome> {
  const rt = await ctx.res.runtime(node);
  const wait = { timeoutMs: STEP_TIMEOUT_MS.wait - 5000, onWait: (ms: number) => ctx.progress(`${to === 'stop' ? 'stopping' : 'starting'} etcd on ${node} (${Math.round(ms / 1000)} s)`) };
  const r = to === 'stop' ? await rt.stop(wait) : await rt.start(wait);
  if (r === 'already-stopped' || r === 'already-running') {
    return { status: 'skipped', detail: `etcd on ${node} was already ${to === 'stop' ? 'stopped' : 'running'}` };
  }
  return { status: 'done', detail: `etcd on ${node} ${to === 'stop' ? 'stopped' : 'started'} (${rt.kind})` };
}

/** The deadline of a call to a member that may have just started (it connects before it serves). */
const JUST_STARTED_CALL_MS = 1000;

/** How long the leader's stop waits for its peers' (stopped at the same time) before it goes anyway. */
export const LEADER_LAST_MS = 20_000;

/**
 * Stopping the whole cluster at once: a leader told to stop hands its leadership to a peer
 * first, and waits for that (etcd's request timeout, ~7 s, or until kubelet kills it) when
 * the peer is stopping too. So the member that leads stops last: once its peers no longer
 * answer it has no one to hand over to and exits at once. Followers stop straight away.
 * Resolves with what it did, for the step's detail, or undefined when `node` did not lead.
 */
async function leaderStopsLast(ctx: ActionContext, node: string, peers: string[]): Promise<string | undefined> {
  const own = await ctx.res.etcd(node).then((c) => c.status()).catch(() => undefined);
  if (!own || own.leader !== own.memberId) return undefined;
  ctx.progress(`${node} leads the cluster: it stops once etcd on ${peers.join(', ')} has stopped`);
  const t0 = Date.now();
  const sleep = sleepOf(ctx);
  for (;;) {
    const answering = (await Promise.all(peers.map(async (p) => (await ctx.res.etcd(p).then((c) => c.health()).catch(() => undefined))?.healthy === true)))
      .filter(Boolean).length;
    if (!answering) return `it led the cluster, so it stopped after ${peers.join(', ')} (${((Date.now() - t0) / 1000).toFixed(1)} s)`;
    if (Date.now() - t0 > LEADER_LAST_MS) return `it led the cluster; ${answering} of ${peers.join(', ')} still answered after ${LEADER_LAST_MS / 1000} s, so it stopped anyway`;
    await sleep(200);
  }
}

const actions: Partial<Record<ActionName, Action>> = {
  'snapshot.safety': async (step, ctx) => {
    if (ctx.outputs.safetySnapshot) return { status: 'skipped', detail: `safety snapshot ${ctx.outputs.safetySnapshot} already taken` };
    if (!ctx.snapshots) throw new MedicError('INTERNAL', 'no snapshot store configured in this worker');
    const exclude = typeof step.params.exclude === 'string' ? [step.params.exclude] : [];
    const { node, client } = await ctx.res.healthyEtcd({ exclude });
    const rec = await safetySnapshot(ctx.snapshots, {
      client, cluster: ctx.res.cluster.name, node, requester: ctx.requester, planId: ctx.planId, reason: step.describe, progress: ctx.progress,
    });
    return { status: 'done', detail: rec.detail, outputs: { safetySnapshot: rec.id } };
  },

  'etcd.memberRemove': async (step, ctx) => {
    const id = str(step, 'memberId');
    const exclude = step.node ? [step.node] : [];
    const { node: via, client } = await ctx.res.healthyEtcd({ exclude });
    const members = await client.memberList();
    const target = members.find((m) => m.id === id);
    if (!target) return { status: 'skipped', detail: `member ${id} is already gone (checked on ${via})` };
    // Re-check quorum right before acting: the plan's numbers may be minutes old.
    const voters = members.filter((m) => !m.isLearner && m.id !== id);
    const quorum = Math.floor(voters.length / 2) + 1;
    let healthy = 0;
    for (const m of voters) {
      const n = ctx.res.cluster.nodes.find((x) => memberOf([m], x));
      if (!n) continue;
      const h = await ctx.res.etcd(n.name).then((c) => c.health()).catch(() => ({ healthy: false }));
      if (h.healthy) healthy++;
    }
    if (!target.isLearner && healthy < quorum) {
      throw new MedicError('UNSAFE', `removing ${id} would leave ${healthy} healthy of ${voters.length} voters, below quorum ${quorum}: refused, nothing removed`);
    }
    // Like member add, etcd refuses a removal for a few seconds after a member (re)joined
    // ("unhealthy cluster"): wait, don't fail. Each try first checks it isn't gone already.
    const refused = { ms: 0 } as { ms: number; last?: string };
    const after = await poll(ctx, `removing member ${id}`, STEP_TIMEOUT_MS.change - 10_000, async () => {
      const now = await client.memberList();
      if (!now.some((m) => m.id === id)) return now;
      return client.memberRemove(id);
    }, isTransient, refused);
    return { status: 'done', detail: `removed member ${id} (${target.name || 'unnamed'}) via ${via}; ${after.length} members left${refusedText(refused)}` };
  },

  'node.stopEtcd': async (step, ctx) => {
    const node = str(step, 'node');
    // force: the plan replaces or re-forms the whole cluster (restore, force-new-cluster),
    // approved as such; there is no healthy member left to check against.
    if (step.params.force !== true) await assertNotLiveMember(ctx, node, 'stop etcd on');
    const peers = step.params.force === true && Array.isArray(step.params.peersStopping) ? step.params.peersStopping : [];
    const waited = peers.length ? await leaderStopsLast(ctx, node, peers) : undefined;
    const r = await switchEtcd(ctx, node, 'stop');
    return waited ? { ...r, detail: `${r.detail}; ${waited}` } : r;
  },

  'node.moveDataAside': async (step, ctx) => {
    const node = str(step, 'node');
    // Never touch the data of a member that is still in the cluster: check it is gone first.
    if (step.params.force !== true) await assertNotLiveMember(ctx, node, 'move aside the data of');
    const rt = await ctx.res.runtime(node);
    const r = await rt.moveDataAside(tagOf(ctx));
    return r.movedTo
      ? { status: 'done', detail: `old data on ${node} moved to ${r.movedTo} (kept, not deleted)` }
      : { status: 'skipped', detail: `${node} had no etcd data to move` };
  },

  'node.ensurePki': async (step, ctx) => {
    const node = str(step, 'node');
    return ensurePki(ctx, node);
  },

  'etcd.memberAddLearner': async (step, ctx) => {
    const node = ctx.res.node(str(step, 'node'));
    const { node: via, client } = await ctx.res.healthyEtcd({ exclude: [node.name] });
    const members = await client.memberList();
    const existing = memberOf(members, node);
    if (existing) {
      return { status: 'skipped', detail: `${node.name} is already member ${existing.id}${existing.isLearner ? ' (learner)' : ''}`, outputs: { [`member.${node.name}`]: existing.id } };
    }
    const learners = members.filter((m) => m.isLearner);
    if (learners.length) throw new MedicError('UNSAFE', `member ${learners[0].id} is still a learner: etcd allows one learner at a time; promote or remove it first`);
    // etcd refuses a member add for a few seconds after a join ("unhealthy cluster"):
    // that is a wait, not a failure.
    const refused = { ms: 0 } as { ms: number; last?: string };
    const added = await poll(ctx, `adding ${node.name} as a learner`, STEP_TIMEOUT_MS.wait - 10_000, async () => {
      const again = memberOf(await client.memberList(), node);
      if (again) return { member: again };
      return client.memberAdd([node.peerUrl], { isLearner: true });
    }, isTransient, refused);
    return { status: 'done', detail: `added ${node.name} as learner ${added.member.id} via ${via}${refusedText(refused)}`, outputs: { [`member.${node.name}`]: added.member.id } };
  },

  'node.writeConfig': async (step, ctx) => {
    const name = str(step, 'node');
    const node = ctx.res.node(name);
    const { node: via, client } = await ctx.res.healthyEtcd({ exclude: [name] });
    const members = await client.memberList();
    if (!memberOf(members, node)) throw new MedicError('UNSAFE', `${name} is not a member yet: add it before writing its configuration`);
    // Every member, the new one under its node name (etcd lists it nameless until it starts).
    // In config order, as kubeadm writes it: the same list on every node.
    const rank = (m: MemberInfo) => { const i = ctx.res.cluster.nodes.findIndex((x) => memberOf([m], x)); return i < 0 ? Infinity : i; };
    const initialCluster = [...members].sort((a, b) => rank(a) - rank(b)).map((m) => {
      const n = ctx.res.cluster.nodes.find((x) => memberOf([m], x));
      return `${n?.name ?? m.name}=${m.peerUrls[0]}`;
    }).join(',');
    const rt = await ctx.res.runtime(name);
    let current = await rt.readConfig();
    let derived = '';
    if (!current) {
      const peerRt = await ctx.res.runtime(via);
      const peer = await peerRt.readConfig();
      if (!peer) throw new MedicError('REMOTE_FAILED', `${name} has no etcd configuration and neither has ${via} to derive one from`);
      const doc = rt.parseConfig(peer.doc.toString(), `${via}'s configuration`);
      adaptPeerConfig(doc, ctx.res.node(via), node);
      current = { doc, place: 'stopped' };
      derived = ` (derived from ${via}'s)`;
    }
    const doc = current.doc;
    doc.set('--name', name);
    doc.set('--initial-cluster', initialCluster);
    doc.set('--initial-cluster-state', 'existing');
    // Left in place it would re-form a one-member cluster at every restart.
    doc.remove('--force-new-cluster');
    const w = await rt.writeConfig(doc, tagOf(ctx));
    return { status: 'done', detail: `${w.path}${derived}: --initial-cluster-state=existing, --initial-cluster=${initialCluster}${w.backup ? `; backup ${w.backup}` : ''}` };
  },

  'node.startEtcd': async (step, ctx) => switchEtcd(ctx, str(step, 'node'), 'start'),

  'etcd.waitLearnerSynced': async (step, ctx) => {
    const node = ctx.res.node(str(step, 'node'));
    const { client: leaderSide } = await ctx.res.healthyEtcd({ exclude: [node.name] });
    const r = await poll(ctx, `${node.name} catching up`, STEP_TIMEOUT_MS.wait - 10_000, async () => {
      const member = memberOf(await leaderSide.memberList(), node);
      if (!member) throw new MedicError('UNSAFE', `${node.name} is no longer a member`);
      if (!member.isLearner) return 'promoted already';
      // A member that has just started accepts connections before it serves: ask it with a
      // short deadline, so a call made too early is tried again soon instead of hanging.
      const [mine, theirs] = await Promise.all([ctx.res.etcd(node.name).then((c) => c.status({ deadlineMs: JUST_STARTED_CALL_MS })), leaderSide.status()]);
      const lag = BigInt(theirs.raftIndex) - BigInt(mine.raftIndex);
      ctx.progress(`${node.name} (learner) raft index ${mine.raftIndex}, leader side ${theirs.raftIndex}: ${lag > 0n ? `${lag} behind` : 'in sync'}`);
      return lag <= 5n ? `in sync (raft index ${mine.raftIndex}, leader side ${theirs.raftIndex})` : undefined;
    }, isTransient);
    return { status: 'done', detail: `${node.name}: ${r}` };
  },

  'etcd.memberPromote': async (step, ctx) => {
    const node = ctx.res.node(str(step, 'node'));
    const { node: via, client } = await ctx.res.healthyEtcd({ exclude: [node.name] });
    const member = memberOf(await client.memberList(), node);
    if (!member) throw new MedicError('UNSAFE', `${node.name} is not a member: nothing to promote`);
    if (!member.isLearner) return { status: 'skipped', detail: `${node.name} (${member.id}) is already a voting member` };
    // "can only promote a learner member which is in sync with leader": poll, then promote.
    await poll(ctx, `promoting ${node.name}`, STEP_TIMEOUT_MS.wait - 10_000, async () => {
      const m = memberOf(await client.memberList(), node);
      if (m && !m.isLearner) return true;
      await client.memberPromote(member.id);
      return true;
    }, isTransient);
    return { status: 'done', detail: `promoted ${node.name} (${member.id}) to voting member via ${via}` };
  },

  'etcd.defragment': async (step, ctx) => {
    const node = str(step, 'node');
    const client = await ctx.res.etcd(node);
    const before = await client.status();
    await client.defragment({ deadlineMs: STEP_TIMEOUT_MS.wait - 10_000 });
    const after = await client.status();
    return { status: 'done', detail: `${node}: database ${mib(before.dbSize)} → ${mib(after.dbSize)}` };
  },

  'etcd.alarmDisarm': async (step, ctx) => {
    const { node: via, client } = await ctx.res.healthyEtcd();
    const alarms = (await client.alarms()).filter((a) => a.alarm === 'NOSPACE' || a.alarm === 'CORRUPT');
    if (!alarms.length) return { status: 'skipped', detail: `no alarm raised (checked on ${via})` };
    for (const a of alarms) await client.alarmDisarm(a.memberId, a.alarm as 'NOSPACE' | 'CORRUPT');
    return { status: 'done', detail: `disarmed ${alarms.map((a) => `${a.alarm} on ${a.memberId}`).join(', ')} via ${via}` };
  },

  // The bot's memory of the cluster, not the cluster: nothing remote happens. Safe to repeat.
  'bot.forgetMemory': async (_step, ctx) => {
    if (!ctx.memory) throw new MedicError('INTERNAL', 'this worker keeps no memory of clusters: nothing was forgotten');
    await ctx.memory.forget(ctx.res.cluster.name);
    return { status: 'done', detail: `forgot what the bot had seen of ${ctx.res.cluster.name}: the next probe is remembered as the cluster` };
  },

  // What this plan promised, not that the whole cluster is well: another member may be
  // down, or an alarm raised, for reasons this plan never touched.
  'cluster.verify': async (step, ctx) => {
    const want = Number(step.params.voters);
    const node = typeof step.params.node === 'string' && step.params.node ? step.params.node : undefined;
    const text = await poll(ctx, 'verifying the cluster', STEP_TIMEOUT_MS.wait - 10_000, async () => {
      const v = await ctx.verify();
      ctx.progress(`cluster: ${v.text}`);
      const ok = v.voters === want && v.learners === 0 && v.healthyVoters >= v.quorum && (!node || v.healthyVoterNodes.includes(node));
      return ok ? v.text : undefined;
    }, isTransient);
    return { status: 'done', detail: text };
  },
};

/**
 * Runs one step under its class's timeout. The step's signal (the job's, plus the timeout)
 * is bound to the job's resources before the action starts, so a step that timed out or
 * whose job lost its lease can't issue another remote command or etcd call, even if the
 * action's own code is still awaiting something.
 */
export async function runAction(step: StepSpec, ctx: ActionContext): Promise<StepOutcome> {
  const action = actions[step.action] ?? restoreActions[step.action] ?? quorumActions[step.action];
  if (!action) throw new MedicError('INTERNAL', `this worker does not know the action ${step.action} (an older version?)`);
  const timeoutMs = ctx.stepTimeoutMs?.[STEP_CLASS[step.action]] ?? STEP_TIMEOUT_MS[STEP_CLASS[step.action]];
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(new MedicError('TIMEOUT', `${step.action}${step.node ? ` on ${step.node}` : ''}: no result within ${timeoutMs / 1000} s`)), timeoutMs);
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, timeout.signal]) : timeout.signal;
  ctx.res.beginStep(signal);
  try {
    return await untilAborted(signal, action(step, { ...ctx, signal }));
  } finally {
    clearTimeout(timer);
  }
}

function mib(bytes: number): string {
  return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
}
