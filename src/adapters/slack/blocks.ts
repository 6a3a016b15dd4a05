/**
 * Renders an engine Report as a Slack message: Block Kit blocks plus the `text` fallback
 * Slack shows in notifications and in clients that can't draw blocks.
 *
 * Slack rejects a whole message (`invalid_blocks`) when one block is over a limit, and the
 * report is most likely to be big exactly when a cluster is in trouble, so every string is
 * cut to fit here, and nothing in a Report (however odd) may make this throw.
 */
import type { types as SlackTypes } from '@slack/bolt';
import type { Level, Report, ReportTable } from '../../engine/report';

type KnownBlock = SlackTypes.KnownBlock;
type MrkdwnElement = SlackTypes.MrkdwnElement;

export interface SlackMessage {
  /** Notification / fallback text (mrkdwn, escaped), at most {@link SLACK_LIMITS.messageText} chars. */
  text: string;
  blocks: KnownBlock[];
}

/** Limits from Slack's Block Kit reference (chat.postMessage, section, header, context blocks). */
export const SLACK_LIMITS = {
  blocks: 50,
  headerText: 150,
  sectionText: 3000,
  fields: 10,
  fieldText: 2000,
  contextElements: 10,
  /** Any text object; context elements are text objects. */
  textObject: 3000,
  /** Slack truncates message `text` beyond this. */
  messageText: 40_000,
} as const;

/**
 * Total characters of text across all blocks. Not in Slack's reference, but chat.postMessage
 * answers `msg_blocks_too_long` somewhere around 12,000 characters of block text (reported at
 * 11,341 in slackapi/bolt-js#2867): stay well under it.
 */
export const BLOCK_TEXT_BUDGET = 10_000;

/** Widest a table cell may be drawn; longer values are cut with "…" (full value in `text`). */
const MAX_CELL_WIDTH = 48;
/** Widest a table line may be; keeps the header of a very wide table within a section. */
const MAX_LINE_WIDTH = 200;
/** Smallest useful table section; below this a table is left out and counted instead. */
const MIN_TABLE_CHARS = 120;

const LEVEL_EMOJI: Record<Level, string> = {
  ok: ':white_check_mark:',
  warn: ':warning:',
  critical: ':rotating_light:',
  info: ':information_source:',
};

const LEVEL_WORD: Record<Level, string> = { ok: 'OK', warn: 'WARNING', critical: 'CRITICAL', info: 'INFO' };

