/**
 * etcd PKI on a node, against real OpenSSH sshds and the host's openssl. Two "nodes": node1
 * (the healthy member holding the CA) sees the host's filesystem; node2 (being added) is a
 * second sshd in its own mount namespace where the PKI path is an empty directory of its own.
 * Results are checked with openssl on the host, independently of the code under test.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyCa, generateCert, inspectPki, LEAF_CERTS, PkiNode, planPki } from '../src/exec/pki';
import { RemoteCommand } from '../src/exec/shell';
import { createSshPool, SshPool, SshSession } from '../src/exec/ssh';
import { Sshd, sshdTarget, startSshd, stopSshd } from './support/sshd';

jest.setTimeout(60_000);

const NODE2: PkiNode = { name: 'node2', ip: '192.0.2.12' };

let work: string;
/** The PKI path both nodes use; node1 sees the host's dir, node2 sees node2Root's. */
let pki: string;
let node2Root: string;
let sshd1: Sshd;
let sshd2: Sshd;
let pool1: SshPool;
let pool2: SshPool;
let s1: SshSession;
let s2: SshSession;

// ---------------------------------------------------------------- host-side openssl

function openssl(...args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function genKey(path: string, alg: 'ec' | 'rsa' = 'ec'): void {
  openssl('genpkey', ...(alg === 'ec' ? ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']), '-out', path);
}

/** A CA like lab.sh's (ensure_keys). */
function makeCa(dir: string, alg: 'ec' | 'rsa' = 'ec'): void {
  mkdirSync(dir, { recursive: true });
  genKey(join(dir, 'ca.key'), alg);
  openssl('req', '-x509', '-new', '-key', join(dir, 'ca.key'), '-subj', '/CN=etcd-ca', '-days', '3650', '-sha256',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign',
    '-out', join(dir, 'ca.crt'));
}

/** A leaf like lab.sh's `sign`, signed by caDir's CA, written as dir/name.{crt,key}. */
function makeLeaf(dir: string, name: string, o: { caDir?: string; cn: string; eku: string; san?: string; days?: number }): void {
  const caDir = o.caDir ?? dir;
  const ext = join(work, `ext-${name}`);
  writeFileSync(ext, [
    'basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${o.eku}`, ...(o.san ? [`subjectAltName=${o.san}`] : []), '',
  ].join('\n'));
  genKey(join(dir, `${name}.key`));
  openssl('req', '-new', '-key', join(dir, `${name}.key`), '-subj', `/CN=${o.cn}`, '-out', join(work, `${name}.csr`));
  openssl('x509', '-req', '-in', join(work, `${name}.csr`), '-CA', join(caDir, 'ca.crt'), '-CAkey', join(caDir, 'ca.key'),
    '-set_serial', String(Date.now()), '-days', String(o.days ?? 365), '-sha256', '-extfile', ext, '-out', join(dir, `${name}.crt`));
}

function verifies(caCrt: string, crt: string): boolean {
  try {
    return openssl('verify', '-CAfile', caCrt, crt).trim().endsWith(': OK');
  } catch {
    return false;
  }
}

/** openssl's own view of a certificate: subject, SAN and EKU lines. */
function describe509(crt: string): { subject: string; san: string; eku: string } {
  const out = openssl('x509', '-in', crt, '-noout', '-subject', '-nameopt', 'RFC2253', '-ext', 'subjectAltName,extendedKeyUsage');
  const after = (title: string) => {
    const lines = out.split('\n');
    const i = lines.findIndex((l) => l.startsWith(title));
    return i < 0 ? '' : (lines[i + 1] ?? '').trim();
  };
  return { subject: (/^subject=(.*)$/m.exec(out)?.[1] ?? '').trim(), san: after('X509v3 Subject Alternative Name'), eku: after('X509v3 Extended Key Usage') };
}

function pubOfCert(crt: string): string { return openssl('x509', '-in', crt, '-noout', '-pubkey'); }
function pubOfKey(key: string): string { return openssl('pkey', '-in', key, '-pubout'); }
function mode(path: string): number { return statSync(path).mode & 0o7777; }

/** A session that records every remote call, to prove nothing ran. */
function spy(s: SshSession): { session: SshSession; calls: string[] } {
  const calls: string[] = [];
  const session: SshSession = {
    target: s.target,
    isOpen: () => s.isOpen(),
    exec: (c: RemoteCommand, o) => { calls.push(`exec ${c.text}`); return s.exec(c, o); },
    readFile: (p, o) => { calls.push(`read ${p}`); return s.readFile(p, o); },
    writeFile: (p, d, o) => { calls.push(`write ${p}`); return s.writeFile(p, d, o); },
    stat: (p, o) => { calls.push(`stat ${p}`); return s.stat(p, o); },
    openTunnel: (h, p) => { calls.push(`tunnel ${h}:${p}`); return s.openTunnel(h, p); },
    close: () => s.close(),
  };
  return { session, calls };
}

/** A fresh PKI dir seen by node1 only (the host's filesystem). */
function freshDir(name: string): string {
  const d = join(work, name);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d, { recursive: true });
  return d;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'medic-pki-'));
  pki = join(work, 'root', 'etc', 'kubernetes', 'pki', 'etcd');
  node2Root = join(work, 'node2-root');
  mkdirSync(pki, { recursive: true });
  mkdirSync(node2Root, { recursive: true });
  makeCa(pki);
  sshd1 = await startSshd();
  // node2's /…/root is its own empty directory: no etcd PKI at all, as on a fresh node.
  sshd2 = await startSshd({ binds: [{ from: node2Root, to: join(work, 'root') }] });
  pool1 = createSshPool({ privateKey: sshd1.clientKey, connectTimeoutMs: 5000, commandTimeoutMs: 20000 });
  pool2 = createSshPool({ privateKey: sshd2.clientKey, connectTimeoutMs: 5000, commandTimeoutMs: 20000 });
  s1 = await pool1.session(sshdTarget(sshd1, 'node1'));
  s2 = await pool2.session(sshdTarget(sshd2, 'node2'));
});

