/**
 * force-new-cluster plans: only under quorum loss, from a survivor that still answers, with
 * the flag removed again and every reachable node rebuilt in the same plan.
 */
import forceNewCluster from '../commands/force-new-cluster';
import { isMedicError } from '../src/engine/errors';
import { requiredApprovals } from '../src/engine/workflow';
import { buildPlan, planState, stepList } from './support/plan-state';

const plan = (d: Parameters<typeof planState>[0], survivor = 'node1') => buildPlan(forceNewCluster, planState(d), { cluster: 'prod-eu1', survivor }).plan;

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isMedicError(e) && e.code === 'UNSAFE') return e.message;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('force-new-cluster', () => {
  it('is refused while the cluster has quorum, with the reason', () => {
    expect(refusal(() => plan({}))).toMatch(/prod-eu1 has not lost quorum \(healthy: 3\/3 voting members healthy\)/);
    expect(refusal(() => plan({ down: ['node3'] }))).toMatch(/has not lost quorum \(degraded: 2\/3/);
  });

  it('is refused from a survivor whose etcd does not answer', () => {
    expect(refusal(() => plan({ down: ['node1', 'node2'], unhealthy: ['node3'] }, 'node1'))).toMatch(/node1's etcd did not answer/);
  });

  it('re-forms from the survivor, removes the flag, rebuilds the others, verifies once', () => {
    const p = plan({ down: ['node2', 'node3'], unhealthy: ['node1'] });
    const add = (n: string) => [`node.stopEtcd ${n}`, `node.moveDataAside ${n}`, `node.ensurePki ${n}`, `etcd.memberAddLearner ${n}`,
      `node.writeConfig ${n}`, `node.startEtcd ${n}`, `etcd.waitLearnerSynced ${n}`, `etcd.memberPromote ${n}`];
    expect(stepList(p)).toEqual([
      'node.stopEtcd node1', 'node.copyDataAside node1', 'node.setFlag node1', 'node.startEtcd node1', 'etcd.waitSingleMember node1',
      'node.stopEtcd node1', 'node.setFlag node1', 'node.startEtcd node1', 'etcd.waitSingleMember node1',
      ...add('node2'), ...add('node3'), 'cluster.verify',
    ]);
    expect(p.steps[2].params).toEqual({ node: 'node1', flag: '--force-new-cluster' });
    expect(p.steps[6].params).toEqual({ node: 'node1', flag: '--force-new-cluster', remove: true });
    expect(p.steps[p.steps.length - 1].params).toEqual({ voters: 3 });
    expect(p.facts.find((f) => f.label === 'Survivor')!.value).toMatch(/^node1 \(member [0-9a-f]+\)$/);
    expect(p.facts.find((f) => f.label === 'Survivor raft index')).toMatchObject({ value: expect.stringMatching(/^\d+$/), volatile: true });
  });

  it('leaves out nodes it cannot reach over SSH, and says so', () => {
    const p = plan({ down: ['node2'], sshUnreachable: ['node3'], unhealthy: ['node1'] });
    expect(stepList(p).filter((s) => s.endsWith('node3'))).toEqual([]);
    expect(p.warnings.join('\n')).toMatch(/node3 can't be reached over SSH \(ssh 10\.0\.0\.13:22: connect ECONNREFUSED\): it is not added back by this plan; add it later with \/etcd add-member prod-eu1 node3/);
    expect(p.steps[p.steps.length - 1].params).toEqual({ voters: 2 });
  });

  it('needs two approvals from people other than the requester', () => {
    expect(requiredApprovals(forceNewCluster, planState({}).cluster)).toBe(2);
  });
});
