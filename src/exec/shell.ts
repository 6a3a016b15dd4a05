/**
 * Remote shell commands built only from fixed templates.
 *
 * Every remote command runs as root on an etcd node, so a value typed in chat must
 * never become shell syntax. `sh` is the only way to make a `RemoteCommand`: the
 * template's literal parts are fixed in source code and every interpolation is
 * single-quoted. `exec` accepts nothing else, at compile time (the brand) and at run
 * time (the registry below), so a raw string can't reach a node.
 */
import { MedicError } from '../engine/errors';

declare const remoteCommandBrand: unique symbol;

/** A command line safe to hand to a remote shell. Create it with `sh`. */
export interface RemoteCommand {
  readonly text: string;
  readonly [remoteCommandBrand]: true;
}

/** A value `sh` accepts: strings and numbers are quoted, arrays become quoted words, commands nest as-is. */
export type ShellValue = string | number | RemoteCommand | readonly (string | number)[];

const issued = new WeakSet<object>();

/** POSIX single-quote quoting: the result is one shell word that means exactly `s`. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Tagged template: sh`cat -- ${path}` quotes every interpolation.
 * Rejects NUL (can't be passed through exec) and line breaks (would end the command
 * in logs and in sshd's `sh -c`, and no legitimate argument has one).
 */
export function sh(strings: TemplateStringsArray, ...values: ShellValue[]): RemoteCommand {
  // A real template literal carries `raw`; sh(['rm -rf ' + x]) does not.
  if (!Array.isArray((strings as { raw?: unknown }).raw)) {
    throw new MedicError('INTERNAL', 'sh must be used as a tagged template (sh`...`)');
  }
  let text = strings[0] ?? '';
  values.forEach((v, i) => {
    text += render(v) + (strings[i + 1] ?? '');
  });
  const cmd = Object.freeze({ text }) as RemoteCommand;
  issued.add(cmd);
  return cmd;
}

/** True only for commands made by `sh` (a structural look-alike is refused). */
export function isRemoteCommand(v: unknown): v is RemoteCommand {
  return typeof v === 'object' && v !== null && issued.has(v);
}

function render(v: ShellValue): string {
  if (isRemoteCommand(v)) return v.text;
  if (Array.isArray(v)) return v.map((x) => quoteOne(x)).join(' ');
  return quoteOne(v as string | number);
}

function quoteOne(v: string | number): string {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new MedicError('BAD_INPUT', `not a finite number for a shell argument: ${v}`);
    return shq(String(v));
  }
  if (typeof v !== 'string') throw new MedicError('BAD_INPUT', `unsupported shell argument type: ${typeof v}`);
  if (/[\0\r\n]/.test(v)) {
    throw new MedicError('BAD_INPUT', `shell argument contains NUL or a line break: ${JSON.stringify(v.slice(0, 80))}`);
  }
  return shq(v);
}
