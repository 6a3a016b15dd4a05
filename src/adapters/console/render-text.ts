import type { Level, Report, ReportTable } from '../../engine/report';

const MARK: Record<Level, string> = { ok: '[ok]', warn: '[!!]', critical: '[XX]', info: '[i]' };

export function renderTable(t: ReportTable): string[] {
  const widths = t.columns.map((c, i) => Math.max(c.length, ...t.rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (c ?? '').padEnd(widths[i])).join('  ').trimEnd();
  return [line(t.columns), ...t.rows.map(line)];
}

/** A Report as plain text for a terminal (no colours: it also goes to logs and pipes). */
export function renderText(r: Report): string {
  const out: string[] = [`== ${r.title} ==`];
  if (r.verdict) out.push(`${MARK[r.verdict.level]} ${r.verdict.text}`);
  if (r.fields?.length) out.push(r.fields.map((f) => `${f.label}: ${f.value}`).join(' | '));
  for (const t of r.tables ?? []) {
    out.push('');
    if (t.title) out.push(`${t.title}:`);
    out.push(...renderTable(t));
  }
  if (r.notes?.length) out.push('', ...r.notes.map((n) => `- ${n}`));
  if (r.next?.length) out.push('', 'Next:', ...r.next.map((n) => `  ${n}`));
  if (r.actions) {
    out.push('', `Decide (typed by another user where approval is needed): ${r.actions.buttons.map((b) => `${b} ${r.actions!.planId}`).join(' | ')}`);
  }
  if (r.context?.length) out.push('', `(${r.context.join(' · ')})`);
  return out.join('\n');
}
