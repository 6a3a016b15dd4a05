/**
 * /etcd diagnose end to end: the lab broken each way the runbook knows, a signed
 * `/etcd diagnose lab` into Bolt's receiver, the real worker probing over SSH and reading
 * etcd's logs on the nodes, and the message read back from the fake Slack. Every test puts
 * the lab back to three healthy members (lab.sh up rebuilds one that isn't).
 */
import { createSnapshotStore } from '../src/snapshot/store';
import { newestVerified } from '../src/snapshot/retention';
import { endpointHealth, hostEtcdctl, hostEtcdctlRaw, LAB_BOT_CERT, LAB_ENDPOINTS, labFresh, labNode, labSh, pollUntil, run, waitLabHealthy, ensureLabHealthy, LAB_LAYOUT } from './support/lab';
import { Harness, startHarness, TEST_SNAPSHOT_DIR } from './support/harness';

jest.setTimeout(240_000);

/** `etcdctl put <key>` with the value on stdin (a 200 kB value is too long for an argument). */
function putFromStdin(key: string, value: string) {
  return run('etcdctl', [
    `--endpoints=${LAB_ENDPOINTS.join(',')}`, `--cacert=${LAB_BOT_CERT.ca}`, `--cert=${LAB_BOT_CERT.cert}`, `--key=${LAB_BOT_CERT.key}`,
    '--dial-timeout=2s', '--command-timeout=5s', 'put', key,
  ], { input: value, timeoutMs: 20_000, env: { ...process.env, ETCDCTL_API: '3' } });
}

/** The finding headings of a diagnose message: "[scenario]" after each title. */
function scenariosOf(text: string): string[] {
  return [...text.matchAll(/\* \[([a-z-]+)\]/g)].map((m) => m[1]);
}

