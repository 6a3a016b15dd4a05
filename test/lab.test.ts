/**
 * The lab itself (lab/lab.sh): a real 3-node etcd cluster shaped like kubeadm's stacked etcd,
 * checked through real SSH (OpenSSH client, the bot's key, pinned host keys) and host-side etcdctl.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { configSchema } from '../src/config/schema';
import {
  LAB_DIR, LAB_NODES, LAB_SSH_PORT, labConfigPath, labNode, labSh, labUp, labFresh, endpointHealth, hostEtcdctl,
  leaderName, memberIdsByName, pollUntil, sshNode, waitLabHealthy,
} from './support/lab';

jest.setTimeout(180_000);

/** Process names in the node's pid namespace (its /proc, without procps). */
async function nodeProcesses(node: string): Promise<string[]> {
  const r = await sshNode(node, 'cat /proc/[0-9]*/comm 2>/dev/null');
  expect(r.code).toBe(0);
  return r.stdout.split('\n').filter(Boolean);
}

describe('lab', () => {
  beforeAll(async () => {
    // Other suites repair members (new ids, --initial-cluster-state=existing): this one
    // checks the lab as lab.sh builds it.
    await labFresh();
    await waitLabHealthy();
  });

  afterAll(async () => {
    // Leave a healthy lab for the next suite (up recreates it when it isn't).
    await labUp();
    await waitLabHealthy();
  });

  it('writes a clusters.yaml the bot accepts, pinned to the nodes\' real host keys', async () => {
    expect((await labSh('config')).trim()).toBe(labConfigPath());
    const config = configSchema.parse(parse(readFileSync(labConfigPath(), 'utf8')));
    expect(config.clusters.map((c) => c.name)).toEqual(['lab', 'lab-botcert']);
    const [lab, botcert] = config.clusters;
    expect(lab.etcd.auth).toEqual({ mode: 'node-healthcheck-client' });
    expect(botcert.etcd.auth.mode).toBe('client-cert');
    if (botcert.etcd.auth.mode === 'client-cert') {
      for (const f of [botcert.etcd.auth.ca, botcert.etcd.auth.cert, botcert.etcd.auth.key]) expect(existsSync(f)).toBe(true);
    }
    for (const c of config.clusters) {
      expect(c.channels).toEqual(['CLAB00001', 'console']);
      expect(c.nodes.map((n) => n.name)).toEqual(['node1', 'node2', 'node3']);
      for (const n of c.nodes) {
        const want = labNode(n.name);
        expect(n.ssh).toMatchObject({ host: want.ip, port: LAB_SSH_PORT });
        expect(n.clientUrl).toBe(want.clientUrl);
        expect(n.peerUrl).toBe(want.peerUrl);
        const fp = execFileSync('ssh-keygen', ['-lf', join(LAB_DIR, 'hostkeys', n.name, 'ssh_host_ed25519_key.pub')], { encoding: 'utf8' }).split(' ')[1];
        expect(n.ssh.hostKey).toBe(fp);
      }
    }
  });

  it('node3, over real SSH, sees its own kubeadm-style manifest, data and certificates', async () => {
    const r = await sshNode('node3', 'cat /etc/kubernetes/manifests/etcd.yaml');
    expect(r.code).toBe(0);
    const pod = parse(r.stdout);
    expect(pod).toMatchObject({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'etcd', namespace: 'kube-system', labels: { component: 'etcd', tier: 'control-plane' } } });
    const command: string[] = pod.spec.containers[0].command;
    expect(command[0]).toBe('etcd');
    expect(command).toContain('--name=node3');
    expect(command).not.toContain('--name=node1');
    expect(command).toContain('--listen-client-urls=https://127.10.0.13:2379');
    expect(command).toContain('--data-dir=/var/lib/etcd');
    expect(command).toContain(`--initial-cluster=${LAB_NODES.map((n) => `${n.name}=${n.peerUrl}`).join(',')}`);

    const files = await sshNode('node3', 'ls /etc/kubernetes/pki/etcd && test -d /var/lib/etcd/member && echo data-ok'
      + ' && openssl x509 -in /etc/kubernetes/pki/etcd/server.crt -noout -subject -ext subjectAltName'
      + ' && openssl x509 -in /etc/kubernetes/pki/etcd/server.crt -noout -text | grep -E "Public Key Algorithm|Public-Key"');
    expect(files.code).toBe(0);
    for (const f of ['ca.crt', 'ca.key', 'server.crt', 'server.key', 'peer.crt', 'peer.key', 'healthcheck-client.crt', 'healthcheck-client.key']) {
      expect(files.stdout.split('\n')).toContain(f);
    }
    expect(files.stdout).toContain('data-ok');
    expect(files.stdout).toMatch(/CN ?= ?node3/);
    expect(files.stdout).toContain(`IP Address:${labNode('node3').ip}`);
    // Keys as kubeadm makes them by default (LAB_KEY=ec: P-256, its ECDSA-P256 option).
    if ((process.env.LAB_KEY ?? 'rsa') === 'rsa') expect(files.stdout).toMatch(/rsaEncryption[\s\S]*Public-Key: \(2048 bit\)/);
    else expect(files.stdout).toMatch(/id-ecPublicKey[\s\S]*Public-Key: \(256 bit\)/);
  });

  it('nodes are as bare as real ones: no etcdctl, and ps shows only the node\'s own processes', async () => {
    const ctl = await sshNode('node1', 'etcdctl version');
    expect(ctl.code).toBe(127);
    expect(ctl.stderr).toMatch(/etcdctl: command not found/);
    expect((await sshNode('node1', 'command -v etcdctl')).code).not.toBe(0);
    expect((await sshNode('node1', 'command -v etcd')).stdout.trim()).toBe('/usr/bin/etcd');

    const procs = await nodeProcesses('node2');
    expect(procs.filter((p) => p === 'etcd')).toHaveLength(1);
    expect(procs).toContain('sshd');
  });

  it('has 3 healthy members, seen from the host with the bot\'s client cert', async () => {
    expect(Object.values(await endpointHealth())).toEqual([true, true, true]);
    const ids = await memberIdsByName();
    expect(Object.keys(ids).sort()).toEqual(['node1', 'node2', 'node3']);
    for (const id of Object.values(ids)) expect(id).toMatch(/^[0-9a-f]{1,16}$/);
    expect(Object.keys(ids)).toContain(await leaderName());
    // etcdctl 3.4 prints health to stderr; exit 0 means every endpoint is healthy.
    await hostEtcdctl(['endpoint', 'health']);
  });

  it('kubelet-lite writes CRI-format container logs, linked from /var/log/containers', async () => {
    const r = await sshNode('node2', 'for f in /var/log/containers/*; do echo "$f $(readlink "$f")"; done');
    expect(r.code).toBe(0);
    const links = r.stdout.trim().split('\n');
    expect(links.length).toBeGreaterThanOrEqual(1);
    const [link, target] = links[links.length - 1].split(' ');
    expect(link).toMatch(/^\/var\/log\/containers\/etcd-node2_kube-system_etcd-[0-9a-f]{64}\.log$/);
    expect(target).toMatch(/^\/var\/log\/pods\/kube-system_etcd-node2_[0-9a-f]{32}\/etcd\/\d+\.log$/);
    const log = await sshNode('node2', `head -n 5 ${target}`);
    const lines = log.stdout.trim().split('\n');
    expect(lines).toHaveLength(5);
    for (const l of lines) expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [FP] /);
  });

  it('stop-etcd stops etcd on that node only, SSH stays up; start-etcd brings it back', async () => {
    await labSh('stop-etcd', 'node2');
    try {
      expect(await nodeProcesses('node2')).not.toContain('etcd');
      const where = await sshNode('node2', 'test ! -e /etc/kubernetes/manifests/etcd.yaml && test -f /etc/kubernetes/etcd.yaml.lab-stopped && echo parked');
      expect(where.stdout.trim()).toBe('parked');
      const health = await endpointHealth();
      expect(health).toEqual({ [labNode('node1').clientUrl]: true, [labNode('node2').clientUrl]: false, [labNode('node3').clientUrl]: true });
    } finally {
      await labSh('start-etcd', 'node2');
    }
    await waitLabHealthy();
    expect(await nodeProcesses('node2')).toContain('etcd');
  });

  it('stop-node takes a node away entirely; start-node brings it back with its data', async () => {
    const idsBefore = await memberIdsByName();
    await hostEtcdctl(['put', 'lab-test/stop-node', 'kept']);
    await labSh('stop-node', 'node3');
    try {
      const ssh = await sshNode('node3', 'true', 10_000);
      expect(ssh.code).toBe(255);
      expect(ssh.stderr).toMatch(/refused/i);
      expect((await endpointHealth())[labNode('node3').clientUrl]).toBe(false);
      expect(await labSh('status')).toMatch(/^node3 127\.10\.0\.13 ns=down sshd=down kubelet=down etcd=down/m);
      // Quorum holds with two.
      await hostEtcdctl(['put', 'lab-test/while-down', 'yes'], [labNode('node1').clientUrl, labNode('node2').clientUrl]);
    } finally {
      await labSh('start-node', 'node3');
    }
    await waitLabHealthy();
    expect((await sshNode('node3', 'true')).code).toBe(0);
    expect(await memberIdsByName()).toEqual(idsBefore);
    // Same data dir: the member caught up, including what was written while it was down.
    const got = await pollUntil('node3 to serve the keys', async () => {
      const out = await hostEtcdctl(['get', '--prefix', 'lab-test/', '--consistency=s', '--print-value-only'], [labNode('node3').clientUrl]);
      return out.includes('kept') && out.includes('yes') ? out : '';
    }, 20_000);
    expect(got).toContain('kept');
  });

  it('wipe-data leaves a member that crash-loops like a wiped real node (quorum holds)', async () => {
    await labSh('wipe-data', 'node1');
    const logs = await pollUntil('etcd on node1 to crash-loop', async () => {
      const r = await sshNode('node1', 'ls /var/log/pods/*/etcd/ | wc -l; cat /var/log/pods/*/etcd/*.log');
      return r.stdout.includes('has already been bootstrapped') ? r.stdout : '';
    }, 30_000, 1000);
    expect(logs).toMatch(/stderr F .*"level":"fatal"/);
    expect((await endpointHealth())[labNode('node1').clientUrl]).toBe(false);
    await hostEtcdctl(['endpoint', 'health'], [labNode('node2').clientUrl, labNode('node3').clientUrl]);
    // afterAll's labUp() recreates the lab.
  });
});