/** Escapes the three characters Slack treats as control characters in mrkdwn and message text. */
export function escapeMrkdwn(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function renderReport(report: Report): SlackMessage {
  try {
    return render(report);
  } catch (e) {
    // A renderer bug must not cost the user their result: send what we can.
    const title = toText(isObject(report) ? (report as { title?: unknown }).title : undefined) || 'etcd-medic report';
    const text = cutEscaped(`${title}\n(the report could not be formatted: ${toText(e)})`, SLACK_LIMITS.sectionText);
    return { text, blocks: [{ type: 'section', text: { type: 'mrkdwn', text } }] };
  }
}

function render(input: Report): SlackMessage {
  const report = normalise(input);
  // Keep room for the "N more tables not shown" line.
  const budget = new Budget(BLOCK_TEXT_BUDGET - 80);

  const header = headerBlock(report.title, budget);
  const verdict = report.verdict ? verdictBlock(report.verdict, budget) : undefined;
  // Small, high-value parts claim their budget before the tables, which take what is left.
  const next = report.next.length ? nextBlock(report.next, budget) : undefined;
  const notes = report.notes.length ? notesBlock(report.notes, budget) : undefined;
  const context = report.context.length ? contextBlock(report.context, budget) : undefined;
  const fields = fieldBlocks(report.fields, budget);

  const head: KnownBlock[] = [header, ...(verdict ? [verdict] : [])];
  const actions = report.actions ? actionsBlock(report.actions) : undefined;
  const tail: KnownBlock[] = [notes, next, actions, context].filter((b): b is KnownBlock => b !== undefined);
  const roomForBody = SLACK_LIMITS.blocks - head.length - tail.length - 1; // 1 spare for an "omitted" line
  const body: KnownBlock[] = fields.slice(0, roomForBody);
  let omittedTables = 0;
  for (const table of report.tables) {
    const block = body.length < roomForBody ? tableBlock(table, budget) : undefined;
    if (block) body.push(block);
    else omittedTables += 1;
  }
  if (omittedTables > 0) {
    const text = `_${omittedTables} more table${omittedTables === 1 ? '' : 's'} not shown (message size limit)_`;
    budget.take(text.length);
    body.push(mrkdwnSection(text));
  }
  return { text: fallbackText(report), blocks: [...head, ...body, ...tail] };
}

// ---------------------------------------------------------------------------------------
// Blocks

function headerBlock(title: string, budget: Budget): KnownBlock {
  // plain_text is shown literally: no mrkdwn escaping.
  const text = cutPlain(oneLine(title) || 'etcd-medic', SLACK_LIMITS.headerText);
  budget.take(text.length);
  return { type: 'header', text: { type: 'plain_text', text, emoji: true } };
}

function verdictBlock(verdict: { level: Level; text: string }, budget: Budget): KnownBlock {
  const emoji = LEVEL_EMOJI[verdict.level];
  const prefix = `${emoji} `;
  const max = Math.min(SLACK_LIMITS.sectionText, 1000);
  // Bold only a short, single-line verdict: "*" inside long text would break the markup.
  const body = cutEscaped(verdict.text || verdict.level, max - prefix.length - 2);
  const text = !body.includes('\n') && !body.includes('*') ? `${prefix}*${body}*` : `${prefix}${body}`;
  budget.take(text.length);
  return mrkdwnSection(text);
}

function fieldBlocks(fields: Array<{ label: string; value: string }>, budget: Budget): KnownBlock[] {
  const blocks: KnownBlock[] = [];
  let current: MrkdwnElement[] = [];
  for (const f of fields) {
    const label = cutEscaped(oneLine(f.label), 200);
    // A summary grid holds short values; the field limit is 2000 but 500 keeps room for tables.
    const value = cutEscaped(f.value, Math.min(500, budget.left - label.length - 4));
    const text = label ? `*${label}*\n${value || '–'}` : value;
    if (!text || budget.left < text.length) continue;
    budget.take(text.length);
    current.push({ type: 'mrkdwn', text });
    if (current.length === SLACK_LIMITS.fields) {
      blocks.push({ type: 'section', fields: current });
      current = [];
    }
  }
  if (current.length) blocks.push({ type: 'section', fields: current });
  return blocks;
}

function tableBlock(table: ReportTable, budget: Budget): KnownBlock | undefined {
  const max = Math.min(SLACK_LIMITS.sectionText, budget.left);
  if (max < MIN_TABLE_CHARS) return undefined;
  const title = table.title ? `*${cutEscaped(oneLine(table.title), 200)}*\n` : '';
  const total = table.rows.length;
  const note = (n: number) => `\n_…${n} more row${n === 1 ? '' : 's'} not shown (${total} in all)_`;
  // Every row takes at least 2 chars: rows past max/2 can't be shown, so don't format them.
  const lines = tableLines(limitRows(table, Math.ceil(max / 2)), { maxCell: MAX_CELL_WIDTH, maxLine: MAX_LINE_WIDTH, noBackticks: true });
  const head = lines.head.map(escapeMrkdwn);
  const rows = lines.rows.map(escapeMrkdwn);
  const wrap = (shown: number) => {
    const omitted = total - shown;
    return `${title}\`\`\`\n${[...head, ...rows.slice(0, shown)].join('\n')}\n\`\`\`${omitted > 0 ? note(omitted) : ''}`;
  };
  const fixed = wrap(0).length - (total > 0 ? note(total).length : 0);
  const shown = fitRows(rows, max - fixed, note(total).length, total);
  let text = wrap(shown);
  if (text.length > max) {
    // Even the header doesn't fit (a very wide table): show the title and the count only.
    text = `${title || '*Table*\n'}_${total} row${total === 1 ? '' : 's'} not shown (too wide for a message)_`;
    if (text.length > max) return undefined;
  }
  budget.take(text.length);
  return mrkdwnSection(text);
}

/** How many of `rows` (joined by newlines) fit in `room`, keeping `noteLength` free if any are left out. */
function fitRows(rows: string[], room: number, noteLength: number, total: number): number {
  let used = 0;
  let shown = 0;
  while (shown < rows.length) {
    const add = rows[shown].length + 1;
    const needsNote = shown + 1 < total;
    if (used + add + (needsNote ? noteLength : 0) > room) break;
    used += add;
    shown += 1;
  }
  return shown;
}

function limitRows(table: ReportTable, n: number): ReportTable {
  return table.rows.length > n ? { ...table, rows: table.rows.slice(0, n) } : table;
}

function notesBlock(notes: string[], budget: Budget): KnownBlock | undefined {
  const text = bulletList(notes, (n) => cutEscaped(n, 500), Math.min(2500, budget.left));
  if (!text) return undefined;
  budget.take(text.length);
  return mrkdwnSection(text);
}

function nextBlock(next: string[], budget: Budget): KnownBlock | undefined {
  const items = bulletList(next, (cmd) => `\`${cutEscaped(oneLine(cmd).replace(/`/g, "'"), 300)}\``, Math.min(1500, budget.left) - 20);
  if (!items) return undefined;
  const text = `*Next steps*\n${items}`;
  budget.take(text.length);
  return mrkdwnSection(text);
}

