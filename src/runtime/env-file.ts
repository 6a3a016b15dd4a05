/**
 * etcd's configuration as an environment file (Debian's /etc/default/etcd, read by the
 * unit's EnvironmentFile= and sourced by the SysV script): `ETCD_NAME=value` lines,
 * `#`/`;` comments, values optionally in double or single quotes. Edited one variable at
 * a time; every line we don't change stays byte for byte (comments are the admin's notes).
 */
import { MedicError } from '../engine/errors';
import type { EtcdConfigDoc } from './types';

const FLAG_NAME = /^--[a-z0-9][a-z0-9-]*$/;
/** [indent][export ]KEY=value, as systemd's and the shell's parsers both read it. */
const ASSIGNMENT = /^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)=(.*)$/;
/** Values that mean the same to systemd and to sh without quotes. */
const PLAIN = /^[A-Za-z0-9_@%+=:,./-]+$/;

type Quote = '"' | "'" | '';

interface Line {
  raw: string;
  key?: string;
  value?: string;
  quote?: Quote;
}

/** --initial-cluster-state -> ETCD_INITIAL_CLUSTER_STATE */
export function envName(flag: string): string {
  if (!FLAG_NAME.test(flag)) throw new MedicError('BAD_INPUT', `not an etcd flag name: ${JSON.stringify(flag)}`);
  return `ETCD_${flag.slice(2).toUpperCase().replace(/-/g, '_')}`;
}

export class EnvFileConfig implements EtcdConfigDoc {
  private constructor(private lines: Line[]) {}

  static parse(text: string, source = 'etcd environment file'): EnvFileConfig {
    return new EnvFileConfig(text.split('\n').map((raw, i) => parseLine(raw, `${source} line ${i + 1}`)));
  }

  flag(name: string): string | undefined {
    const hits = this.indexesOf(name);
    if (hits.length > 1) throw duplicate(name, hits.length);
    return hits.length ? this.lines[hits[0]].value : undefined;
  }

  /** A bare flag becomes KEY=true (etcd reads boolean flags from the environment that way). */
  set(name: string, value?: string): this {
    const v = value ?? 'true';
    if (/[\n\r\0]/.test(v)) throw new MedicError('BAD_INPUT', `flag ${name}: value contains a line break or NUL`);
    const [at, ...more] = this.indexesOf(name);
    if (more.length) throw duplicate(name, more.length + 1);
    if (at === undefined) this.append(render('', envName(name), v, ''));
    else this.lines[at] = renderOver(this.lines[at], v);
    return this;
  }

  remove(name: string): this {
    const drop = new Set(this.indexesOf(name));
    this.lines = this.lines.filter((_, i) => !drop.has(i));
    return this;
  }

  toString(): string {
    return this.lines.map((l) => l.raw).join('\n');
  }

  private indexesOf(name: string): number[] {
    const key = envName(name);
    return this.lines.flatMap((l, i) => (l.key === key ? [i] : []));
  }

  /** Before the final newline, so the file keeps ending with one. */
  private append(line: Line): void {
    const last = this.lines[this.lines.length - 1];
    if (last?.raw === '') this.lines.splice(this.lines.length - 1, 0, line);
    else this.lines.push(line, { raw: '' });
  }
}

function duplicate(name: string, n: number): MedicError {
  return new MedicError('BAD_INPUT', `${envName(name)} (${name}) is set ${n} times in the environment file: fix it by hand first`);
}

function parseLine(raw: string, where: string): Line {
  const body = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
  const t = body.trim();
  if (t === '' || t.startsWith('#') || t.startsWith(';')) return { raw };
  const m = ASSIGNMENT.exec(body);
  // Anything else (a shell `if`, a typo) is kept as it is and never edited.
  if (!m) return { raw };
  return { raw, key: m[2], ...unquote(m[3].trim(), where) };
}

function unquote(v: string, where: string): { value: string; quote: Quote } {
  const q = v[0];
  if (q === '"' || q === "'") {
    const inner = v.slice(1, -1);
    const closed = v.length >= 2 && v[v.length - 1] === q && (q === '"' ? /^(?:[^"\\]|\\.)*$/.test(inner) : !inner.includes(q));
    if (!closed) throw unsupported(where, 'a quoted value that does not end on its line, or text after the closing quote');
    return { value: q === '"' ? inner.replace(/\\(["\\`$])/g, '$1') : inner, quote: q };
  }
  if (/[\\"'`$]/.test(v)) throw unsupported(where, 'an unquoted value with \\, quotes, ` or $');
  return { value: v, quote: '' };
}

function unsupported(where: string, what: string): MedicError {
  return new MedicError('REMOTE_FAILED', `${where}: ${what}: the bot won't guess what it means; rewrite it in KEY="value" form by hand`);
}

/** Keeps the line's indentation, `export`, and quoting style where the value allows. */
function renderOver(old: Line, value: string): Line {
  const m = ASSIGNMENT.exec(old.raw.endsWith('\r') ? old.raw.slice(0, -1) : old.raw) as RegExpExecArray;
  const line = render(m[1], m[2], value, old.quote ?? '');
  return old.raw.endsWith('\r') ? { ...line, raw: `${line.raw}\r` } : line;
}

function chooseQuote(style: Quote, value: string): Quote {
  if (style === "'" && !value.includes("'")) return "'";
  if (style === '' && PLAIN.test(value)) return '';
  return '"';
}

function render(prefix: string, key: string, value: string, style: Quote): Line {
  const quote = chooseQuote(style, value);
  const text = quote === '"' ? `"${value.replace(/["\\`$]/g, '\\$&')}"` : `${quote}${value}${quote}`;
  return { raw: `${prefix}${key}=${text}`, key, value, quote };
}
