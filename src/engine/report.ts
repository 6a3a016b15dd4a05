/**
 * What the engine hands to chat adapters. Adapter-neutral: the Slack adapter renders
 * it as Block Kit, the console adapter as text. Plain JSON so it can travel through
 * Redis as a job's return value.
 */
export type Level = 'ok' | 'warn' | 'critical' | 'info';

export interface ReportTable {
  title?: string;
  columns: string[];
  rows: string[][];
}

export interface Report {
  /** One line, e.g. "etcd status — lab". */
  title: string;
  /** The headline: healthy / degraded / quorum lost, or an error. */
  verdict?: { level: Level; text: string };
  /** Short label/value pairs shown as a summary grid. */
  fields?: Array<{ label: string; value: string }>;
  tables?: ReportTable[];
  /** Free lines shown after the tables (e.g. "node3 unreachable: connect ECONNREFUSED"). */
  notes?: string[];
  /** Suggested next commands, each a full command line such as "/etcd replace-member lab node3". */
  next?: string[];
  /** Small print: time collected, job id. */
  context?: string[];
  /** Buttons acting on a plan (Slack) / the commands that do the same (console). */
  actions?: { planId: string; buttons: Array<'approve' | 'reject' | 'cancel'> };
}

export function errorReport(title: string, message: string, next: string[] = []): Report {
  return { title, verdict: { level: 'critical', text: message }, next };
}
