/**
 * probeCluster against the lab (3 etcd 3.4 members with TLS, sshd per node). Read-only:
 * failures are simulated in config copies, never by stopping lab nodes.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { loadConfig } from '../src/config/load';
import { ClusterConfig } from '../src/config/schema';
import { MemberLinks, probeCluster } from '../src/exec/probe';
import { createSshPool, SshPool } from '../src/exec/ssh';
import { LAB_BOT_KEY, labConfigPath, memberList, waitLabHealthy } from './support/lab';

function labCluster(name: string): ClusterConfig {
  const c = loadConfig(labConfigPath()).clusters.find((x) => x.name === name);
  if (!c) throw new Error(`no cluster ${name} in the lab config`);
  return structuredClone(c);
}

let pool: SshPool;
beforeAll(() => waitLabHealthy()); // an earlier suite may have left it recovering
beforeEach(() => {
  pool = createSshPool({ privateKey: readFileSync(LAB_BOT_KEY), connectTimeoutMs: 5000, commandTimeoutMs: 10000 });
});
afterEach(async () => {
  await pool.closeAll();
});

describe('probeCluster (lab)', () => {
  it.each(['lab', 'lab-botcert'])('sees 3 healthy members agreeing on a leader (%s)', async (name) => {
    const cluster = labCluster(name);
    const snap = await probeCluster(cluster, { ssh: pool, now: () => new Date('2024-01-02T03:04:05Z') });
    expect(snap.cluster).toBe(name);
    expect(snap.collectedAt).toBe('2024-01-02T03:04:05.000Z');
    expect(snap.probes.map((p) => p.node)).toEqual(['node1', 'node2', 'node3']);

    // etcdctl on the host, as an operator would check.
    const ids = (await memberList()).map((m) => m.id).sort();
    for (const p of snap.probes) {
      expect(p).toMatchObject({ reachable: true, health: { healthy: true }, alarms: [] });
      expect(p.errorCode).toBeUndefined();
      expect(p.members!.map((m) => m.id).sort()).toEqual(ids);
      // The header proves which member answered: the one named like the node.
      expect(p.members!.find((m) => m.id === p.status!.memberId)?.name).toBe(p.node);
      expect(p.status!.version).toMatch(/^3\.\d+\.\d+/);
      expect(p.status!.dbSize).toBeGreaterThan(0);
    }
    const leaders = new Set(snap.probes.map((p) => p.status!.leader));
    expect(leaders.size).toBe(1);
    expect(ids).toContain([...leaders][0]);
  });

  it('marks a node whose host key changed unreachable, naming both fingerprints', async () => {
    const cluster = labCluster('lab');
    const node3 = cluster.nodes[2]!;
    const real = node3.ssh.hostKey;
    const wrong = 'SHA256:' + 'A'.repeat(43);
    node3.ssh.hostKey = wrong;
    const snap = await probeCluster(cluster, { ssh: pool });
    const [p1, p2, p3] = snap.probes;
    expect(p1!.reachable && p2!.reachable).toBe(true);
    expect(p3).toMatchObject({ node: 'node3', reachable: false, errorCode: 'SSH_HOST_KEY_MISMATCH' });
    expect(p3!.unreachableReason).toContain(`expected ${wrong}`);
    expect(p3!.unreachableReason).toContain(`got ${real}`);
    expect(p3!.status).toBeUndefined();
  });

  it('bounds a node that accepts TCP but never answers by statusTimeoutMs', async () => {
    const silent = net.createServer(() => undefined); // accepts, never speaks SSH
    const sockets: net.Socket[] = [];
    silent.on('connection', (s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    try {
      const cluster = labCluster('lab');
      cluster.statusTimeoutMs = 2000;
      cluster.ssh.connectTimeoutMs = 60000;
      cluster.nodes[2]!.ssh = { ...cluster.nodes[2]!.ssh, host: '127.0.0.1', port: (silent.address() as net.AddressInfo).port };
      const snap = await probeCluster(cluster, { ssh: pool });
      expect(snap.probes.slice(0, 2).every((p) => p.reachable)).toBe(true);
      expect(snap.probes[2]).toMatchObject({ node: 'node3', reachable: false, errorCode: 'TIMEOUT' });
      expect(snap.probes[2]!.unreachableReason).toMatch(/no answer within 2000 ms \(while connecting over ssh\)/);
    } finally {
      sockets.forEach((s) => s.destroy());
      await new Promise((r) => silent.close(r));
    }
  });

  it('reports an etcd port nobody listens on, with the node-side reason', async () => {
    const cluster = labCluster('lab');
    cluster.nodes[2]!.clientUrl = 'https://127.10.0.13:2399';
    const snap = await probeCluster(cluster, { ssh: pool });
    expect(snap.probes[2]).toMatchObject({ node: 'node3', reachable: false, errorCode: 'ETCD_UNAVAILABLE', health: { healthy: false } });
    expect(snap.probes[2]!.unreachableReason).toMatch(/tunnel to 127\.10\.0\.13:2399: .*refused/i);
  });

  it('reports a refused ssh port as unreachable after trying it for ssh.connectRetryMs, saying how long', async () => {
    const cluster = labCluster('lab');
    cluster.nodes[2]!.ssh.port = 2299;
    cluster.ssh.connectRetryMs = 1500;
    const snap = await probeCluster(cluster, { ssh: pool });
    expect(snap.probes[2]).toMatchObject({ reachable: false, errorCode: 'SSH_UNREACHABLE' });
    expect(snap.probes[2]!.unreachableReason).toMatch(/^ssh root@127\.10\.0\.13:2299 \(node3\): connect ECONNREFUSED \([3-9] tries in 1\.\d s\)$/);
    // The others answered at once, whatever node3 took.
    expect(snap.probes[0]!.reachable && snap.probes[1]!.reachable).toBe(true);
  });

  it('a node whose sshd comes up a second late is reachable, not reported unreachable', async () => {
    const cluster = labCluster('lab');
    const node3 = cluster.nodes[2]!;
    // A port that refuses connections for a second, then leads to node3's real sshd.
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (probe.address() as net.AddressInfo).port;
        probe.close(() => resolve(p));
      });
    });
    const realHost = node3.ssh.host;
    const realPort = node3.ssh.port ?? 22;
    node3.ssh.host = '127.0.0.1';
    node3.ssh.port = port;
    const sockets: net.Socket[] = [];
    let late: net.Server | undefined;
    const opening = new Promise<void>((resolve) => setTimeout(() => {
      late = net.createServer((inbound) => {
        const outbound = net.connect(realPort, realHost);
        sockets.push(inbound, outbound);
        inbound.pipe(outbound).pipe(inbound);
        inbound.on('error', () => outbound.destroy());
        outbound.on('error', () => inbound.destroy());
      }).listen(port, '127.0.0.1', () => resolve());
    }, 1000));
    try {
      const snap = await probeCluster(cluster, { ssh: pool });
      await opening;
      expect(snap.probes[2]).toMatchObject({ node: 'node3', reachable: true, health: { healthy: true } });
      expect(snap.probes[2]!.unreachableReason).toBeUndefined();
    } finally {
      await pool.closeAll();
      sockets.forEach((x) => x.destroy());
      await new Promise((r) => (late ? late.close(r) : r(undefined)));
    }
  });
});

/** A TCP proxy on the node's own address (the member's stand-in): stop it and start it again like a member restarting. */
async function memberProxy(host: string, target: { host: string; port: number }) {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  let server: net.Server | undefined;
  let port = 0;
  const start = () => new Promise<void>((resolve, reject) => {
    server = net.createServer((inbound) => {
      accepted++;
      const outbound = net.connect(target.port, target.host);
      for (const x of [inbound, outbound]) { sockets.add(x); x.on('close', () => sockets.delete(x)); x.on('error', () => x.destroy()); }
      inbound.on('close', () => outbound.destroy());
      outbound.on('close', () => inbound.destroy());
      inbound.pipe(outbound).pipe(inbound);
    });
    server.once('error', reject);
    server.listen(port, host, () => { port = (server!.address() as net.AddressInfo).port; resolve(); });
  });
  const cut = () => { for (const x of sockets) x.destroy(); };
  const stop = async () => { cut(); await new Promise((r) => (server ? server.close(r) : r(undefined))); };
  await start();
  return { port: () => port, accepted: () => accepted, cut, start, stop };
}

