/**
 * Redaction of log text (logs, diagnose) and step output: every kind of secret goes, and
 * what etcd logs all the time (key file paths, etcd keys, the cluster token, member ids)
 * stays. Realistic lines are etcd 3.4's zap JSON as in test/fixtures/logs/.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { logsReport } from '../commands/logs';
import { redact, redactLines } from '../src/audit/redact';
import { fixtureLog } from './support/diagnose-input';

const TS = '"ts":"2026-11-27T03:16:31.918Z"';
/** One etcd 3.4 log line (zap JSON) with these fields after the message. */
const zap = (msg: string, fields: Record<string, unknown> = {}, level = 'info') =>
  JSON.stringify({ level, ts: '2026-11-27T03:16:31.918Z', caller: 'embed/etcd.go:476', msg, ...fields });

const EC_KEY = [
  '-----BEGIN EC PRIVATE KEY-----',
  'MHcCAQEEIBHq2ZzQ3vY0m5kPq7uVYSECRETMATERIALline1AAAAAAAAAAAAAAAAAoAoGCCqGSM49',
  'AwEHoUQDQgAEv8dV0bSECRETMATERIALline2BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB',
  '-----END EC PRIVATE KEY-----',
];
const GH = 'ghp_16C7e42F292c6912E7710c838347Ae178B4a';
const SLACK = 'xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx';

describe('log text as etcd writes it: nothing useful is lost', () => {
  const fixtures = readdirSync(join(__dirname, 'fixtures', 'logs')).filter((f) => f.endsWith('.log'));

  it.each(fixtures)('%s comes through unchanged, every JSON line still JSON', (file) => {
    const { lines } = fixtureLog(file);
    const out = redactLines(lines);
    expect(out).toEqual(lines);
    for (const l of out) if (l.startsWith('{')) expect(() => JSON.parse(l)).not.toThrow();
  });

  it.each([
    // What etcd prints at every start: which files hold the keys.
    zap('starting with peer TLS', { 'tls-info': 'cert = /etc/kubernetes/pki/etcd/peer.crt, key = /etc/kubernetes/pki/etcd/peer.key, trusted-ca = /etc/kubernetes/pki/etcd/ca.crt, client-cert-auth = true, crl-file = ', 'cipher-suites': [] }),
    zap('starting an etcd server', { 'initial-cluster-token': 'etcd-medic-lab-1795749348', 'initial-cluster-state': 'new' }),
    // etcd's request descriptors name etcd keys and value sizes, never values.
    zap('apply request took too long', { took: '212ms', request: 'header:<ID:18288170423940274780 username:\\"etcd-medic\\" auth_revision:1 > put:<key:\\"/registry/pods/kube-system/etcd-node1\\" value_size:2048 >' }, 'warn'),
    zap('apply request took too long', { request: 'key:"health" ', response: 'range_response_count:0 size:5' }, 'warn'),
    zap('watch', { key: '/registry/leases/kube-node-lease/node1', 'range-end': '' }),
    // kubeadm's manifest flags and the systemd environment file.
    '    - --key-file=/etc/kubernetes/pki/etcd/server.key',
    '    - --peer-key-file=/etc/kubernetes/pki/etcd/peer.key',
    '    - --initial-cluster-token=etcd-cluster-1',
    'ETCD_PEER_KEY_FILE=/etc/etcd/pki/peer.key',
    'etcdctl --cacert /etc/kubernetes/pki/etcd/ca.crt --cert healthcheck-client.crt --key healthcheck-client.key endpoint health',
    'etcdctl --key=/etc/kubernetes/pki/etcd/healthcheck-client.key member list',
    'openssl req -new -key /etc/kubernetes/pki/etcd/peer.key -passin env:PEER_PASS -out peer.csr',
    'openssl rsa -in key.pem -passin file:/run/secrets/pass -out plain.pem',
    'member 75a319cfe56f82d4 has already been bootstrapped',
  ])('%s', (line) => {
    expect(redactLines([line])).toEqual([line]);
  });
});

