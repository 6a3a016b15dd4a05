/** How a plan looks in chat: the steps, the numbers it rests on, who approved, where it is. */
import type { PlanView } from './approvals';
import type { Report } from './report';
import { parallelRanges } from './plan';

const STATUS_TEXT: Record<PlanView['status'], string> = {
  pending: 'waiting for approval',
  approved: 'approved, starting',
  rejected: 'rejected: nothing ran',
  cancelled: 'cancelled: nothing ran',
  expired: 'approval expired: nothing ran',
  superseded: 'superseded: the cluster changed, a new plan was posted; nothing of this one ran',
  running: 'running',
  succeeded: 'done',
  failed: 'failed',
  stopped: 'stopped between steps',
};

export function planReport(v: PlanView, states: string[] = v.states ?? []): Report {
  const level = v.status === 'succeeded' ? 'ok'
    : v.status === 'failed' ? 'critical'
      : v.status === 'pending' || v.status === 'approved' || v.status === 'running' ? 'info' : 'warn';
  const need = Math.max(v.required, 1);
  const who = v.approvals.map((a) => a.user).join(', ') || 'nobody yet';
  const expires = v.expiresAt.slice(11, 16);
  let text = `${STATUS_TEXT[v.status]}`;
  if (v.status === 'pending') {
    text += v.required === 0
      ? ` — the requester (or an approver) confirms with Approve before ${expires} UTC`
      : ` — needs ${need} approval${need === 1 ? '' : 's'} from someone other than the requester, before ${expires} UTC`;
  }
  if (v.status === 'running' && v.progress) text += ` — ${v.progress}`;
  if (v.cancelRequested && v.status === 'running') text += ' — cancel requested: stops after the current step';
  const buttons: Array<'approve' | 'reject' | 'cancel'> = v.status === 'pending' ? ['approve', 'reject', 'cancel']
    : v.status === 'running' || v.status === 'approved' ? ['cancel'] : [];
  return {
    title: `etcd ${v.command} — ${v.cluster} (job ${v.id})`,
    verdict: { level, text },
    fields: [
      { label: 'Requested by', value: v.requester },
      { label: 'Risk', value: v.risk },
      { label: 'Approved by', value: `${who} (${v.approvals.length}/${need})` },
      ...v.plan.facts,
    ],
    tables: [{
      title: 'Plan',
      columns: ['#', 'STEP', 'NODE', 'WHAT IT CHANGES', 'STATE'],
      rows: v.plan.steps.map((s, i) => [String(i + 1), s.action, s.node ?? '-', s.describe, states[i] ?? (v.status === 'running' && i === states.length ? 'running' : '-')]),
    }],
    notes: [
      ...v.plan.warnings,
      ...atOnce(v.plan.steps),
      ...(v.supersedes ? [`replaces plan ${v.supersedes}, whose cluster state changed before it ran`] : []),
    ],
    context: [`plan ${v.hash.slice(0, 12)} · requested ${v.createdAt} · details in the thread`],
    actions: buttons.length ? { planId: v.id, buttons } : undefined,
  };
}

/** Which steps run at the same time, in words: the plan shows exactly what runs. */
function atOnce(steps: PlanView['plan']['steps']): string[] {
  const ranges = parallelRanges(steps);
  if (!ranges.length) return [];
  const list = ranges.length === 1 ? ranges[0] : `${ranges.slice(0, -1).join(', ')} and ${ranges[ranges.length - 1]}`;
  return [`steps ${list} run at the same time (independent of each other; the next step starts once all of them are done)`];
}
