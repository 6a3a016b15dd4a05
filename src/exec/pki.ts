/**
 * etcd's PKI on a node, in kubeadm's layout (`<pki>` = /etc/kubernetes/pki/etcd by default):
 * ca.crt/key, server.crt/key, peer.crt/key, healthcheck-client.crt/key.
 *
 * Adding a member needs the cluster's etcd CA on the new node and the three certificates
 * kubeadm would make. Real nodes have openssl but no etcdctl, so certificates are generated
 * on the node with openssl (a private key never leaves its node; the CA key is the one
 * exception: it is copied between nodes, as kubeadm's `--upload-certs` does). Certificates
 * are public: they are read back and judged on the bot with node:crypto, which works the
 * same whatever openssl version the node has (`x509 -ext` needs openssl 3.0).
 */
import { createHash, createPrivateKey, createPublicKey, KeyObject, X509Certificate } from 'node:crypto';
import net from 'node:net';
import { posix } from 'node:path';
import { MedicError } from '../engine/errors';
import { sh } from './shell';
import type { SshSession } from './ssh';

export const PKI_FILES = [
  'ca.crt', 'ca.key', 'server.crt', 'server.key', 'peer.crt', 'peer.key', 'healthcheck-client.crt', 'healthcheck-client.key',
] as const;
export type PkiFile = (typeof PKI_FILES)[number];
export const LEAF_CERTS = ['server', 'peer', 'healthcheck-client'] as const;
export type LeafCert = (typeof LEAF_CERTS)[number];
export type PkiCert = 'ca' | LeafCert;

/** The node a certificate is for: its Kubernetes node name and the IP etcd advertises. */
export interface PkiNode { name: string; ip: string }

export interface PkiFileState {
  exists: boolean;
  /** Permission bits, e.g. 0o600. */
  mode?: number;
  size?: number;
  /** Hex sha256 of the content (of a key too: a digest reveals nothing of it). */
  sha256?: string;
}

/** What a certificate says, as far as etcd cares. */
export interface CertState {
  /** Set when ca.crt/<name>.crt could not be parsed; the other fields are then empty. */
  parseError?: string;
  commonName?: string;
  organizations: string[];
  dnsNames: string[];
  /** Canonical text: IPv4 dotted, IPv6 as 8 lowercase unabbreviated groups. */
  ipAddresses: string[];
  /** 'serverAuth', 'clientAuth', or the OID of any other extended key usage. */
  extKeyUsage: string[];
  isCa: boolean;
  /** ISO time. */
  notAfter: string;
  /** 'ec', 'rsa', … (node:crypto's asymmetricKeyType). */
  keyAlgorithm?: string;
  /** Whether <name>.key holds this certificate's private key; undefined when the key is missing. */
  keyMatches?: boolean;
  keyError?: string;
  /** Leaf certificates: `openssl verify -CAfile ca.crt` passed; undefined when ca.crt is missing. */
  signedByCa?: boolean;
  verifyError?: string;
}

/** One node's etcd PKI, as `inspectPki` found it. Plain data: it goes into plans and reports. */
export interface PkiState {
  node: string;
  pkiDir: string;
  dirExists: boolean;
  files: Record<PkiFile, PkiFileState>;
  certs: Partial<Record<PkiCert, CertState>>;
}

export type PkiAction =
  | { kind: 'copy-ca'; files: ['ca.crt', 'ca.key']; reason: string }
  | { kind: 'generate'; cert: LeafCert; reason: string };

export interface PlanPkiOptions {
  /**
   * Hex sha256 of the cluster's ca.crt (a healthy member's `files['ca.crt'].sha256`). A node
   * whose CA differs can't join: its peers would reject its certificates.
   * @defaultValue undefined: any CA whose key matches its certificate is accepted
   */
  clusterCaSha256?: string;
  /** When certificates are judged, in ms since the epoch. @defaultValue Date.now() */
  now?: number;
  /** A certificate expiring within this many ms counts as expired. @defaultValue 24 hours */
  minValidityMs?: number;
}

