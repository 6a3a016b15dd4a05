import { parseConfig } from '../src/config/load';
import { summarize } from '../src/engine/status-summary';
import type { ClusterSnapshot, EndpointStatus, MemberInfo, NodeProbe } from '../src/exec/types';

const cluster = parseConfig(`
clusters:
  - name: c
    channels: [console]
    nodes:
${[1, 2, 3].map((i) => `      - { name: n${i}, ssh: { host: 10.0.0.${i}, hostKey: "SHA256:${'A'.repeat(43)}" }, clientUrl: "https://10.0.0.${i}:2379", peerUrl: "https://10.0.0.${i}:2380" }`).join('\n')}
`).clusters[0];

const member = (id: string, name: string, ip: string, isLearner = false): MemberInfo => ({
  id, name, isLearner, peerUrls: [`https://${ip}:2380`], clientUrls: [`https://${ip}:2379`],
});
const list = [member('a1', 'n1', '10.0.0.1'), member('b2', 'n2', '10.0.0.2'), member('c3', 'n3', '10.0.0.3')];
const status = (id: string, leader = 'a1', isLearner = false): EndpointStatus => ({
  memberId: id, version: '3.4.23', dbSize: 1, dbSizeInUse: 1, leader, isLearner, raftTerm: '2', raftIndex: '10', raftAppliedIndex: '10', errors: [],
});
const up = (node: string, id: string, healthy = true, members = list): NodeProbe => ({
  node, clientUrl: '', reachable: true, status: status(id), health: { healthy, latencyMs: 1 }, members, alarms: [],
});
const down = (node: string, errorCode = 'SSH_UNREACHABLE'): NodeProbe => ({ node, clientUrl: '', reachable: false, errorCode, unreachableReason: `${node}: ${errorCode}` });
const snap = (...probes: NodeProbe[]): ClusterSnapshot => ({ cluster: 'c', collectedAt: '', probes });

describe('status verdicts', () => {
  it('healthy: all three voters pass the linearizable health read', () => {
    const s = summarize(cluster, snap(up('n1', 'a1'), up('n2', 'b2'), up('n3', 'c3')));
    expect(s).toMatchObject({ verdict: 'healthy', voters: 3, healthyVoters: 3, quorum: 2, tolerable: 1, leader: { name: 'n1' } });
    expect(s.members.map((m) => m.name)).toEqual(['n1', 'n2', 'n3']);
  });

  it('degraded, not quorum lost, when the bot cannot reach two nodes but one passes health', () => {
    const s = summarize(cluster, snap(up('n1', 'a1'), down('n2', 'SSH_HOST_KEY_MISMATCH'), down('n3', 'SSH_HOST_KEY_MISMATCH')));
    expect(s.verdict).toBe('degraded');
    expect(s.next.join(' ')).not.toContain('force-new-cluster');
    // access problems are not a reason to replace a member
    expect(s.next.join(' ')).not.toContain('replace-member');
  });

  it('quorum lost when reachable voters all fail health', () => {
    const s = summarize(cluster, snap(up('n1', 'a1', false), down('n2'), down('n3')));
    expect(s.verdict).toBe('quorum-lost');
    expect(s.next).toEqual(['/etcd force-new-cluster c n1']);
  });

  it('unknown when no member could be reached at all: no repair suggested, diagnose first', () => {
    const s = summarize(cluster, snap(down('n1'), down('n2'), down('n3')));
    expect(s.verdict).toBe('unknown');
    expect(s.next).toEqual(['/etcd diagnose c', '/etcd status c']);
  });

  it('an old member left under a reused name does not borrow the new one\'s health', () => {
    const withStale = [...list, member('d4', 'n1', '10.0.0.9')];
    const s = summarize(cluster, snap(up('n1', 'a1', true, withStale), up('n2', 'b2', true, withStale), up('n3', 'c3', true, withStale)));
    expect(s.voters).toBe(4);
    expect(s.healthyVoters).toBe(3);
    expect(s.tolerable).toBe(0);
    expect(s.verdict).toBe('degraded');
    expect(s.members.find((m) => m.id === 'd4')).toMatchObject({ unknownToConfig: true, healthy: false });
    expect(s.reasons.join('\n')).toContain('member n1 (d4) is not in clusters.yaml');
  });

  it('learners are not voters, even when no member list came back', () => {
    const learnerStatus = { ...up('n3', 'c3'), status: status('c3', 'a1', true), members: undefined };
    const s = summarize(cluster, snap({ ...up('n1', 'a1'), members: undefined }, { ...up('n2', 'b2'), members: undefined }, learnerStatus));
    expect(s.voters).toBe(2);
    expect(s.members.find((m) => m.name === 'n3')?.isLearner).toBe(true);
  });

  it('one node down of three: degraded, 0 tolerable, replace suggested', () => {
    const s = summarize(cluster, snap(up('n1', 'a1'), up('n2', 'b2'), down('n3')));
    expect(s).toMatchObject({ verdict: 'degraded', healthyVoters: 2, tolerable: 0 });
    expect(s.next).toContain('/etcd replace-member c n3');
  });
});
