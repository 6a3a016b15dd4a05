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

/** "512 B", "48 KiB", "1.5 MiB", "2.0 GiB": sizes as tables show them. */
export function bytesText(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  return `${bytes} B`;
}

export function errorReport(title: string, message: string, next: string[] = []): Report {
  return { title, verdict: { level: 'critical', text: message }, next };
}