describe('kept connections between probes (a worker\'s status jobs)', () => {
  it('a warm probe opens nothing new, and a member that went away and came back is seen at once', async () => {
    const cluster = labCluster('lab');
    const node3 = cluster.nodes[2]!;
    const real = new URL(node3.clientUrl);
    const proxy = await memberProxy(real.hostname, { host: real.hostname, port: Number(real.port) });
    node3.clientUrl = `https://${real.hostname}:${proxy.port()}`;
    const kept = createSshPool({ privateKey: readFileSync(LAB_BOT_KEY), connectTimeoutMs: 5000, commandTimeoutMs: 10000, idleMs: 60_000 });
    const links = new MemberLinks({ idleMs: 60_000 });
    const full = (p: { reachable: boolean; health?: { healthy: boolean }; members?: unknown[]; alarms?: unknown[] } | undefined) =>
      !!p && p.reachable && p.health?.healthy === true && !!p.members?.length && !!p.alarms;
    try {
      const first = await probeCluster(cluster, { ssh: kept, links });
      expect(first.probes.every(full)).toBe(true);
      expect(kept.size()).toBe(3);
      expect(links.size()).toBe(3);
      const dialled = proxy.accepted();
      expect(dialled).toBeGreaterThan(0);

      // Warm: the same answers, over the connections already open.
      const warm = await probeCluster(cluster, { ssh: kept, links });
      expect(warm.probes.every(full)).toBe(true);
      expect(warm.probes.map((p) => p.status!.memberId)).toEqual(first.probes.map((p) => p.status!.memberId));
      expect(proxy.accepted()).toBe(dialled);
      expect(kept.size()).toBe(3);

      // The member's connections are cut (it restarted): the next probe still answers in full.
      proxy.cut();
      const afterCut = await probeCluster(cluster, { ssh: kept, links });
      expect(full(afterCut.probes[2])).toBe(true);

      // It goes away: unreachable, with the node's reason; the link is not kept.
      await proxy.stop();
      const down = await probeCluster(cluster, { ssh: kept, links });
      expect(down.probes[2]).toMatchObject({ node: 'node3', reachable: false });
      expect(down.probes[2]!.unreachableReason).toMatch(/refused/i);
      expect(full(down.probes[0]) && full(down.probes[1])).toBe(true);
      expect(links.size()).toBe(2);

      // Back: the very next probe sees it (no gRPC back-off carried over from the failure).
      await proxy.start();
      const back = await probeCluster(cluster, { ssh: kept, links });
      expect(full(back.probes[2])).toBe(true);
      expect(links.size()).toBe(3);
    } finally {
      links.closeAll();
      await kept.closeAll();
      await proxy.stop();
    }
  });
});
