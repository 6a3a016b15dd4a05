/**
 * Executor actions of quorum-loss recovery: keep a copy of the survivor's data, re-form a
 * one-member cluster with --force-new-cluster, and take the flag out again (left in, it
 * re-forms a one-member cluster at every restart).
 */
import { MedicError } from '../engine/errors';
import type { ActionName } from '../engine/plan';
import { sh } from '../exec/shell';
import type { Action } from './actions';
import { poll, str, STEP_TIMEOUT_MS, tagOf } from './actions';

/** The flags this action may set or remove: nothing typed in chat picks a flag. */
const SETTABLE_FLAGS = new Set(['--force-new-cluster']);

export const quorumActions: Partial<Record<ActionName, Action>> = {
  // A full copy (cp -a) of the survivor's member dir before --force-new-cluster rewrites its
  // membership: if the re-formed cluster is wrong, this is the way back.
  'node.copyDataAside': async (step, ctx) => {
    const node = str(step, 'node');
    const rt = await ctx.res.runtime(node);
    if ((await rt.state()).running) throw new MedicError('UNSAFE', `etcd still runs on ${node}: a copy of a live data dir may be torn; stop it first`);
    const src = `${ctx.res.cluster.paths.dataDir}/member`;
    const dst = `${ctx.res.cluster.paths.dataDir}/member.medic-copy-${tagOf(ctx)}`;
    const session = await ctx.res.session(node);
    const r = await session.exec(sh`test -d ${src} || exit 3; if test -d ${dst}; then exit 10; fi; rm -rf ${`${dst}.partial`} && cp -a ${src} ${`${dst}.partial`} && sync && mv ${`${dst}.partial`} ${dst} && du -sh ${dst}`,
      { timeoutMs: STEP_TIMEOUT_MS.wait - 10_000 });
    if (r.code === 10) return { status: 'skipped', detail: `${node}: copy ${dst} already made` };
    if (r.code === 3) throw new MedicError('REMOTE_FAILED', `${node} has no ${src}: nothing to recover from on this node; choose the survivor that still has its data (/etcd status)`);
    if (r.code !== 0) throw new MedicError('REMOTE_FAILED', `${node}: copying ${src} failed (exit ${r.code}): ${r.stderr.trim().slice(0, 300)}`);
    return { status: 'done', detail: `${node}: data copied to ${dst} (${r.stdout.trim().split(/\s+/)[0]}), original untouched` };
  },

  // Edits one flag of the node's config as YAML (or env file), wherever the config is, and
  // reads it back: "afterwards the manifest has no --force-new-cluster" is checked, not assumed.
  'node.setFlag': async (step, ctx) => {
    const node = str(step, 'node');
    const flag = str(step, 'flag');
    if (!SETTABLE_FLAGS.has(flag)) throw new MedicError('INTERNAL', `node.setFlag may not change ${flag}`);
    const remove = step.params.remove === true;
    const rt = await ctx.res.runtime(node);
    const current = await rt.readConfig();
    if (!current) throw new MedicError('REMOTE_FAILED', `${node} has no etcd configuration to edit`);
    const has = current.doc.flag(flag) !== undefined;
    if (remove ? !has : has) {
      return { status: 'skipped', detail: `${node}: ${flag} already ${remove ? 'absent' : 'present'} (${current.place} config)` };
    }
    if (remove) current.doc.remove(flag); else current.doc.set(flag);
    const w = await rt.writeConfig(current.doc, tagOf(ctx));
    const after = await rt.readConfig();
    const now = after?.doc.flag(flag) !== undefined;
    if (now === remove) throw new MedicError('REMOTE_FAILED', `${node}: ${flag} is still ${remove ? 'present' : 'absent'} in ${w.path} after writing it`);
    return { status: 'done', detail: `${node}: ${flag} ${remove ? 'removed from' : 'added to'} ${w.path} (checked after writing)${w.backup ? `; backup ${w.backup}` : ''}` };
  },

  // The survivor restarted with --force-new-cluster: wait until it serves as a healthy
  // one-member cluster (its member list holds itself alone).
  'etcd.waitSingleMember': async (step, ctx) => {
    const node = str(step, 'node');
    const text = await poll(ctx, `${node} forming a one-member cluster`, STEP_TIMEOUT_MS.wait - 10_000, async () => {
      const client = await ctx.res.etcd(node);
      const [health, members, status] = await Promise.all([client.health(), client.memberList(), client.status()]);
      ctx.progress(`${node}: ${members.length} member(s), ${health.healthy ? 'healthy' : `not healthy yet (${health.error ?? 'no answer'})`}`);
      if (!health.healthy || members.length !== 1 || members[0].id !== status.memberId) return undefined;
      return `${node} is a healthy one-member cluster (member ${status.memberId}, raft index ${status.raftIndex})`;
    }, (e) => e instanceof MedicError && e.retryable);
    return { status: 'done', detail: text };
  },
};
