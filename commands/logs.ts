import { arg, defineCommand } from '../src/engine/command';
import type { Report } from '../src/engine/report';
import { redact, redactLines } from '../src/audit/redact';

/**
 * Characters of log text one report carries. Slack's section holds 3000 and the notes
 * block is cut at 2500 with its bullets and escaping: the newest lines that fit this stay.
 */
export const LOG_REPORT_CHARS = 2300;
/** Longest single line kept (a stack trace or a huge request can't crowd out the rest). */
const LINE_CHARS = 400;

export default defineCommand({
  id: 'logs',
  summary: 'The last lines of etcd\'s log on a node (secrets redacted; the newest that fit a message)',
  args: [arg.cluster(), arg.node(), arg.number('lines', 1, 500, 50)],
  risk: 'read',
  async execute(ctx) {
    const { cluster } = ctx;
    const node = ctx.args.node;
    if (!ctx.withNode) {
      return { title: `etcd logs — ${cluster.name} ${node}`, verdict: { level: 'warn', text: 'this worker can\'t open SSH sessions (no SSH key): it can\'t read logs' } };
    }
    const lines = Number(ctx.args.lines ?? 50);
    const got = await ctx.withNode(cluster, node, (rt) => rt.logs(lines));
    return logsReport(cluster.name, node, got, ctx.jobId);
  },
});

export function logsReport(cluster: string, node: string, got: { source: string; lines: string[] }, jobId?: string): Report {
  // The whole tail first (a key block spans lines), then each compacted line again (compact
  // turns {"passphrase":"…"} into passphrase=…) and bounded.
  const all = redactLines(got.lines).map((l) => redact(compact(l), { maxChars: LINE_CHARS }));
  // Newest first until the budget is spent; shown oldest first, as a log reads.
  const kept: string[] = [];
  let used = 0;
  for (let i = all.length - 1; i >= 0; i--) {
    const cost = shownLength(all[i]) + 3; // "• " and the newline
    if (used + cost > LOG_REPORT_CHARS) break;
    kept.unshift(all[i]);
    used += cost;
  }
  const cut = all.length - kept.length;
  return {
    title: `etcd logs — ${cluster} ${node}`,
    verdict: {
      level: 'info',
      text: all.length
        ? `last ${kept.length} line${kept.length === 1 ? '' : 's'} of etcd's log on ${node}${cut ? `; ${cut} older line${cut === 1 ? '' : 's'} cut to fit the message` : ''}`
        : `etcd's log on ${node} is empty`,
    },
    notes: [
      ...kept,
      ...(cut ? [`(${cut} older line${cut === 1 ? '' : 's'} not shown: a message holds about ${LOG_REPORT_CHARS} characters of log; the rest is in ${got.source} on ${node})`] : []),
    ],
    next: [`/etcd status ${cluster}`],
    context: [`from ${got.source}${jobId ? ` · job ${jobId}` : ''}`],
  };
}

/** Length once Slack's mrkdwn escaping has turned & < > into entities. */
function shownLength(s: string): number {
  return s.length + (s.match(/[&<>]/g)?.length ?? 0) * 4;
}

const LEVEL: Record<string, string> = { debug: 'D', info: 'I', warn: 'W', error: 'E', dpanic: 'E', panic: 'P', fatal: 'F' };

/**
 * etcd logs JSON lines (zap): {"level":"warn","ts":"…","caller":"…","msg":"…",…}. Shown as
 * "10:04:05.123 W msg key=value…", which fits three times as many lines in a message.
 * Anything else is kept as it is.
 */
export function compact(line: string): string {
  const t = line.trim();
  if (!t.startsWith('{')) return t;
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(t) as Record<string, unknown>;
  } catch {
    return t;
  }
  if (typeof rec !== 'object' || rec === null || typeof rec.msg !== 'string') return t;
  const { level, ts, caller: _caller, msg, ...rest } = rec;
  const time = typeof ts === 'string' ? (/T(\d\d:\d\d:\d\d(\.\d{1,3})?)/.exec(ts)?.[1] ?? ts)
    : typeof ts === 'number' ? new Date(ts * 1000).toISOString().slice(11, 23) : '';
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return [time, LEVEL[String(level)] ?? String(level ?? ''), msg, ...fields].filter(Boolean).join(' ');
}
