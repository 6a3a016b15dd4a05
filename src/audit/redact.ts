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

/** A quoted string, escapes included (a JSON value that holds `\"` is one value). */
const QUOTED = String.raw`"(?:[^"\\\r\n]|\\.)*"|'(?:[^'\\\r\n]|\\.)*'`;
/** A string quoted inside a JSON string (`\"…\"`), as etcd's request descriptors and nested JSON have them. */
const ESC_QUOTED = String.raw`\\"(?:[^"\\\r\n]|\\[^"\r\n])*\\"`;

/** Names whose values are secrets whatever they look like: password=, "token":, PGPASSWORD=, api_key: … */
const SECRET_NAME = String.raw`[\w.-]*(?:password|passwd|pwd|passphrase|token|secret|api[_-]?key)[\w.-]*`;
/**
 * Named like a secret, but not one: etcd's --initial-cluster-token only keeps two clusters
 * bootstrapped side by side apart (a diagnosis of a cluster-ID mismatch needs to see it).
 */
const NOT_SECRET_NAME = /^(?:\\?["'])?(?:etcd[_-])?initial[_-]cluster[_-]token(?:\\?["'])?$/i;

/**
 * Fields named `key` (or `client-key`, `private_key`, `privateKey`, `client-key-data`):
 * hidden unless the value is a file path. `--key-file`, `--peer-key-file` and `key =
 * /etc/kubernetes/pki/etcd/peer.key` are what etcd logs at every start and say which
 * file is in use; an inline value is the key itself.
 */
const KEY_NAME = String.raw`(?:(?:[A-Za-z0-9]+[_-])*(?:key|KEY|Key)(?:[_-](?:data|DATA))?|[a-z][a-z0-9]*Key(?:Data)?)`;
const PATH_LIKE = /^(?:\/|\.{1,2}\/|~\/|file:)|\.(?:key|pem|crt|cert|der|p8|p12|pfx|jks)$/i;
/** Values that hold nothing inline: a YAML block indicator (its lines are checked by the PEM rules), null, a variable, our own marker. */
const NOTHING_INLINE = /^(?:[|>][-+]?|null|~|true|false|\$\{?[A-Za-z_]\w*\}?|\[REDACTED.*)$/;

/** The quote a value starts with: `\"` (inside a JSON string), `"`, `'`, or none. */
function quoteOf(value: string): string {
  return /^\\"/.test(value) ? '\\"' : /^["']/.test(value) ? value[0] : '';
}

/** `value` hidden; a quoted value keeps its quotes, so a JSON line still parses. */
function hide(value: string, keepQuotes: boolean): string {
  const q = quoteOf(value);
  // Escaped quotes always stay: dropping them would end the JSON string they sit in.
  return (keepQuotes || q === '\\"') && q ? `${q}${HIDDEN}${q}` : HIDDEN;
}

function unquote(value: string): string {
  const q = quoteOf(value);
  return q ? value.slice(q.length, -q.length) : value;
}

function keyValue(value: string, keepQuotes: boolean): string {
  const inner = unquote(value).trim();
  if (inner === '' || PATH_LIKE.test(inner) || NOTHING_INLINE.test(inner)) return value;
  return hide(value, keepQuotes);
}

type Rule = [RegExp, string | ((...m: string[]) => string)];

/**
 * Each rule replaces one kind of secret; order matters (whole PEM blocks go first). Rules
 * stay within one line (separators are spaces and tabs, not newlines): log text is
 * redacted joined, and a line ending in "token:" must not take the next line's first word.
 */
const RULES: Rule[] = [
  // A PEM private key block of any flavour (RSA, EC, OPENSSH, ENCRYPTED, PKCS#8), across lines.
  [/-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?-----END \1PRIVATE KEY-----/g, '[REDACTED PRIVATE KEY]'],
  // Output cut off inside a key block (bounded remote output) has no END line: drop the rest.
  [/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*$/g, '[REDACTED PRIVATE KEY]'],
  // Slack bot/user/app/refresh tokens and incoming-webhook URLs.
  [/\b(xox[abposre]|xapp)-[A-Za-z0-9-]+/g, (_m, kind) => `${kind}-${HIDDEN}`],
  [/hooks\.slack\.com\/services\/[A-Za-z0-9/_-]+/g, `hooks.slack.com/services/${HIDDEN}`],
  // GitHub tokens: personal (ghp_), OAuth (gho_), user-to-server (ghu_), server (ghs_), refresh (ghr_), fine-grained.
  [/\b(gh[pousr]_)[A-Za-z0-9]{20,}/g, `$1${HIDDEN}`],
  [/\bgithub_pat_[A-Za-z0-9_]{20,}/g, `github_pat_${HIDDEN}`],
  // Credentials in URLs (redis://:pw@host, https://user:pw@host), before the name=value
  // rules ("x-access-token:…@github.com" would otherwise lose the host too).
  [/\b([a-z][a-z0-9+.-]*:\/\/[^\s:@/]*:)[^\s@/]+@/gi, '$1***@'],
  // "Authorization: Bearer …", "Cookie: a=b; c=d", "Set-Cookie: …": the whole value, to the
  // end of the line; a quoted JSON value only to its closing quote.
  [
    new RegExp(String.raw`\b((?:proxy-)?authorization|(?:set-)?cookie)(["']?)([ \t]*[:=][ \t]*)(${QUOTED}|[^\r\n]+)`, 'gi'),
    (_m, name, q, sep, value) => `${name}${q}${sep}${q && /^["']/.test(value) ? hide(value, true) : HIDDEN}`,
  ],
  [/\bBearer\s+[A-Za-z0-9._~+/-]+=*/g, `Bearer ${HIDDEN}`],
  // password=…, "token": "…", --client-secret=…, PGPASSWORD=…, passphrase: …, api_key: …
  [
    new RegExp(String.raw`\b(${SECRET_NAME}(?:\\?["'])?)([ \t]*[=:][ \t]*|[ \t]+(?=["']))(?!\*\*\*@)(${ESC_QUOTED}|${QUOTED}|[^\s"',;&\\]+)`, 'gi'),
    (m, name, sep, value) => (NOT_SECRET_NAME.test(name) ? m : `${name}${sep}${hide(value, /["']$/.test(name))}`),
  ],
  // --password hunter2, --client-secret abc, --passphrase x (flag and value apart)
  [
    /(--([\w-]*(?:password|passphrase|token|secret)[\w-]*)[ \t]+)(?!-)\S+/gi,
    (m, flag, name) => (NOT_SECRET_NAME.test(name) ? m : `${flag}${HIDDEN}`),
  ],
  // openssl -passin pass:…, -passout pass:… (env:, file:, fd: and stdin name no secret)
  [new RegExp(String.raw`(-pass(?:in|out)?[ \t]+["']?pass:)(${QUOTED}|[^\s"']+)`, 'g'), `$1${HIDDEN}`],
  // "key": "…", 'private_key': '…' (JSON, quoted YAML, JSON inside a JSON string)
  [
    new RegExp(String.raw`(\\?["'])(${KEY_NAME})\1([ \t]*:[ \t]*)(${ESC_QUOTED}|${QUOTED}|[^\s,}\]\\]+)`, 'g'),
    (_m, q, name, sep, value) => `${q}${name}${q}${sep}${keyValue(value, true)}`,
  ],
  // key: …, key = …, KEY=…, --key=…, --key … (YAML, config text, environment, flags).
  // etcd's request descriptors (`put:<key:\"/registry/…\" value_size:…>`) name etcd keys,
  // never values: a \"-quoted value after a bare name is left alone.
  [
    new RegExp(String.raw`(?<![\w.\-"'\\/])(-{1,2})?(${KEY_NAME})(?:([ \t]*[:=][ \t]*)|([ \t]+))(${QUOTED}|[^\s,;&"'}\]\\]+)`, 'g'),
    (m, dashes, name, sep, space, value) => {
      // "key value" is a field only as a flag (--key value); elsewhere it is prose.
      if (sep === undefined && (!dashes || value.startsWith('-'))) return m;
      return `${dashes ?? ''}${name}${sep ?? space}${keyValue(value, false)}`;
    },
  ],
  // etcdctl --user name:password
  [/(--user[= \t]+[^:\s]+:)\S+/g, `$1${HIDDEN}`],
];

/**
 * `text` with private keys, Slack and GitHub tokens, `password=`/`passphrase=`/`token=`/
 * `secret=` values, inline `key` values (not key file paths), openssl `pass:` arguments,
 * Authorization and Cookie headers and URL credentials replaced, then cut to `maxChars`
 * with a "…(N more chars)" marker. Redaction runs before the cut so a secret split by the
 * cut is still recognised.
 */
export function redact(text: string, opts: RedactOptions = {}): string {
  let out = text;
  for (const [re, by] of RULES) out = out.replace(re, by as string);
  return bound(out, opts.maxChars ?? DEFAULT_EXCERPT_CHARS);
}

/**
 * Lines of a log with secrets removed, redacted as one text and split afterwards: a PEM
 * key block spans lines, and line by line only its BEGIN line would be recognised (the
 * base64 lines in between carry no marker). Not bounded: callers cut lines to fit.
 * A block whose END is missing (the log ends inside it) takes the rest of the text.
 */
export function redactLines(lines: readonly string[]): string[] {
  if (!lines.length) return [];
  return redact(lines.join('\n'), { maxChars: Infinity }).split('\n');
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
const SECRET_KEY = /passw(or)?d|passphrase|^pass$|secret|token$|private.?key|authorization|cookie|credential/i;

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