afterAll(async () => {
  await pool1?.closeAll();
  await pool2?.closeAll();
  await stopSshd(sshd1);
  await stopSshd(sshd2);
  if (work) rmSync(work, { recursive: true, force: true });
});

const node2Pki = () => join(node2Root, 'etc', 'kubernetes', 'pki', 'etcd');

describe('adding node2: copy the CA, generate the certificates, then nothing left to do', () => {
  it('sees a node without any PKI and plans the whole thing', async () => {
    const state = await inspectPki(s2, pki);
    expect(state).toMatchObject({ node: 'node2', pkiDir: pki, dirExists: false, certs: {} });
    expect(Object.values(state.files).every((f) => !f.exists)).toBe(true);
    expect(planPki(state, NODE2)).toEqual([
      { kind: 'copy-ca', files: ['ca.crt', 'ca.key'], reason: 'ca.crt and ca.key missing' },
      { kind: 'generate', cert: 'server', reason: 'missing' },
      { kind: 'generate', cert: 'peer', reason: 'missing' },
      { kind: 'generate', cert: 'healthcheck-client', reason: 'missing' },
    ]);
  });

  it('copies the CA byte-exact, key 0600, creating the directory; a second copy changes nothing', async () => {
    expect(await copyCa(s1, s2, pki)).toEqual({ changed: true });
    const dst = node2Pki();
    expect(readFileSync(join(dst, 'ca.crt')).equals(readFileSync(join(pki, 'ca.crt')))).toBe(true);
    expect(readFileSync(join(dst, 'ca.key')).equals(readFileSync(join(pki, 'ca.key')))).toBe(true);
    expect(mode(join(dst, 'ca.key'))).toBe(0o600);
    expect(mode(join(dst, 'ca.crt'))).toBe(0o644);
    expect(readdirSync(dst).sort()).toEqual(['ca.crt', 'ca.key']); // no temp files left
    expect(existsSync(join(pki, 'server.crt'))).toBe(false); // node1 untouched
    expect(await copyCa(s1, s2, pki)).toEqual({ changed: false });
  });

  it('generates server, peer and healthcheck-client certificates that openssl accepts', async () => {
    for (const kind of LEAF_CERTS) await generateCert(s2, pki, kind, NODE2);
    const dst = node2Pki();
    const ca = join(dst, 'ca.crt');
    for (const kind of LEAF_CERTS) {
      const crt = join(dst, `${kind}.crt`);
      const key = join(dst, `${kind}.key`);
      expect(verifies(ca, crt)).toBe(true);
      expect(pubOfKey(key)).toBe(pubOfCert(crt));
      expect(mode(key)).toBe(0o600);
      expect(mode(crt)).toBe(0o644);
      expect(openssl('pkey', '-in', key, '-noout', '-text')).toMatch(/prime256v1|P-256/); // the lab CA's key type
      // Signed by the copied CA, which is node1's: the cluster's peers will accept it.
      expect(verifies(join(pki, 'ca.crt'), crt)).toBe(true);
    }
    for (const kind of ['server', 'peer'] as const) {
      const d = describe509(join(dst, `${kind}.crt`));
      expect(d.subject).toBe('CN=node2');
      expect(d.san).toBe('DNS:node2, DNS:localhost, IP Address:192.0.2.12, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
      expect(d.eku).toBe('TLS Web Server Authentication, TLS Web Client Authentication');
    }
    const hc = describe509(join(dst, 'healthcheck-client.crt'));
    expect(hc.subject).toBe('CN=kube-etcd-healthcheck-client,O=system:masters');
    expect(hc.san).toBe('');
    expect(hc.eku).toBe('TLS Web Client Authentication');
    expect(readdirSync(dst).filter((f) => f.startsWith('.medic') || f.endsWith('.medic-tmp'))).toEqual([]);
  });

  it('plans nothing the second time, also against the cluster CA digest', async () => {
    const again = await inspectPki(s2, pki);
    expect(planPki(again, NODE2)).toEqual([]);
    const member = await inspectPki(s1, pki);
    expect(planPki(again, NODE2, { clusterCaSha256: member.files['ca.crt'].sha256 })).toEqual([]);
    expect(again.certs.server).toMatchObject({
      commonName: 'node2', dnsNames: ['node2', 'localhost'], ipAddresses: ['192.0.2.12', '127.0.0.1', '0:0:0:0:0:0:0:1'],
      extKeyUsage: ['serverAuth', 'clientAuth'], keyMatches: true, signedByCa: true, keyAlgorithm: 'ec', isCa: false,
    });
    expect(again.files['server.key']).toMatchObject({ exists: true, mode: 0o600 });
  });
});

describe('planPki reasons, from real certificates', () => {
  const NODE1: PkiNode = { name: 'node1', ip: '192.0.2.11' };
  const SAN1 = 'DNS:node1,DNS:localhost,IP:192.0.2.11,IP:127.0.0.1,IP:::1';
  let dir: string;

  beforeEach(() => {
    dir = freshDir('plan');
    makeCa(dir);
    makeLeaf(dir, 'server', { cn: 'node1', eku: 'serverAuth,clientAuth', san: SAN1 });
    makeLeaf(dir, 'peer', { cn: 'node1', eku: 'serverAuth,clientAuth', san: SAN1 });
    makeLeaf(dir, 'healthcheck-client', { cn: 'kube-etcd-healthcheck-client', eku: 'clientAuth' });
  });

  it('accepts certificates made like kubeadm makes them', async () => {
    expect(planPki(await inspectPki(s1, dir), NODE1)).toEqual([]);
  });

  it('regenerates a certificate with a missing SAN (the lab\'s peer certs lack IP ::1) or for another IP', async () => {
    makeLeaf(dir, 'peer', { cn: 'node1', eku: 'serverAuth,clientAuth', san: 'DNS:node1,DNS:localhost,IP:192.0.2.11,IP:127.0.0.1' });
    makeLeaf(dir, 'server', { cn: 'node1', eku: 'serverAuth,clientAuth', san: 'DNS:node1,DNS:localhost,IP:192.0.2.99,IP:127.0.0.1,IP:::1' });
    expect(planPki(await inspectPki(s1, dir), NODE1)).toEqual([
      { kind: 'generate', cert: 'server', reason: 'SANs missing IP:192.0.2.11' },
      { kind: 'generate', cert: 'peer', reason: 'SANs missing IP:0:0:0:0:0:0:0:1' },
    ]);
  });

  it('regenerates a certificate expiring within 24 h, and an expired one', async () => {
    const state = await inspectPki(s1, dir);
    const notAfter = Date.parse(state.certs.server?.notAfter ?? '');
    const plan = planPki(state, NODE1, { now: notAfter - 3600_000 });
    expect(plan.map((a) => a.kind === 'generate' && a.cert)).toEqual(['server', 'peer', 'healthcheck-client']);
    expect(plan[0]?.reason).toMatch(/^expires \d{4}-/);
    expect(planPki(state, NODE1, { now: notAfter + 1000 })[0]?.reason).toMatch(/^expired /);
  });

  it('regenerates a certificate signed by another CA, or whose key is not its own', async () => {
    const other = freshDir('other-ca');
    makeCa(other);
    makeLeaf(dir, 'server', { caDir: other, cn: 'node1', eku: 'serverAuth,clientAuth', san: SAN1 });
    genKey(join(dir, 'peer.key'));
    const plan = planPki(await inspectPki(s1, dir), NODE1);
    expect(plan).toHaveLength(2);
    expect(plan[0]).toMatchObject({ kind: 'generate', cert: 'server' });
    expect(plan[0]?.reason).toMatch(/^not signed by ca\.crt \(error 20 /);
    expect(plan[1]).toEqual({ kind: 'generate', cert: 'peer', reason: 'key does not match the certificate' });
  });

  it('regenerates a healthcheck client without clientAuth, and a server cert with the wrong CN', async () => {
    makeLeaf(dir, 'healthcheck-client', { cn: 'kube-etcd-healthcheck-client', eku: 'serverAuth' });
    makeLeaf(dir, 'server', { cn: 'node9', eku: 'serverAuth,clientAuth', san: SAN1 });
    expect(planPki(await inspectPki(s1, dir), NODE1)).toEqual([
      { kind: 'generate', cert: 'server', reason: 'CN is "node9", want node1' },
      { kind: 'generate', cert: 'healthcheck-client', reason: 'extended key usage missing clientAuth' },
    ]);
  });

  it('copies only the CA key when ca.crt is the cluster\'s, and everything when the node has another CA', async () => {
    const clusterCaSha256 = (await inspectPki(s1, dir)).files['ca.crt'].sha256;
    renameSync(join(dir, 'ca.key'), join(work, 'ca.key.aside'));
    expect(planPki(await inspectPki(s1, dir), NODE1, { clusterCaSha256 })).toEqual([
      { kind: 'copy-ca', files: ['ca.crt', 'ca.key'], reason: 'ca.key missing' },
    ]);
    const plan = planPki(await inspectPki(s1, dir), NODE1, { clusterCaSha256: 'f'.repeat(64) });
    expect(plan[0]).toMatchObject({ kind: 'copy-ca', reason: 'ca.key missing' });
    expect(plan.slice(1).map((a) => a.reason)).toEqual(Array(3).fill('signed by a CA that is being replaced'));
    renameSync(join(work, 'ca.key.aside'), join(dir, 'ca.key'));
    expect(planPki(await inspectPki(s1, dir), NODE1, { clusterCaSha256: 'f'.repeat(64) })[0])
      .toEqual({ kind: 'copy-ca', files: ['ca.crt', 'ca.key'], reason: 'ca.crt is not the cluster\'s CA' });
  });

  it('fixes what it planned: after generating, nothing is left', async () => {
    makeLeaf(dir, 'peer', { cn: 'node1', eku: 'serverAuth,clientAuth', san: 'DNS:node1' });
    const plan = planPki(await inspectPki(s1, dir), NODE1);
    expect(plan).toEqual([{ kind: 'generate', cert: 'peer', reason: expect.stringMatching(/^SANs missing DNS:localhost, IP:192\.0\.2\.11/) }]);
    for (const a of plan) if (a.kind === 'generate') await generateCert(s1, dir, a.cert, NODE1);
    expect(planPki(await inspectPki(s1, dir), NODE1)).toEqual([]);
  });
});

describe('generateCert', () => {
  it('makes RSA 2048 keys under an RSA CA (kubeadm\'s default)', async () => {
    const dir = freshDir('rsa');
    makeCa(dir, 'rsa');
    const cert = await generateCert(s1, dir, 'server', { name: 'cp-1', ip: '10.1.2.3' });
    expect(cert).toMatchObject({ keyAlgorithm: 'rsa', signedByCa: true, keyMatches: true });
    expect(openssl('pkey', '-in', join(dir, 'server.key'), '-noout', '-text')).toMatch(/Private-Key: \(2048 bit/);
    expect(verifies(join(dir, 'ca.crt'), join(dir, 'server.crt'))).toBe(true);
  });

  it('puts an IPv6 node address in the SANs', async () => {
    const dir = freshDir('v6');
    makeCa(dir);
    await generateCert(s1, dir, 'peer', { name: 'cp-6', ip: 'fd00::12' });
    expect(describe509(join(dir, 'peer.crt')).san).toContain('IP Address:FD00:0:0:0:0:0:0:12');
    expect(planPki(await inspectPki(s1, dir), { name: 'cp-6', ip: 'fd00:0::12' }).filter((a) => a.kind === 'generate' && a.cert === 'peer')).toEqual([]);
  });

  it('refuses without a CA, creating nothing', async () => {
    const dir = freshDir('no-ca');
    const err = await generateCert(s1, dir, 'server', NODE2).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'REMOTE_FAILED' });
    expect((err as Error).message).toMatch(/^node1: cannot generate .*server\.crt: the etcd CA .* copy it first$/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('leaves a working certificate in place when the new one would not verify', async () => {
    const dir = freshDir('bad-ca-key');
    makeCa(dir);
    makeLeaf(dir, 'server', { cn: 'node2', eku: 'serverAuth,clientAuth', san: 'DNS:node2' });
    const before = readFileSync(join(dir, 'server.crt'));
    const keyBefore = readFileSync(join(dir, 'server.key'));
    genKey(join(dir, 'ca.key')); // a CA key that is not ca.crt's: what it signs won't verify
    await expect(generateCert(s1, dir, 'server', NODE2)).rejects.toMatchObject({ code: 'REMOTE_FAILED' });
    expect(readFileSync(join(dir, 'server.crt')).equals(before)).toBe(true);
    expect(readFileSync(join(dir, 'server.key')).equals(keyBefore)).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['ca.crt', 'ca.key', 'server.crt', 'server.key']);
  });
});

describe('hostile or broken input never reaches a node', () => {
  const marker = () => join(work, 'pwned');

  it.each([
    [{ name: `node2'; touch ${'/tmp/medic-pwned'} #`, ip: '192.0.2.12' }],
    [{ name: 'node2$(id)', ip: '192.0.2.12' }],
    [{ name: 'Node2', ip: '192.0.2.12' }],
    [{ name: '-node2', ip: '192.0.2.12' }],
    [{ name: 'a'.repeat(64), ip: '192.0.2.12' }],
    [{ name: 'node2', ip: '192.0.2.12,DNS:evil.example' }],
    [{ name: 'node2', ip: '192.0.2.12; id' }],
    [{ name: 'node2', ip: '999.0.2.12' }],
    [{ name: 'node2', ip: '' }],
  ])('refuses %j before running anything', async (node) => {
    const { session, calls } = spy(s1);
    await expect(generateCert(session, pki, 'server', node)).rejects.toMatchObject({ name: 'MedicError', code: 'BAD_INPUT' });
    expect(() => planPki({ node: 'x', pkiDir: pki, dirExists: false, files: {} as never, certs: {} }, node)).toThrow(/not a valid node name|not an IP address/);
    expect(calls).toEqual([]);
    expect(existsSync('/tmp/medic-pwned') || existsSync(marker())).toBe(false);
  });

  it('refuses a relative or ".." PKI dir and an unknown certificate kind', async () => {
    const { session, calls } = spy(s1);
    for (const dir of ['etc/kubernetes/pki/etcd', '/etc/kubernetes/../../tmp', '']) {
      await expect(inspectPki(session, dir)).rejects.toMatchObject({ code: 'BAD_INPUT' });
      await expect(copyCa(session, session, dir)).rejects.toMatchObject({ code: 'BAD_INPUT' });
      await expect(generateCert(session, dir, 'server', NODE2)).rejects.toMatchObject({ code: 'BAD_INPUT' });
    }
    await expect(generateCert(session, pki, 'ca' as never, NODE2)).rejects.toMatchObject({ code: 'BAD_INPUT' });
    expect(calls).toEqual([]);
  });

  it('does not copy a CA whose key is not its certificate\'s', async () => {
    const src = freshDir('mismatched-ca');
    makeCa(src);
    genKey(join(src, 'ca.key'));
    const { session: to, calls } = spy(s2);
    const err = await copyCa(s1, to, src).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'REMOTE_FAILED' });
    expect((err as Error).message).toBe(`node1: ${src}/ca.crt and ca.key are not a matching CA pair: not copying them`);
    expect(calls).toEqual([]);
  });
});