export interface PkiExecOptions {
  /** Deadline of each remote command. @defaultValue the session's commandTimeoutMs */
  timeoutMs?: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** A certificate or key is a few KiB; anything bigger is not one. */
const MAX_PKI_FILE = 64 * 1024;
const MAX_INSPECT_OUTPUT = 256 * 1024;
const MARK = 'medic-pki';
const NODE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const EKU_NAMES: Record<string, string> = { '1.3.6.1.5.5.7.3.1': 'serverAuth', '1.3.6.1.5.5.7.3.2': 'clientAuth' };
export const HEALTHCHECK_CN = 'kube-etcd-healthcheck-client';

// ---------------------------------------------------------------- input checks

/** Refuses anything but a DNS-label node name and a literal IP: they end up in certificates run as root. */
export function assertPkiNode(node: PkiNode): void {
  if (typeof node?.name !== 'string' || !NODE_NAME.test(node.name)) {
    throw new MedicError('BAD_INPUT', `not a valid node name for a certificate: ${JSON.stringify(String(node?.name).slice(0, 80))}`);
  }
  if (typeof node.ip !== 'string' || net.isIP(node.ip) === 0) {
    throw new MedicError('BAD_INPUT', `not an IP address for a certificate: ${JSON.stringify(String(node.ip).slice(0, 80))}`);
  }
}

function assertPkiDir(dir: string): void {
  if (typeof dir !== 'string' || !posix.isAbsolute(dir) || dir.split('/').includes('..') || /[\0\r\n]/.test(dir)) {
    throw new MedicError('BAD_INPUT', `PKI directory must be an absolute path without "..": ${JSON.stringify(String(dir).slice(0, 120))}`);
  }
}

function assertLeaf(kind: string): asserts kind is LeafCert {
  if (!(LEAF_CERTS as readonly string[]).includes(kind)) {
    throw new MedicError('BAD_INPUT', `unknown etcd certificate ${JSON.stringify(kind)} (one of ${LEAF_CERTS.join(', ')})`);
  }
}

function nodeLabel(s: SshSession): string {
  return s.target.node;
}

// ---------------------------------------------------------------- what kubeadm makes

/** What a leaf certificate must say. */
export interface CertSpec {
  subject: string;
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
  extKeyUsage: string[];
}

/** kubeadm's etcd certificates (certlist.go, getAltNames): server and peer have the same SANs. */
export function expectedCert(kind: LeafCert, node: PkiNode): CertSpec {
  if (kind === 'healthcheck-client') {
    return { subject: `/O=system:masters/CN=${HEALTHCHECK_CN}`, commonName: HEALTHCHECK_CN, dnsNames: [], ipAddresses: [], extKeyUsage: ['clientAuth'] };
  }
  return {
    subject: `/CN=${node.name}`,
    commonName: node.name,
    dnsNames: [node.name, 'localhost'],
    ipAddresses: [...new Set([node.ip, '127.0.0.1', '::1'].map(canonicalIp))],
    extKeyUsage: ['serverAuth', 'clientAuth'],
  };
}

/** Lines of the `x509 -extfile`, the same extensions the lab (and kubeadm) put on a leaf. */
function extfileLines(spec: CertSpec): string[] {
  const san = [...spec.dnsNames.map((d) => `DNS:${d}`), ...spec.ipAddresses.map((ip) => `IP:${ip}`)];
  return [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${spec.extKeyUsage.join(',')}`,
    'authorityKeyIdentifier=keyid',
    ...(san.length ? [`subjectAltName=${san.join(',')}`] : []),
  ];
}

/** One text form per address, so '::1', '0:0:0:0:0:0:0:1' and openssl's 'FE80:0:…' compare equal. */
export function canonicalIp(ip: string): string {
  if (net.isIPv4(ip)) return ip;
  if (!net.isIPv6(ip)) return ip.toLowerCase();
  let text = ip.toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1]) {
    const [a, b, c, d] = v4[1].split('.').map(Number) as [number, number, number, number];
    text = text.slice(0, -v4[1].length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((g) => parseInt(g, 16).toString(16)).join(':');
}

// ---------------------------------------------------------------- inspect

/**
 * Reads the state of the 8 files in one round trip. The script prints modes, digests,
 * certificates (public), the public half of each key (never the key) and openssl verify's
 * verdict for each leaf against ca.crt.
 */
export async function inspectPki(session: SshSession, pkiDir: string, opts: PkiExecOptions = {}): Promise<PkiState> {
  assertPkiDir(pkiDir);
  const r = await session.exec(sh`cd -- ${pkiDir} 2>/dev/null || { echo 'medic-pki nodir'; exit 0; }
for f in ca.crt ca.key server.crt server.key peer.crt peer.key healthcheck-client.crt healthcheck-client.key; do
  [ -f "$f" ] || continue
  echo "medic-pki file $f $(stat -L -c '%a %s' "$f") $(sha256sum < "$f" | cut -c1-64)"
done
for c in ca server peer healthcheck-client; do
  if [ -f "$c.crt" ]; then echo "medic-pki cert $c"; head -c 65536 "$c.crt"; echo; fi
  if [ -f "$c.key" ]; then echo "medic-pki pubkey $c"; openssl pkey -in "$c.key" -pubout -passin pass: 2>&1 | head -c 16384; echo; fi
  if [ "$c" != ca ] && [ -f "$c.crt" ] && [ -f ca.crt ]; then
    if v=$(openssl verify -CAfile ca.crt "$c.crt" 2>&1); then echo "medic-pki verify $c ok"
    else echo "medic-pki verify $c fail $(printf '%s\n' "$v" | grep -m1 '^error' | cut -c1-200)"; fi
  fi
done`, { timeoutMs: opts.timeoutMs, maxOutputBytes: MAX_INSPECT_OUTPUT });
  if (r.code !== 0 || r.truncated) {
    throw new MedicError('REMOTE_FAILED', `${nodeLabel(session)}: cannot inspect ${pkiDir}: ${r.stderr.trim() || `exit ${r.code ?? r.signal}`}`);
  }
  return parseInspection(session.target.node, pkiDir, r.stdout);
}

interface Section { kind: string; args: string[]; body: string[] }

const CERTS = ['ca', ...LEAF_CERTS] as const;

function isOneOf<T extends string>(v: string, list: readonly T[]): v is T {
  return (list as readonly string[]).includes(v);
}

function sections(stdout: string): Section[] {
  const out: Section[] = [];
  for (const line of stdout.split('\n')) {
    if (line.startsWith(`${MARK} `)) {
      const [, kind = '', ...args] = line.split(' ');
      out.push({ kind, args, body: [] });
    } else {
      out[out.length - 1]?.body.push(line);
    }
  }
  return out;
}

function parseInspection(node: string, pkiDir: string, stdout: string): PkiState {
  const files = Object.fromEntries(PKI_FILES.map((f) => [f, { exists: false }])) as Record<PkiFile, PkiFileState>;
  const pems = new Map<PkiCert, string>();
  const pubkeys = new Map<PkiCert, string>();
  const verdicts = new Map<PkiCert, { ok: boolean; error?: string }>();
  const all = sections(stdout);
  for (const s of all) {
    const arg = s.args[0] ?? '';
    if (s.kind === 'file' && isOneOf(arg, PKI_FILES)) {
      files[arg] = { exists: true, mode: parseInt(s.args[1] ?? '', 8), size: Number(s.args[2]), sha256: s.args[3] };
    }
    if (!isOneOf(arg, CERTS)) continue;
    if (s.kind === 'cert') pems.set(arg, s.body.join('\n'));
    else if (s.kind === 'pubkey') pubkeys.set(arg, s.body.join('\n'));
    else if (s.kind === 'verify') verdicts.set(arg, { ok: s.args[1] === 'ok', error: s.args.slice(2).join(' ') || undefined });
  }
  const certs: Partial<Record<PkiCert, CertState>> = {};
  for (const [name, pem] of pems) {
    certs[name] = certState(pem, pubkeys.get(name), name === 'ca' ? undefined : verdicts.get(name));
  }
  return { node, pkiDir, dirExists: !all.some((s) => s.kind === 'nodir'), files, certs };
}

function certState(pem: string, pubkeyPem: string | undefined, verdict: { ok: boolean; error?: string } | undefined): CertState {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (e) {
    return { parseError: (e as Error).message, organizations: [], dnsNames: [], ipAddresses: [], extKeyUsage: [], isCa: false, notAfter: '' };
  }
  const rdns = cert.subject.split('\n').map((l) => l.split('=')).map(([k = '', ...v]) => [k, v.join('=')] as const);
  const sans = parseSans(cert.subjectAltName);
  const state: CertState = {
    commonName: rdns.find(([k]) => k === 'CN')?.[1],
    organizations: rdns.filter(([k]) => k === 'O').map(([, v]) => v),
    dnsNames: sans.dns,
    ipAddresses: sans.ip,
    extKeyUsage: ((cert.keyUsage as string[] | undefined) ?? []).map((oid) => EKU_NAMES[oid] ?? oid),
    isCa: cert.ca,
    notAfter: new Date(cert.validTo).toISOString(),
    keyAlgorithm: cert.publicKey.asymmetricKeyType,
  };
  if (pubkeyPem !== undefined) {
    const m = keyMatch(cert.publicKey, pubkeyPem);
    state.keyMatches = m.ok;
    if (m.error) state.keyError = m.error;
  }
  if (verdict) {
    state.signedByCa = verdict.ok;
    if (!verdict.ok) state.verifyError = verdict.error ?? 'openssl verify failed';
  }
  return state;
}

function keyMatch(certKey: KeyObject, pubkeyPem: string): { ok: boolean; error?: string } {
  try {
    const pub = createPublicKey(pubkeyPem);
    return { ok: spki(pub).equals(spki(certKey)) };
  } catch {
    // openssl's error text went to the body instead of a key.
    return { ok: false, error: `unreadable key: ${pubkeyPem.trim().split('\n')[0]?.slice(0, 160) ?? ''}` };
  }
}

function spki(k: KeyObject): Buffer {
  return k.export({ type: 'spki', format: 'der' });
}

/** node:crypto's subjectAltName text: `DNS:a, IP Address:1.2.3.4` (values with ", " are JSON-quoted). */
function parseSans(text: string | undefined): { dns: string[]; ip: string[] } {
  const dns: string[] = [];
  const ip: string[] = [];
  for (const m of (text ?? '').matchAll(/(DNS|IP Address):("(?:[^"\\]|\\.)*"|[^,]*)/g)) {
    const raw = m[2] ?? '';
    const value = raw.startsWith('"') ? (JSON.parse(raw) as string) : raw.trim();
    if (m[1] === 'DNS') dns.push(value.toLowerCase());
    else ip.push(canonicalIp(value));
  }
  return { dns, ip };
}

// ---------------------------------------------------------------- plan

/**
 * What must happen for `node` to have a complete etcd PKI. Pure: the state in, actions out;
 * nothing when everything is right, so running the plan twice changes nothing the second time.
 */
export function planPki(state: PkiState, node: PkiNode, opts: PlanPkiOptions = {}): PkiAction[] {
  assertPkiNode(node);
  const actions: PkiAction[] = [];
  const caProblem = caReason(state, opts);
  if (caProblem) actions.push({ kind: 'copy-ca', files: ['ca.crt', 'ca.key'], reason: caProblem });
  const caCrtReplaced = caProblem !== undefined && !(opts.clusterCaSha256 && state.files['ca.crt'].sha256 === opts.clusterCaSha256);
  for (const cert of LEAF_CERTS) {
    const reasons = leafReasons(state, cert, node, opts, caCrtReplaced);
    if (reasons.length) actions.push({ kind: 'generate', cert, reason: reasons.join('; ') });
  }
  return actions;
}

function caReason(state: PkiState, opts: PlanPkiOptions): string | undefined {
  const crt = state.files['ca.crt'].exists;
  const key = state.files['ca.key'].exists;
  if (!crt || !key) return [!crt && 'ca.crt', !key && 'ca.key'].filter(Boolean).join(' and ') + ' missing';
  const ca = state.certs.ca;
  if (!ca || ca.parseError) return `ca.crt unreadable: ${ca?.parseError ?? 'no certificate'}`;
  if (!ca.isCa) return 'ca.crt is not a CA certificate';
  if (opts.clusterCaSha256 && state.files['ca.crt'].sha256 !== opts.clusterCaSha256) return 'ca.crt is not the cluster\'s CA';
  // Without the matching key nothing can be signed here.
  if (ca.keyMatches !== true) return ca.keyError ? `ca.key ${ca.keyError}` : 'ca.key does not match ca.crt';
  return undefined;
}

function leafReasons(state: PkiState, kind: LeafCert, node: PkiNode, opts: PlanPkiOptions, caCrtReplaced: boolean): string[] {
  if (!state.files[`${kind}.crt`].exists) return ['missing'];
  const c = state.certs[kind];
  if (!c || c.parseError) return [`unreadable certificate: ${c?.parseError ?? 'no certificate'}`];
  const reasons: string[] = [];
  if (!state.files[`${kind}.key`].exists) reasons.push('key missing');
  else if (c.keyMatches !== true) reasons.push(c.keyError ?? 'key does not match the certificate');
  // A leaf of another CA is useless once the cluster's CA is in place: peers would reject it.
  if (caCrtReplaced) reasons.push('signed by a CA that is being replaced');
  else if (c.signedByCa === false) reasons.push(`not signed by ca.crt (${c.verifyError ?? 'verify failed'})`);
  const left = Date.parse(c.notAfter) - (opts.now ?? Date.now());
  if (!(left >= (opts.minValidityMs ?? DAY_MS))) reasons.push(left > 0 ? `expires ${c.notAfter}` : `expired ${c.notAfter}`);
  reasons.push(...specMismatches(c, expectedCert(kind, node)));
  return reasons;
}

function specMismatches(c: CertState, want: CertSpec): string[] {
  const out: string[] = [];
  if (c.commonName !== want.commonName) out.push(`CN is ${JSON.stringify(c.commonName ?? '')}, want ${want.commonName}`);
  // Extra SANs are fine (kubeadm's serverCertSANs/peerCertSANs add some); missing ones are not.
  const missing = [
    ...want.dnsNames.filter((d) => !c.dnsNames.includes(d)).map((d) => `DNS:${d}`),
    ...want.ipAddresses.filter((ip) => !c.ipAddresses.includes(ip)).map((ip) => `IP:${ip}`),
  ];
  if (missing.length) out.push(`SANs missing ${missing.join(', ')}`);
  const eku = want.extKeyUsage.filter((u) => !c.extKeyUsage.includes(u));
  if (eku.length) out.push(`extended key usage missing ${eku.join(', ')}`);
  return out;
}

// ---------------------------------------------------------------- copy the CA

/**
 * Copies ca.crt and ca.key from a healthy member to `to`: read with `cat` on the member,
 * written over SFTP (key 0600 first, then certificate 0644), checked by sha256 afterwards.
 * Does nothing when `to` already has both files, byte-identical and with those modes.
 */
export async function copyCa(from: SshSession, to: SshSession, pkiDir: string, opts: PkiExecOptions = {}): Promise<{ changed: boolean }> {
  assertPkiDir(pkiDir);
  const crt = await from.readFile(posix.join(pkiDir, 'ca.crt'), { maxBytes: MAX_PKI_FILE, timeoutMs: opts.timeoutMs });
  const key = await from.readFile(posix.join(pkiDir, 'ca.key'), { maxBytes: MAX_PKI_FILE, timeoutMs: opts.timeoutMs });
  assertCaPair(crt, key, from.target.node, pkiDir);
  const want = { 'ca.crt': { sha256: sha256(crt), mode: 0o644 }, 'ca.key': { sha256: sha256(key), mode: 0o600 } };
  const matches = (got: Awaited<ReturnType<typeof caDigests>>) =>
    (['ca.crt', 'ca.key'] as const).every((f) => got[f]?.sha256 === want[f].sha256 && got[f]?.mode === want[f].mode);
  if (matches(await caDigests(to, pkiDir, opts))) return { changed: false };

  const mk = await to.exec(sh`mkdir -p -- ${pkiDir}`, { timeoutMs: opts.timeoutMs });
  if (mk.code !== 0) throw new MedicError('REMOTE_FAILED', `${nodeLabel(to)}: cannot create ${pkiDir}: ${mk.stderr.trim()}`);
  // Key first: a crash in between leaves ca.key without ca.crt, which the next plan copies again,
  // never a ca.crt that etcd would trust without the key to sign with.
  await to.writeFile(posix.join(pkiDir, 'ca.key'), key, { mode: want['ca.key'].mode, timeoutMs: opts.timeoutMs });
  await to.writeFile(posix.join(pkiDir, 'ca.crt'), crt, { mode: want['ca.crt'].mode, timeoutMs: opts.timeoutMs });
  const got = await caDigests(to, pkiDir, opts);
  if (!matches(got)) {
    throw new MedicError('REMOTE_FAILED', `${nodeLabel(to)}: the etcd CA copied to ${pkiDir} does not match ${from.target.node}'s `
      + `(sha256/mode: ${JSON.stringify(got)})`);
  }
  return { changed: true };
}