function contextBlock(context: string[], budget: Budget): KnownBlock | undefined {
  const max = Math.min(1000, budget.left);
  const texts = context.map((c) => cutEscaped(oneLine(c), 500)).filter((c) => c.length > 0);
  if (texts.length > SLACK_LIMITS.contextElements) {
    const rest = texts.splice(SLACK_LIMITS.contextElements - 1);
    texts.push(cutEscapedJoined(rest, ' · ', 500));
  }
  const elements: MrkdwnElement[] = [];
  let used = 0;
  for (const t of texts) {
    if (used + t.length > max) break;
    used += t.length;
    elements.push({ type: 'mrkdwn', text: t });
  }
  if (!elements.length) return undefined;
  budget.take(used);
  return { type: 'context', elements };
}

function mrkdwnSection(text: string): KnownBlock {
  return { type: 'section', text: { type: 'mrkdwn', text } };
}

/** "• a\n• b", cut to `max` chars with a count of the items left out. */
function bulletList(items: string[], format: (s: string) => string, max: number): string {
  const out: string[] = [];
  let length = 0;
  for (let i = 0; i < items.length; i++) {
    const line = `• ${format(items[i])}`;
    const left = items.length - i - 1;
    const more = left > 0 ? `\n_…and ${left} more_`.length : 0;
    if (length + line.length + 1 + more > max) {
      const omitted = items.length - i;
      const tail = `_…and ${omitted} more_`;
      if (length + tail.length + 1 <= max) out.push(tail);
      break;
    }
    out.push(line);
    length += line.length + 1;
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------
// Text fallback

function fallbackText(report: NormalReport): string {
  const head = cutEscaped([
    report.title || 'etcd-medic',
    ...(report.verdict ? [`${LEVEL_WORD[report.verdict.level]}: ${report.verdict.text}`] : []),
    ...report.fields.map((f) => `${f.label}: ${f.value}`),
  ].join('\n'), 6000);
  const tail = cutEscaped([
    ...report.notes.map((n) => `- ${n}`),
    ...(report.next.length ? [`Next: ${report.next.join(' | ')}`] : []),
    ...(report.context.length ? [report.context.join(' · ')] : []),
  ].join('\n'), 6000);
  // Tables get what the head and tail leave of the 40,000.
  let room = SLACK_LIMITS.messageText - head.length - tail.length - 2;
  const tables: string[] = [];
  for (const t of report.tables) {
    const text = plainTable(t, room - 1);
    if (!text) break;
    tables.push(text);
    room -= text.length + 1;
  }
  return [head, ...tables, tail].filter((p) => p.length > 0).join('\n');
}

/** A table as escaped, padded plain text within `room` chars, or '' if nothing fits. */
function plainTable(table: ReportTable, room: number): string {
  const total = table.rows.length;
  const note = (n: number) => `\n…${n} more row${n === 1 ? '' : 's'} (${total} in all)`;
  const { head, rows } = tableLines(limitRows(table, Math.ceil(room / 2)), { maxCell: 200, maxLine: 2000, noBackticks: false });
  const top = [...(table.title ? [cutEscaped(oneLine(table.title), 200)] : []), ...head.map(escapeMrkdwn)].join('\n');
  const escaped = rows.map(escapeMrkdwn);
  const shown = fitRows(escaped, room - top.length, note(total).length, total);
  const text = [top, ...escaped.slice(0, shown)].filter((l) => l.length > 0).join('\n')
    + (shown < total ? note(total - shown) : '');
  return text.length <= room ? text : '';
}

// ---------------------------------------------------------------------------------------
// Tables

/** Padded lines, unescaped: `head` is the header and a separator (empty without columns). */
function tableLines(
  table: ReportTable,
  opts: { maxCell: number; maxLine: number; noBackticks: boolean },
): { head: string[]; rows: string[] } {
  const cell = (v: unknown) => {
    let s = oneLine(toText(v));
    // A backtick would end the ``` block early.
    if (opts.noBackticks) s = s.replace(/`/g, "'");
    return cutPlain(s, opts.maxCell);
  };
  const header = table.columns.map(cell);
  const rows = table.rows.map((r) => r.map(cell));
  // Loops, not Math.max(...rows): spreading a huge table overflows the call stack.
  const widths = header.map((h) => h.length);
  for (const r of rows) {
    r.forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 0, c.length);
    });
  }
  const line = (cells: string[]) =>
    cutPlain(widths.map((w, i) => (cells[i] ?? '').padEnd(w)).join('  ').trimEnd(), opts.maxLine);
  const head = header.length
    ? [line(header), cutPlain(widths.map((w) => '-'.repeat(Math.max(w, 1))).join('  '), opts.maxLine)]
    : [];
  const body = rows.length ? rows.map(line) : [header.length ? '(no rows)' : '(empty table)'];
  return { head, rows: body };
}

// ---------------------------------------------------------------------------------------
// Input hygiene: a Report travels through Redis as JSON and may not match its type.

interface NormalReport {
  title: string;
  verdict?: { level: Level; text: string };
  fields: Array<{ label: string; value: string }>;
  tables: ReportTable[];
  notes: string[];
  next: string[];
  context: string[];
  actions?: { planId: string; buttons: Array<'approve' | 'reject' | 'cancel'> };
}

function normalise(r: unknown): NormalReport {
  const o = isObject(r) ? r : {};
  const v = isObject(o.verdict) ? o.verdict : undefined;
  const level = v && typeof v.level === 'string' && v.level in LEVEL_EMOJI ? (v.level as Level) : 'info';
  return {
    title: toText(o.title),
    verdict: v ? { level, text: toText(v.text) } : undefined,
    fields: list(o.fields).filter(isObject).map((f) => ({ label: toText(f.label), value: toText(f.value) })),
    tables: list(o.tables).filter(isObject).map((t) => ({
      title: t.title === undefined ? undefined : toText(t.title),
      columns: list(t.columns).map(toText),
      rows: list(t.rows).map((row) => (Array.isArray(row) ? row.map(toText) : [toText(row)])),
    })),
    notes: list(o.notes).map(toText).filter((s) => s.length > 0),
    next: list(o.next).map(toText).filter((s) => s.length > 0),
    context: list(o.context).map(toText).filter((s) => s.length > 0),
    actions: isObject(o.actions) && typeof o.actions.planId === 'string'
      ? { planId: o.actions.planId, buttons: list(o.actions.buttons).filter((b): b is 'approve' | 'reject' | 'cancel' => b === 'approve' || b === 'reject' || b === 'cancel') }
      : undefined,
  };
}

/** action_id of plan buttons; the value carries only the plan id, never the plan. */
export const PLAN_ACTION_IDS = { approve: 'medic_approve', reject: 'medic_reject', cancel: 'medic_cancel' } as const;

function actionsBlock(a: { planId: string; buttons: Array<'approve' | 'reject' | 'cancel'> }): KnownBlock | undefined {
  if (!a.buttons.length) return undefined;
  const label = { approve: 'Approve', reject: 'Reject', cancel: 'Cancel' };
  return {
    type: 'actions',
    block_id: `plan-${a.planId}`.slice(0, 255),
    elements: a.buttons.map((b) => ({
      type: 'button' as const,
      action_id: PLAN_ACTION_IDS[b],
      text: { type: 'plain_text' as const, text: label[b] },
      value: a.planId,
      ...(b === 'approve' ? { style: 'primary' as const } : b === 'reject' ? { style: 'danger' as const } : {}),
    })),
  } as KnownBlock;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function list(x: unknown): unknown[] {
  return Array.isArray(x) ? x : [];
}

function toText(x: unknown): string {
  if (typeof x === 'string') return x;
  if (x === undefined || x === null) return '';
  if (typeof x === 'number' || typeof x === 'boolean' || typeof x === 'bigint') return String(x);
  if (x instanceof Error) return x.message;
  try {
    return JSON.stringify(x) ?? String(x);
  } catch {
    return '?';
  }
}

function oneLine(s: string): string {
  return s.replace(/[\r\n\t]+/g, ' ');
}

/** Cuts plain text to `max` chars (code points kept whole), marking the cut with "…". */
function cutPlain(s: string, max: number): string {
  if (s.length <= max) return s;
  if (max <= 0) return '';
  let out = '';
  for (const ch of s) {
    if (out.length + ch.length > max - 1) break;
    out += ch;
  }
  return `${out}…`;
}

/** Escapes, then cuts to `max` chars without splitting an entity such as "&amp;". */
function cutEscaped(s: string, max: number): string {
  const escaped = escapeMrkdwn(s);
  if (escaped.length <= max) return escaped;
  if (max <= 0) return '';
  let out = '';
  for (const ch of s) {
    const e = escapeMrkdwn(ch);
    if (out.length + e.length > max - 1) break;
    out += e;
  }
  return `${out}…`;
}

function cutEscapedJoined(items: string[], sep: string, max: number): string {
  // Items are already escaped: cut on the joined string, never inside an entity.
  const joined = items.join(sep);
  if (joined.length <= max) return joined;
  const cut = joined.slice(0, max - 1).replace(/&[a-z]{0,3}$/, '');
  return `${cut}…`;
}

class Budget {
  constructor(private remaining: number) {}
  get left(): number {
    return Math.max(0, this.remaining);
  }
  take(n: number): void {
    this.remaining -= n;
  }
}
