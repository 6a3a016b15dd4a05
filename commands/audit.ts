import { arg, defineCommand } from '../src/engine/command';
import { AUDIT_REPORT_ROWS, formatAuditReport } from '../src/audit/audit-log';

const VERIFY = 'node dist/src/cli/audit.js verify';

export default defineCommand({
  id: 'audit',
  summary: 'The latest audit events of a cluster: requests, plans, approvals, steps with their exit codes',
  args: [arg.cluster()],
  risk: 'read',
  async execute(ctx) {
    const cluster = ctx.cluster.name;
    if (!ctx.audit) {
      return { title: `etcd audit — ${cluster}`, verdict: { level: 'warn', text: 'this worker has no audit log configured: nothing to show' } };
    }
    const [entries, head] = await Promise.all([ctx.audit.recent({ cluster, limit: AUDIT_REPORT_ROWS }), ctx.audit.head()]);
    const report = formatAuditReport(entries, cluster, { head });
    // The table shows one cluster's tail; only the chain as a whole proves nothing was edited or removed.
    const notes = report.notes ?? [];
    if (!notes.some((n) => n.includes(VERIFY))) notes.push(`check the whole chain with \`${VERIFY}\` on a bot host`);
    return { ...report, notes, next: [`/etcd jobs ${cluster}`], context: [`job ${ctx.jobId}`] };
  },
});