/** Refuses to spread a CA whose key is not its certificate's: every certificate signed with it would be rejected. */
function assertCaPair(crt: Buffer, key: Buffer, node: string, pkiDir: string): void {
  let ok = false;
  try {
    const cert = new X509Certificate(crt);
    ok = cert.ca && spki(createPublicKey(createPrivateKey(key))).equals(spki(cert.publicKey));
  } catch {
    ok = false; // the key's own parse error could quote it: say nothing of it
  }
  if (!ok) throw new MedicError('REMOTE_FAILED', `${node}: ${pkiDir}/ca.crt and ca.key are not a matching CA pair: not copying them`);
}

async function caDigests(s: SshSession, pkiDir: string, opts: PkiExecOptions): Promise<Partial<Record<'ca.crt' | 'ca.key', { sha256: string; mode: number }>>> {
  const r = await s.exec(sh`cd -- ${pkiDir} 2>/dev/null || exit 0
for f in ca.crt ca.key; do
  [ -f "$f" ] && echo "$f $(stat -L -c %a "$f") $(sha256sum < "$f" | cut -c1-64)"
done
true`, { timeoutMs: opts.timeoutMs });
  if (r.code !== 0) throw new MedicError('REMOTE_FAILED', `${nodeLabel(s)}: cannot read digests in ${pkiDir}: ${r.stderr.trim()}`);
  const out: Partial<Record<'ca.crt' | 'ca.key', { sha256: string; mode: number }>> = {};
  for (const line of r.stdout.split('\n')) {
    const [f, mode = '', digest = ''] = line.split(' ');
    if (f === 'ca.crt' || f === 'ca.key') out[f] = { sha256: digest, mode: parseInt(mode, 8) };
  }
  return out;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

// ---------------------------------------------------------------- generate a certificate

/**
 * Generates `<kind>.crt`/`.key` on the node with openssl, signed by the node's ca.crt/ca.key,
 * with kubeadm's subject, SANs and usages, valid 365 days, key of the CA's type (EC P-256 or
 * RSA 2048). Then inspects the result and fails REMOTE_FAILED if it is not right.
 */
export async function generateCert(session: SshSession, pkiDir: string, kind: LeafCert, node: PkiNode, opts: PkiExecOptions = {}): Promise<CertState> {
  assertPkiDir(pkiDir);
  assertLeaf(kind);
  assertPkiNode(node);
  const spec = expectedCert(kind, node);
  const r = await session.exec(generateScript(pkiDir, kind, spec), { timeoutMs: opts.timeoutMs });
  if (r.code !== 0) {
    throw new MedicError('REMOTE_FAILED', `${nodeLabel(session)}: cannot generate ${pkiDir}/${kind}.crt: ${r.stderr.trim().slice(-500) || `exit ${r.code ?? r.signal}`}`);
  }
  const state = await inspectPki(session, pkiDir, opts);
  const wrong = leafReasons(state, kind, node, {}, false);
  const cert = state.certs[kind];
  if (wrong.length || !cert) {
    throw new MedicError('REMOTE_FAILED', `${nodeLabel(session)}: generated ${pkiDir}/${kind}.crt is not right: ${wrong.join('; ')}`);
  }
  return cert;
}

/**
 * Everything happens in a private temp dir inside the PKI dir (same filesystem, so `mv` is an
 * atomic rename), and the new certificate must pass `openssl verify` before it replaces
 * anything: a running etcd reloads its certificates on each TLS handshake, so a bad file in
 * place would cut it off from its peers. The key is moved before the certificate; a handshake
 * in between could see a mismatched pair, which fails that one handshake only.
 */
function generateScript(pkiDir: string, kind: LeafCert, spec: CertSpec) {
  return sh`set -e
umask 077
cd -- ${pkiDir}
if [ ! -f ca.crt ] || [ ! -f ca.key ]; then echo 'the etcd CA (ca.crt, ca.key) is missing: copy it first' >&2; exit 3; fi
t=$(mktemp -d ./.medic-gen.XXXXXX)
trap 'rm -rf -- "$t"' EXIT
case "$(openssl x509 -in ca.crt -noout -text)" in
  *id-ecPublicKey*) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$t/key" 2>"$t/err" || { cat "$t/err" >&2; exit 1; } ;;
  *) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$t/key" 2>"$t/err" || { cat "$t/err" >&2; exit 1; } ;;
esac
printf '%s\n' ${extfileLines(spec)} >"$t/ext"
openssl req -new -key "$t/key" -subj ${spec.subject} -out "$t/csr"
openssl x509 -req -in "$t/csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" -days 365 -sha256 -extfile "$t/ext" -out "$t/crt" 2>"$t/err" || { cat "$t/err" >&2; exit 1; }
openssl verify -CAfile ca.crt "$t/crt" >"$t/err" 2>&1 || { cat "$t/err" >&2; exit 1; }
chmod 600 "$t/key"
chmod 644 "$t/crt"
mv -f -- "$t/key" ${`${kind}.key`}
mv -f -- "$t/crt" ${`${kind}.crt`}`;
}
