/** The fleet view's report: worst first, split to fit Slack, every cluster shown, what is hidden only counted. */
import { fleetReport, type FleetRow } from '../commands/fleet';
import { renderReport } from '../src/adapters/slack/blocks';
import { blocksText } from './support/harness';
import { parseBlocks } from './support/fake-slack';

const row = (cluster: string, rank: number, verdict = ['healthy', 'degraded', 'quorum lost', 'unknown'][rank]): FleetRow => ({
  cluster, rank, verdict, healthy: rank === 3 ? '?/3' : `${3 - rank}/3`, leader: rank >= 2 ? 'none' : 'cp1', db: '1.2 GiB', next: rank === 0 ? '-' : `/etcd status ${cluster}`,
});

describe('fleet report', () => {
  it('lists the worst first, says which are not healthy, and offers their full status', () => {
    const r = fleetReport([row('a-ok', 0), row('b-down', 2), row('c-slow', 1), row('d-gone', 3), row('e-lost', 2, 'data lost')], 2, { ms: 1250, at: '2026-12-01T00:00:00Z', jobId: '7' });
    expect(r.verdict).toEqual({ level: 'critical', text: '1 of 5 clusters healthy; quorum or data lost: b-down, e-lost; degraded: c-slow; unknown: d-gone' });
    expect(r.tables![0].rows.map((x) => x[0])).toEqual(['d-gone', 'b-down', 'e-lost', 'c-slow', 'a-ok']);
    expect(r.next).toEqual(['/etcd status d-gone', '/etcd status b-down', '/etcd status e-lost', '/etcd status c-slow']);
    expect(r.notes).toEqual(['2 more clusters are configured but not readable by you from this channel']);
    expect(r.context).toEqual(['collected 2026-12-01T00:00:00Z in 1.3 s · job 7']);
  });

  it('a healthy fleet is ok, with one status to look at', () => {
    const r = fleetReport([row('x', 0), row('y', 0)], 0, { ms: 100, at: 'now' });
    expect(r.verdict).toEqual({ level: 'ok', text: '2 of 2 clusters healthy' });
    expect(r.next).toEqual(['/etcd status x']);
    expect(r.notes).toEqual([]);
  });

  it('fifty clusters: every one shown in a message Slack accepts (tables of 20 rows)', () => {
    const rows = Array.from({ length: 50 }, (_, i) => row(`production-cluster-${String(i).padStart(2, '0')}`, i % 7 === 0 ? 1 : 0));
    const r = fleetReport(rows, 0, { ms: 1000, at: 'now' });
    expect(r.tables!.map((t) => t.title)).toEqual(['Clusters 1–20 of 50', 'Clusters 21–40 of 50', 'Clusters 41–50 of 50']);
    const msg = renderReport(r);
    expect(parseBlocks(msg.blocks).errors).toEqual([]);
    const text = blocksText(msg.blocks as unknown[]);
    for (const x of rows) expect(text).toContain(x.cluster);
    expect(text).not.toMatch(/not shown/);
  });
});