describe('/etcd diagnose lab', () => {
  let h: Harness;

  /** Asks until the diagnosis shows what the lab was broken into (etcd takes a moment to fail each way). */
  /** Asks until diagnose names exactly `expected` (and `also` holds: evidence a crash loop logs only after a while). */
  async function diagnoseUntil(expected: string[], timeoutMs = 60_000, also: (text: string) => boolean = () => true): Promise<string> {
    let last = '';
    await pollUntil(`diagnose to find ${expected.join(', ')}`, async () => {
      await h.slash('diagnose lab');
      const msg = await h.nextMessage(/etcd diagnose — lab/, 60_000);
      last = msg.blocks;
      return JSON.stringify(scenariosOf(last)) === JSON.stringify(expected) && also(last);
    }, timeoutMs, 1000).catch((e: Error) => { throw new Error(`${e.message}\nlast message:\n${last}`); });
    return last;
  }

  /** Rebuilds the lab when a test left it unhealthy (after `waitMs` to recover by itself). */
  async function healLab(waitMs = 15_000): Promise<void> {
    const ok = await waitLabHealthy(waitMs).then(() => true, () => false);
    // lab.sh up keeps a healthy lab and recreates any other.
    if (!ok) await labSh('up');
    await waitLabHealthy();
  }

  beforeAll(async () => {
    await ensureLabHealthy();
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.stop();
    await healLab();
  });

  it('a healthy cluster: no known failure scenario', async () => {
    await h.slash('diagnose lab');
    const msg = await h.nextMessage(/etcd diagnose — lab/);
    expect(msg.blocks).toContain('no known failure scenario recognised — status healthy: 3/3 voting members healthy');
    // Every etcd certificate of every node read, none close to expiry (the lab's last a year or more).
    expect(msg.blocks).toMatch(/certificates: 12 read on 3 nodes, the first to expire node\d \S+\.crt on \d{4}-\d\d-\d\d/);
    // endpoint hashkv on every member (etcd's gRPC method, called by the bot itself), all agreeing.
    expect(msg.blocks).toMatch(/hashkv at revision \d+: node1, node2, node3 agree/);
    expect(h.fake.ephemerals()).toHaveLength(0);
  });

  it('one member down (node stopped): replace-member, or start the node again', async () => {
    await labSh('stop-node', 'node3');
    try {
      const text = await diagnoseUntil(['member-down']);
      expect(text).toContain('node3\'s member is down: if its data is intact, start the node again; otherwise replace the member');
      expect(text).toMatch(/node3: the bot can't log in over SSH either \(.+\): the node itself looks down/);
      expect(text).toContain('quorum holds: 2/3 voting members healthy, 0 more failures tolerable');
      expect(text).toContain('/etcd replace-member lab node3');
    } finally {
      await labSh('start-node', 'node3');
      await waitLabHealthy();
    }
  });

  it('a member whose data was wiped: the crash loop\'s "has already been bootstrapped" (static) or raft\'s "tocommit out of range" (kubeadm) from its log, replace-member', async () => {
    try {
      // node3's manifest as lab.sh writes it: static `new`, kubeadm `existing` (joined). An
      // earlier suite may have rebuilt node3 otherwise, and then etcd logs a different crash.
      await labFresh();
      await labSh('wipe-data', 'node3');
      const text = await diagnoseUntil(['member-data-wiped']);
      expect(text).toMatch(/node3's data was wiped: its member \([0-9a-f]+\) is still in the cluster/);
      if (LAB_LAYOUT === 'static') {
        expect(text).toMatch(/node3: \S+ F discovery failed error=member [0-9a-f]+ has already been bootstrapped/);
      } else {
        expect(text).toMatch(/node3: .*tocommit\(\d+\) is out of range \[lastIndex\(0\)\]/);
        expect(text).toContain("the leader's commit index is beyond node3's empty raft log: its WAL was lost");
      }
      expect(text).toContain('/etcd replace-member lab node3');
    } finally {
      await healLab(0);
    }
  });

  it('quorum lost (two nodes stopped): force-new-cluster from the survivor with the highest raft index', async () => {
    await labSh('stop-node', 'node2');
    await labSh('stop-node', 'node3');
    try {
      const text = await diagnoseUntil(['quorum-lost']);
      expect(text).toMatch(/quorum lost: force a new cluster from node1 \(highest raft index, \d+\), then rebuild the others/);
      expect(text).toContain('0 of 3 voting members healthy, quorum needs 2');
      expect(text).toMatch(/node1 answers with its data: raft index \d+/);
      expect(text).toContain('/etcd force-new-cluster lab node1');
    } finally {
      await labSh('start-node', 'node2');
      await labSh('start-node', 'node3');
      await healLab();
    }
  });

  it('all members lost (etcd stopped everywhere): restore from the newest verified snapshot', async () => {
    await h.slash('snapshot save lab');
    const saved = await h.nextMessage(/etcd snapshot save — lab/, 120_000);
    const snap = newestVerified(await createSnapshotStore({ dir: TEST_SNAPSHOT_DIR }).list('lab'));
    if (!snap) throw new Error(`snapshot save left no verified snapshot:\n${saved.blocks}`);
    try {
      for (const n of ['node1', 'node2', 'node3']) await labSh('stop-etcd', n);
      const text = await diagnoseUntil(['all-members-lost']);
      expect(text).toContain(`all members lost: no member's etcd answers; restore every node from the newest verified snapshot ${snap.id} (or first start etcd again where the data is intact)`);
      expect(text).toContain(`newest verified snapshot: ${snap.id}, revision ${snap.revision === '0' ? 'unknown' : snap.revision}`);
      expect(text).toContain('node1, node2, node3 still have their data dir');
      expect(text).toContain('node1: SSH works; no etcd process; manifest not in place; /var/lib/etcd/member exists');
      expect(text).toContain(`/etcd restore lab ${snap.id} --mode all`);
    } finally {
      for (const n of ['node1', 'node2', 'node3']) await labSh('start-etcd', n).catch(() => undefined);
      await healLab();
    }
  });

  it('peers rejecting each other (node3 restarted with another cluster token): names node3 from the cluster ids in its log', async () => {
    try {
      await labSh('stop-etcd', 'node3');
      await labSh('exec', 'node3', '--', 'rm', '-rf', '/var/lib/etcd/member');
      // Bootstrapped anew under another token, whichever way the lab formed node3 (static: `new`
      // with the lab's token; kubeadm: joined `existing`, no token).
      await labSh('exec', 'node3', '--', 'sed', '-i', '-e', '/--initial-cluster-state=/d', '-e', '/--initial-cluster-token=/d',
        '-e', 's/^    - --initial-cluster=.*$/&\\n    - --initial-cluster-state=new\\n    - --initial-cluster-token=another-cluster/', '/etc/kubernetes/etcd.yaml.lab-stopped');
      await labSh('start-etcd', 'node3');
      const text = await diagnoseUntil(['cluster-id-mismatch']);
      expect(text).toMatch(/node3 is on another cluster \(different cluster ID\)/);
      expect(text).toMatch(/node3 runs as member [0-9a-f]+ of cluster [0-9a-f]+, which the cluster's member list doesn't have \(node3 is member [0-9a-f]+ there\)/);
      expect(text).toMatch(/cluster [0-9a-f]+: node1, node2 \(the healthy members\); cluster [0-9a-f]+: node3/);
      expect(text).toMatch(/node3: \S+ W (request cluster ID mismatch|request sent was ignored by remote peer due to cluster ID mismatch)/);
      expect(text).toContain('/etcd replace-member lab node3');
    } finally {
      await healLab(0);
    }
  });

  it('stale members after force-new-cluster (node2, node3 come back with their old identity): add-member each', async () => {
    try {
      await labSh('stop-node', 'node2');
      await labSh('stop-node', 'node3');
      await labSh('stop-etcd', 'node1');
      await labSh('exec', 'node1', '--', 'sed', '-i', 's/^    - --data-dir=\\/var\\/lib\\/etcd$/&\\n    - --force-new-cluster/', '/etc/kubernetes/etcd.yaml.lab-stopped');
      await labSh('start-etcd', 'node1');
      await pollUntil('node1 alone and healthy', async () => (await endpointHealth([labNode('node1').clientUrl]))[labNode('node1').clientUrl], 60_000, 500);
      await labSh('start-node', 'node2');
      await labSh('start-node', 'node3');
      // A member that just restarted has not yet heard from its peers that it was removed: its
      // finding says only "not a member" until its log does.
      const removed = (n: string) => `${n} was removed from the cluster (after force-new-cluster, or member remove) but its etcd still runs with its old identity`;
      const text = await diagnoseUntil(['stale-member', 'stale-member'], 60_000, (t) => t.includes(removed('node2')) && t.includes(removed('node3')));
      for (const n of ['node2', 'node3']) {
        expect(text).toContain(`${n} was removed from the cluster (after force-new-cluster, or member remove) but its etcd still runs with its old identity`);
        expect(text).toContain(`/etcd add-member lab ${n}`);
      }
      expect(text).toMatch(/node[23]: \S+ W (server error error=the member has been permanently removed from the cluster|data-dir used by this member must be removed)/);
    } finally {
      await healLab(0);
    }
  });

  it('a manifest written for etcd 3.6 (--feature-gates) on an older etcd: node3 refuses it, named from its log', async () => {
    const parked = '/etc/kubernetes/etcd.yaml.lab-stopped';
    try {
      await labSh('stop-etcd', 'node3');
      await labSh('exec', 'node3', '--', 'sed', '-i', 's/^    - --snapshot-count=10000$/&\\n    - --feature-gates=InitialCorruptCheck=true/', parked);
      await labSh('start-etcd', 'node3');
      const text = await diagnoseUntil(['config-refused']);
      expect(text).toContain('node3\'s etcd refuses its configuration: --feature-gates is unknown to this etcd version');
      expect(text).toMatch(/node3: flag provided but not defined: -feature-gates/);
    } finally {
      await labSh('stop-etcd', 'node3').catch(() => undefined);
      await labSh('exec', 'node3', '--', 'sed', '-i', '/--feature-gates=/d', parked).catch(() => undefined);
      await labSh('start-etcd', 'node3').catch(() => undefined);
      await healLab();
    }
  });

  it('NOSPACE alarm (node3 with a tiny --quota-backend-bytes, a few big puts): defrag, then alarm-disarm', async () => {
    const status = await hostEtcdctl(['endpoint', 'status', '-w', 'json'], [labNode('node3').clientUrl]);
    const quota = Number(/"dbSize":(\d+)/.exec(status)![1]) + 400_000;
    const parked = '/etc/kubernetes/etcd.yaml.lab-stopped';
    try {
      await labSh('stop-etcd', 'node3');
      await labSh('exec', 'node3', '--', 'sed', '-i', `s/^    - --snapshot-count=10000$/&\\n    - --quota-backend-bytes=${quota}/`, parked);
      await labSh('start-etcd', 'node3');
      await waitLabHealthy();
      const big = 'x'.repeat(200_000);
      await pollUntil('NOSPACE raised', async () => {
        const r = await putFromStdin(`/medic-test/nospace/${Date.now()}`, big);
        return /database space exceeded/.test(r.stderr);
      }, 60_000, 100);
      const text = await diagnoseUntil(['nospace-alarm']);
      expect(text).toContain('alarm NOSPACE raised on node3: the cluster refuses writes until it is disarmed');
      // node3 logs its quota when it applies a put over it; a put it receives itself is refused before that (no line).
      expect(text).toMatch(new RegExp(`node3: \\S+ W (message exceeded backend quota; raising alarm error=etcdserver: no space quota-size-bytes=${quota}|alarm raised alarm=NOSPACE)`));
      expect(text).toContain('/etcd defrag lab');
      expect(text).toContain('/etcd alarm-disarm lab');
    } finally {
      // Give the space back by hand (the bot's own defrag and disarm have their tests).
      await labSh('stop-etcd', 'node3').catch(() => undefined);
      await labSh('exec', 'node3', '--', 'sed', '-i', '/--quota-backend-bytes=/d', parked).catch(() => undefined);
      await labSh('start-etcd', 'node3').catch(() => undefined);
      // Not "healthy" yet: from etcd 3.5 on, endpoint health fails while an alarm is raised.
      await pollUntil('node3 answering again', async () => (await hostEtcdctlRaw(['endpoint', 'status'], [labNode('node3').clientUrl])).code === 0, 60_000, 250).catch(() => undefined);
      await hostEtcdctlRaw(['del', '--prefix', '/medic-test/nospace/']);
      const rev = /"revision":(\d+)/.exec((await hostEtcdctlRaw(['endpoint', 'status', '-w', 'json'], [labNode('node1').clientUrl])).stdout)?.[1];
      if (rev) await hostEtcdctlRaw(['compact', rev]);
      await hostEtcdctlRaw(['defrag']);
      await hostEtcdctlRaw(['alarm', 'disarm']);
      await healLab();
    }
    expect((await hostEtcdctl(['alarm', 'list'])).trim()).toBe('');
  });
});
