/**
 * /etcd status end to end: signed Slack requests into Bolt's real HTTP receiver, a real
 * BullMQ worker on a real Redis, SSH into the lab's sshd, the etcd API through tunnels,
 * and the message read back from the fake Slack Web API.
 */
import { labSh, memberIdsByName, leaderName, waitLabHealthy, ensureLabHealthy } from './support/lab';
import { startHarness, Harness } from './support/harness';

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
});
