/**
 * /etcd status end to end: signed Slack requests into Bolt's real HTTP receiver, a real
 * BullMQ worker on a real Redis, SSH into the lab's sshd, the etcd API through tunnels,
 * and the message read back from the fake Slack Web API.
 */
import { labSh, memberIdsByName, leaderName, waitLabHealthy, ensureLabHealthy, hostEtcdctl, labFresh, LAB_NODES, pollUntil, endpointHealth, wipeAllData, LAB_LAYOUT, LAB_ETCD } from './support/lab';
import { startHarness, Harness, LAB_CHANNEL, blocksText } from './support/harness';
import { click, threadText, waitPlanMessage } from './support/plans';

/** The table row of a node, as shown in the message: "node3  <id>  <role>  <health> …". */
function rowOf(text: string, node: string): string {
  // Table rows are padded with at least two spaces between cells.
  const line = text.split('\n').find((l) => new RegExp(`^\\s*${node}\\s{2,}`).test(l));
  if (!line) throw new Error(`no row for ${node} in:\n${text}`);
  return line;
}

describe('/etcd status lab', () => {
  let h: Harness;
  beforeAll(async () => {
    await ensureLabHealthy();
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('posts a table of the three real members, marks the real leader, and says healthy', async () => {
    const ids = await memberIdsByName();
    const leader = await leaderName();
    const res = await h.slash('status lab');
    expect(res.status).toBe(200);

    const msg = await h.nextMessage(/etcd status — lab/);
    for (const shown of [msg.blocks, msg.text]) {
      for (const [name, id] of Object.entries(ids)) {
        expect(rowOf(shown, name)).toContain(id);
      }
      expect(rowOf(shown, leader)).toMatch(/\bleader\b/);
      for (const other of Object.keys(ids).filter((n) => n !== leader)) expect(rowOf(shown, other)).toMatch(/\bfollower\b/);
      expect(shown).toContain('healthy: 3/3 voting members healthy, quorum holds (needs 2), 1 failure tolerable');
      // Versions from each member's /version: the lab's etcd, its cluster version (3.4 and 3.5
      // keep no storage version).
      const minor = LAB_ETCD.split('.').slice(0, 2).join('\\.');
      expect(shown).toMatch(new RegExp(`server ${minor}\\.\\d+ · cluster ${minor}\\.0 · storage not reported`));
      // Each member's DB against its quota, read from its own /metrics (etcd's default 2 GiB).
      for (const name of Object.keys(ids)) expect(rowOf(shown, name)).toMatch(/ \/ 2\.0 GiB \d+%/);
    }
    expect(Object.keys(ids).sort()).toEqual(['node1', 'node2', 'node3']);
    // Posted to the channel for everyone, not as an ephemeral reply.
    expect(h.fake.ephemerals()).toHaveLength(0);
  });

  it('reports a stopped node as unreachable, the cluster degraded, and what to do next', async () => {
    await labSh('stop-node', 'node3');
    try {
      const res = await h.slash('status lab');
      expect(res.status).toBe(200);
      const msg = await h.nextMessage(/etcd status — lab/);
      expect(rowOf(msg.blocks, 'node3')).toMatch(/unreachable: .+/);
      expect(msg.blocks).toContain('degraded: 2/3 voting members healthy, quorum holds (needs 2), 0 failures tolerable');
      expect(msg.blocks).toContain('/etcd replace-member lab node3');
      expect(rowOf(msg.blocks, 'node1')).toMatch(/ok \(\d+ ms\)/);
    } finally {
      await labSh('start-node', 'node3');
      await waitLabHealthy();
    }
  });

  it('says quorum lost when two of three nodes are down', async () => {
    await labSh('stop-node', 'node2');
    await labSh('stop-node', 'node3');
    try {
      await h.slash('status lab');
      const msg = await h.nextMessage(/etcd status — lab/);
      expect(msg.blocks).toMatch(/quorum lost: 0\/3 voting members healthy, quorum lost \(needs 2\), 0 failures tolerable/);
      expect(rowOf(msg.blocks, 'node2')).toMatch(/unreachable/);
      expect(rowOf(msg.blocks, 'node3')).toMatch(/unreachable/);
      expect(msg.blocks).toContain('/etcd force-new-cluster lab node1');
    } finally {
      await labSh('start-node', 'node2');
      await labSh('start-node', 'node3');
      await waitLabHealthy();
    }
  });

  it('every data dir wiped and etcd restarted: the cluster reads healthy to etcd, but status says data lost, with the restore command; diagnose agrees; forget starts over', async () => {
    for (let i = 0; i < 50; i++) await hostEtcdctl(['put', `/medic-test/vanish/${i}`, `v${i}`]);
    await h.slash('snapshot save lab');
    const saved = await h.nextMessage(/etcd snapshot save — lab/, 120_000);
    const snapId = /\b(\d{8}T\d{6}Z-node\d-[0-9a-f]{4})\b/.exec(saved.text)?.[1];
    expect(snapId).toBeDefined();
    // The bot sees the cluster as it is (revision > 50): remembered.
    await h.slash('status lab');
    expect((await h.nextMessage(/etcd status — lab/)).blocks).toContain('healthy: 3/3 voting members healthy');
    try {
      // Every node's data dir emptied; kubelet starts etcd again from the same manifests. static:
      // a brand-new, empty cluster under the same member ids; kubeadm: node1 bootstraps an empty
      // cluster of one, the joined nodes crash-loop.
      const outcome = await wipeAllData();
      expect(await hostEtcdctl(['get', '--prefix', '/medic-test/vanish/', '--keys-only'])).toBe('');

      await h.slash('status lab');
      const msg = await h.nextMessage(/etcd status — lab/);
      for (const shown of [msg.blocks, msg.text]) {
        expect(shown).toMatch(/data lost: the cluster came back empty/);
        expect(shown).not.toMatch(/OK: healthy/);
      }
      expect(msg.blocks).toMatch(/came back empty: it is at revision 1 \(nothing ever written\), the bot has seen it at revision \d+/);
      expect(msg.blocks).toContain(`/etcd restore lab ${snapId} --mode all`);

      await h.slash('diagnose lab');
      const diag = await h.nextMessage(/etcd diagnose — lab/, 60_000);
      expect(diag.blocks).toMatch(/data-lost/);
      expect(diag.blocks).toContain(`/etcd restore lab ${snapId} --mode all`);

      // Forgotten on purpose (a plan someone else approves): the empty cluster is now the one the bot knows.
      const before = h.fake.messages(LAB_CHANNEL).length;
      await h.slash('forget lab', { user: 'U0ALICE' });
      const plan = await waitPlanMessage(h, /etcd forget — lab/, before);
      const text = blocksText(plan.blocks ?? []);
      expect(text).toMatch(/Remembered[\s\S]*cluster id [0-9a-f]+, highest revision \d+/);
      expect(text).toMatch(/Contradicted by[\s\S]*came-back-empty/);
      expect(text).toMatch(/needs 1 approval/);
      expect((await click(h, plan, 'approve', 'U0BOB')).reply).toMatch(/it runs now/);
      await h.fake.waitFor(() => /done: all 1 steps ran/.test(threadText(h, plan.ts)) || undefined, 60_000);
      expect(threadText(h, plan.ts)).toMatch(/step 1\/1: bot\.forgetMemory .*forgot what the bot had seen of lab/);
      await h.slash('status lab');
      const fresh = (await h.nextMessage(/etcd status — lab/)).blocks;
      if (outcome === 'three') {
        expect(fresh).toContain('healthy: 3/3 voting members healthy');
      } else {
        // kubeadm: the cluster node1 bootstrapped alone; the joined nodes are to be added back.
        expect(fresh).toContain('degraded: 1/1 voting members healthy');
        for (const n of ['node2', 'node3']) {
          expect(fresh).toContain(`${n} is configured but is not a member of the cluster`);
          expect(fresh).toContain(`/etcd add-member lab ${n}`);
        }
      }
    } finally {
      await labFresh();
    }
  });

  it('the lab as `up` forms it: manifests written as the layout says (what the runbooks above edited)', async () => {
    // Runs after the wipe test's fresh lab.
    await waitLabHealthy();
    // The manifests the lab formed the cluster with (what the runbooks then edit).
    const manifest = async (n: string) => labSh('exec', n, '--', 'cat', '/etc/kubernetes/manifests/etcd.yaml');
    const peer = (n: string) => `${n}=${LAB_NODES.find((x) => x.name === n)!.peerUrl}`;
    if (LAB_LAYOUT === 'kubeadm') {
      // As kubeadm init and join write them: node1 bootstrapped alone, without state or token
      // flags; node2 and node3 joined `existing`, each listing the members known at its join.
      const m1 = await manifest('node1');
      expect(m1).toContain(`- --initial-cluster=${peer('node1')}\n`);
      expect(m1).not.toMatch(/initial-cluster-state|initial-cluster-token/);
      expect(await manifest('node2')).toContain(`- --initial-cluster=${peer('node1')},${peer('node2')}\n    - --initial-cluster-state=existing\n`);
      expect(await manifest('node3')).toContain(`- --initial-cluster=${peer('node1')},${peer('node2')},${peer('node3')}\n    - --initial-cluster-state=existing\n`);
    } else {
      for (const n of ['node1', 'node2', 'node3']) {
        expect(await manifest(n)).toContain(`- --initial-cluster=${['node1', 'node2', 'node3'].map(peer).join(',')}\n    - --initial-cluster-state=new\n`);
      }
    }
  });
});

describe('/etcd status all (every cluster, one line each)', () => {
  let h: Harness;
  const FLEET = Array.from({ length: 10 }, (_, i) => `fleet-${String(i + 1).padStart(2, '0')}`);
  beforeAll(async () => {
    await ensureLabHealthy();
    h = await startHarness({
      mutateConfig: (c) => {
        const lab = c.clusters.find((x) => x.name === 'lab')!;
        // Ten clusters over the lab's members under other names, one whose node3 refuses SSH,
        // and one this channel may not read.
        for (const name of FLEET) c.clusters.push({ ...structuredClone(lab), name });
        const broken = structuredClone(lab);
        broken.name = 'fleet-broken';
        broken.ssh.connectRetryMs = 500;
        broken.nodes[2]!.ssh.port = 2299;
        c.clusters.push(broken);
        c.clusters.push({ ...structuredClone(lab), name: 'fleet-elsewhere', channels: ['C0OTHER01'] });
      },
    });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('one message: the degraded cluster first with its next step, every other one healthy with the real leader; the unreadable one only counted', async () => {
    const leader = await leaderName();
    const res = await h.slash('status all');
    expect(res.status).toBe(200);
    const msg = await h.nextMessage(/etcd status — every cluster/);
    const visible = ['lab', 'lab-botcert', ...FLEET, 'fleet-broken'];
    for (const shown of [msg.blocks, msg.text]) {
      expect(shown).toContain(`${visible.length - 1} of ${visible.length} clusters healthy; degraded: fleet-broken`);
      const rows = shown.split('\n').filter((l) => /^\s*(lab|fleet-)[\w-]*\s{2,}/.test(l));
      expect(rows).toHaveLength(visible.length);
      // Worst first.
      expect(rows[0]).toMatch(/^\s*fleet-broken\s+degraded\s+2\/3\s+\S+\s+\d+(\.\d)? [KMG]i?B\s+\/etcd \S+/);
      for (const name of visible.filter((n) => n !== 'fleet-broken')) {
        const row = rows.find((r) => new RegExp(`^\\s*${name}\\s`).test(r));
        expect(row).toMatch(new RegExp(`^\\s*${name}\\s+healthy\\s+3/3\\s+${leader}\\s+\\d+(\\.\\d)? [KMG]i?B\\s+-\\s*$`));
      }
      expect(shown).toContain('1 more cluster is configured but not readable by you from this channel');
      expect(shown).not.toContain('fleet-elsewhere');
    }
    // Details on demand: the full status of the one in trouble.
    expect(msg.blocks).toContain('/etcd status fleet-broken');
    expect(h.fake.ephemerals()).toHaveLength(0);
  });

  it('"/etcd fleet" is the same command; from a channel that may read no cluster it is refused at once', async () => {
    const res = await h.slash('fleet');
    expect(res.status).toBe(200);
    await h.nextMessage(/etcd status — every cluster/);
    const refused = await h.slash('status all', { channel: 'C0NOBODY1' });
    expect(refused.status).toBe(200);
    expect(refused.body).toMatch(/none of the 14 configured clusters may be read by you from this channel/);
  });
});
