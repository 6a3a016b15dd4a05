/**
 * Secrets out of text before it is kept anywhere. The audit log outlives the incident and
 * is read by people who never had the node's keys, so command output (which may print a
 * key file, a token in a URL, an `Authorization:` header) is scrubbed before it is stored
 * and before it is hashed: a secret that reached the log could not be removed later
 * without breaking the chain.
 */

/** Longest excerpt kept by default, marker included. */
export const DEFAULT_EXCERPT_CHARS = 2000;

export interface RedactOptions {
  /**
   * Longest result, including the "…(N more chars)" marker. The start is kept: it says
   * what ran; failures also put their reason in the exit status the step records.
   * @defaultValue DEFAULT_EXCERPT_CHARS (2000)
   */
  maxChars?: number;
}

const HIDDEN = '[REDACTED]';

/** Each rule replaces one kind of secret; order matters (whole PEM blocks go first). */
const RULES: Array<[RegExp, string | ((...m: string[]) => string)]> = [
  // A PEM private key block of any flavour (RSA, EC, OPENSSH, ENCRYPTED, PKCS#8).
  [/-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?-----END \1PRIVATE KEY-----/g, '[REDACTED PRIVATE KEY]'],
  // Output cut off inside a key block (bounded remote output) has no END line: drop the rest.
  [/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*$/g, '[REDACTED PRIVATE KEY]'],
  // Slack bot/user/app/refresh tokens and incoming-webhook URLs.
  [/\b(xox[abposre]|xapp)-[A-Za-z0-9-]+/g, (_m, kind) => `${kind}-${HIDDEN}`],
  [/hooks\.slack\.com\/services\/[A-Za-z0-9/_-]+/g, `hooks.slack.com/services/${HIDDEN}`],
  // "Authorization: Bearer …", "proxy-authorization=…": the whole value up to the end of the line.
  [/\b((?:proxy-)?authorization["']?\s*[:=]\s*)[^\r\n]+/gi, `$1${HIDDEN}`],
  [/\bBearer\s+[A-Za-z0-9._~+/-]+=*/g, `Bearer ${HIDDEN}`],
  // password=…, "token": "…", --client-secret …, PGPASSWORD=…, api_key: …
  [
    /\b([\w.-]*(?:password|passwd|pwd|token|secret|api[_-]?key)[\w.-]*["']?)(\s*[=:]\s*|\s+(?=["']))("[^"]*"|'[^']*'|[^\s"',;&]+)/gi,
    (_m, name, sep) => `${name}${sep}${HIDDEN}`,
  ],
  // --password hunter2, --client-secret abc (flag and value apart)
  [/(--[\w-]*(?:password|token|secret)[\w-]*\s+)(?!-)\S+/gi, `$1${HIDDEN}`],
  // etcdctl --user name:password
  [/(--user[=\s]+[^:\s]+:)\S+/g, `$1${HIDDEN}`],
  // Credentials in URLs (redis://:pw@host, https://user:pw@host).
  [/\b([a-z][a-z0-9+.-]*:\/\/[^\s:@/]*:)[^\s@/]+@/gi, '$1***@'],
];

/**
 * `text` with private keys, Slack tokens, `password=`/`token=`/`secret=` values,
 * Authorization headers and URL credentials replaced, then cut to `maxChars` with a
 * "…(N more chars)" marker. Redaction runs before the cut so a secret split by the cut is
 * still recognised.
 */
export function redact(text: string, opts: RedactOptions = {}): string {
  let out = text;
  for (const [re, by] of RULES) out = out.replace(re, by as string);
  return bound(out, opts.maxChars ?? DEFAULT_EXCERPT_CHARS);
}

function bound(text: string, max: number): string {
  if (text.length <= max) return text;
  // The marker's own length depends on N; reserve for the widest N possible.
  const reserve = `…(${text.length} more chars)`.length;
  let keep = Math.max(0, max - reserve);
  // Don't split a surrogate pair: half an emoji becomes U+FFFD on the way through UTF-8.
  if (keep > 0 && /[\uD800-\uDBFF]/.test(text[keep - 1])) keep -= 1;
  return `${text.slice(0, keep)}…(${text.length - keep} more chars)`;
}

/** Keys whose string values are secrets whatever they look like (`{ password: 'hunter2' }`). */
const SECRET_KEY = /passw(or)?d|^pass$|secret|token$|private.?key|authorization|credential/i;

/**
 * A JSON-ready deep copy of `value` with every string redacted (and values of secret-named
 * keys hidden whole). Also settles what JSON would change later (Dates become ISO strings,
 * undefined fields vanish, non-finite numbers become null), so the hash is computed over
 * exactly what is stored and read back.
 */
export function redactDeep(value: unknown, opts: RedactOptions = {}, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return redact(value, opts);
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'boolean' || value === null) return value;
  if (typeof value === 'bigint') return value.toString();
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return undefined;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (Buffer.isBuffer(value)) return redact(value.toString('utf8'), opts);
  if (value instanceof Error) return redactDeep({ name: value.name, message: value.message, code: (value as { code?: unknown }).code }, opts, seen);
  const obj = value as object;
  if (seen.has(obj)) return '[circular]';
  seen.add(obj);
  try {
    if (Array.isArray(obj)) return obj.map((v) => redactDeep(v, opts, seen) ?? null);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(obj)) {
      const r = typeof v === 'string' && SECRET_KEY.test(k) && v !== '' ? HIDDEN : redactDeep(v, opts, seen);
      if (r !== undefined) out[k] = r;
    }
    return out;
  } finally {
    seen.delete(obj);
  }
}
