/**
 * What status adds to the members' own answers: DB size against each member's quota, and
 * members on different etcd minor versions. Probe-shaped states, the real statusReport.
 */
import { statusReport } from '../commands/status';
import { summarize } from '../src/engine/status-summary';
import { clusterConfig, ClusterDescription, GiB, snapshotOf } from './support/plan-state';

function report(d: ClusterDescription, tweak: (snap: ReturnType<typeof snapshotOf>) => void = () => undefined) {
  const cluster = clusterConfig(d);
  const snap = snapshotOf(cluster, d);
  tweak(snap);
  return statusReport(snap, summarize(cluster, snap));
}

describe('status report', () => {
  it('shows each DB against its quota, and warns from 80% on (NOSPACE stops writes at 100%)', () => {
    const r = report({ dbSize: { node1: 1.7 * GiB } }, (snap) => { for (const p of snap.probes) p.status!.quotaBytes = 2 * GiB; });
    const row = r.tables![0].rows.find((x) => x[0] === 'node1')!;
    expect(r.tables![0].columns[5]).toBe('DB SIZE (IN USE) / QUOTA');
    expect(row[5]).toMatch(/^1\.7 GiB \(.+\) \/ 2\.0 GiB 85%$/);
    expect(r.notes!.join('\n')).toMatch(/node1's database is 1\.7 GiB, 85% of its 2\.0 GiB quota: at 100% etcd raises NOSPACE .*\/etcd defrag/);
    expect(r.notes!.join('\n')).not.toMatch(/node2's database/);
  });

  it('without a quota from the member, no share is shown and nothing is guessed', () => {
    const r = report({ dbSize: { node1: 1.9 * GiB } });
    expect(r.tables![0].rows.find((x) => x[0] === 'node1')![5]).not.toMatch(/quota|%/);
    expect(r.notes!.join('\n')).not.toMatch(/quota/);
  });

  it('names members on different etcd minor versions', () => {
    const r = report({}, (snap) => { snap.probes[0].status!.version = '3.4.23'; snap.probes[1].status!.version = '3.5.30'; snap.probes[2].status!.version = '3.5.30'; });
    expect(r.notes!.join('\n')).toMatch(/different etcd minor versions \(node1 3\.4\.23, node2 3\.5\.30, node3 3\.5\.30\): finish the upgrade or roll it back/);
    const same = report({}, (snap) => { snap.probes[0].status!.version = '3.5.16'; snap.probes[1].status!.version = '3.5.30'; });
    expect(same.notes!.join('\n')).not.toMatch(/minor versions/);
  });

  it('shows server, cluster and storage versions, and who says what when members differ', () => {
    const field = (r: ReturnType<typeof report>) => r.fields!.find((f) => f.label === 'Versions')!.value;
    const same = report({}, (snap) => { for (const p of snap.probes) Object.assign(p.status!, { version: '3.5.30', clusterVersion: '3.5.0' }); });
    expect(field(same)).toBe('server 3.5.30 · cluster 3.5.0 · storage not reported (etcd 3.6 and later report it)');
    const upgrading = report({}, (snap) => {
      Object.assign(snap.probes[0].status!, { version: '3.6.5', clusterVersion: '3.5.0', storageVersion: '3.5.0' });
      for (const p of snap.probes.slice(1)) Object.assign(p.status!, { version: '3.5.30', clusterVersion: '3.5.0' });
    });
    expect(field(upgrading)).toBe('server 3.6.5 (node1), 3.5.30 (node2, node3) · cluster 3.5.0 · storage 3.5.0');
    const unknown = report({}, (snap) => { for (const p of snap.probes) p.status!.clusterVersion = undefined; });
    expect(field(unknown)).toMatch(/cluster unknown/);
  });
});