describe('each kind of secret is removed', () => {
  it('a multi-line PEM private key block, whole, from the joined text (line by line the base64 stays)', () => {
    const lines = [zap('closing etcd server'), ...EC_KEY, zap('closed etcd server')];
    const out = redactLines(lines);
    expect(out).toEqual([zap('closing etcd server'), '[REDACTED PRIVATE KEY]', zap('closed etcd server')]);
    // Why the text is joined first: each line alone does not say it is part of a key.
    expect(lines.map((l) => redact(l)).join('\n')).toContain('SECRETMATERIALline1');
  });

  it('a key block the tail ends inside takes the rest with it', () => {
    const out = redactLines([zap('starting'), ...EC_KEY.slice(0, 2)]);
    expect(out).toEqual([zap('starting'), '[REDACTED PRIVATE KEY]']);
  });

  it.each([
    // passphrase=…, in every spelling
    ['passphrase=correct-horse-battery', 'passphrase=[REDACTED]'],
    ['{"msg":"loading key","passphrase":"correct horse"}', '{"msg":"loading key","passphrase":"[REDACTED]"}'],
    ['passphrase: correct-horse', 'passphrase: [REDACTED]'],
    ['tool --key-passphrase s3cr3t --out x', 'tool --key-passphrase [REDACTED] --out x'],
    ['{"msg":"config {\\"passphrase\\":\\"hunter2\\"}"}', '{"msg":"config {\\"passphrase\\":\\"[REDACTED]\\"}"}'],
    // openssl's pass: argument
    ['openssl pkcs12 -in a.p12 -passin pass:hunter2 -passout pass:"two words" -nodes', 'openssl pkcs12 -in a.p12 -passin pass:[REDACTED] -passout pass:[REDACTED] -nodes'],
    // Cookie headers
    ['Cookie: session=abc123; csrftoken=def456', 'Cookie: [REDACTED]'],
    ['< Set-Cookie: grafana_session=abcdef0123; Path=/; HttpOnly', '< Set-Cookie: [REDACTED]'],
    ['{"msg":"request","cookie":"session=abc123","status":200}', '{"msg":"request","cookie":"[REDACTED]","status":200}'],
    // GitHub and Slack tokens
    [`git clone https://x-access-token:${GH}@github.com/org/repo`, 'git clone https://x-access-token:***@github.com/org/repo'],
    [`GITHUB_TOKEN set, using ${GH} now`, 'GITHUB_TOKEN set, using ghp_[REDACTED] now'],
    ['fine-grained github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEF', 'fine-grained github_pat_[REDACTED]'],
    [`bot ${SLACK} user xoxp-1111-2222-3333-abcdef app xoxa-2-9999-abc`, 'bot xoxb-[REDACTED] user xoxp-[REDACTED] app xoxa-[REDACTED]'],
    // Fields named key: inline values go, file paths stay
    ['{"msg":"signing","key":"c2VjcmV0LWtleS1tYXRlcmlhbA==","alg":"HS256"}', '{"msg":"signing","key":"[REDACTED]","alg":"HS256"}'],
    ['  key: c2VjcmV0LWtleS1tYXRlcmlhbA==', '  key: [REDACTED]'],
    ['    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo=', '    client-key-data: [REDACTED]'],
    ['encryption --key=0123456789abcdef0123456789abcdef --key-file=/etc/enc/key.bin', 'encryption --key=[REDACTED] --key-file=/etc/enc/key.bin'],
    ['vault write --key 0123456789abcdef --peer-key-file=/etc/kubernetes/pki/etcd/peer.key', 'vault write --key [REDACTED] --peer-key-file=/etc/kubernetes/pki/etcd/peer.key'],
    ['{"privateKey":"AAAAC3NzaC1lZDI1NTE5AAAA","path":"/x"}', '{"privateKey":"[REDACTED]","path":"/x"}'],
    // and the old kinds, now keeping JSON lines parseable
    [zap('auth', { password: 'hunter2', token: 'abc' }), zap('auth', { password: '[REDACTED]', token: '[REDACTED]' })],
    ['{"msg":"req","authorization":"Bearer abc.def.ghi","code":401}', '{"msg":"req","authorization":"[REDACTED]","code":401}'],
  ])('%s', (input, expected) => {
    expect(redactLines([input])).toEqual([expected]);
    expect(redact(input)).toBe(expected);
    if (input.startsWith('{')) expect(() => JSON.parse(expected)).not.toThrow();
  });

  it('keeps a line that ends in a secret name from taking the next line', () => {
    expect(redactLines(['export token=', 'status lab'])).toEqual(['export token=', 'status lab']);
    expect(redactLines(['password:', '  next: 1'])).toEqual(['password:', '  next: 1']);
  });
});

describe('logs', () => {
  it('redacts the tail as one text: a key printed to etcd\'s stderr is gone, the lines around it read as before', () => {
    const got = { source: '/var/log/pods/kube-system_etcd-node1_x/etcd/0.log', lines: [zap('closing etcd server', { name: 'node1' }), ...EC_KEY, `Cookie: sid=1 ${TS}`, zap('closed etcd server', { name: 'node1' })] };
    const r = logsReport('lab', 'node1', got);
    const text = r.notes!.join('\n');
    expect(text).not.toMatch(/SECRETMATERIAL|END EC PRIVATE/);
    expect(r.notes).toEqual([
      '03:16:31.918 I closing etcd server name=node1',
      '[REDACTED PRIVATE KEY]',
      'Cookie: [REDACTED]',
      '03:16:31.918 I closed etcd server name=node1',
    ]);
  });
});
