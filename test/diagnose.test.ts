/**
 * diagnose(): each runbook scenario from a synthetic cluster (test/support/diagnose-input.ts,
 * over plan-state's builders) and the etcd 3.4 log lines the lab printed when broken that
 * way. The logs in test/fixtures/logs/ are excerpts of the real CRI files
 * (/var/log/pods/kube-system_etcd-<node>_<uid>/etcd/<restarts>.log) captured from the lab
 * with lab/lab.sh: see test/fixtures/logs/README.md for the command behind each one.
 */
import diagnoseCommand, { diagnoseReport, findingNotes, DIAGNOSE_NOTES_CHARS } from '../commands/diagnose';
import { renderReport, SLACK_LIMITS } from '../src/adapters/slack/blocks';
import type { RunContext } from '../src/engine/command';
import { diagnose, EVIDENCE_CHARS, Finding, LOG_SIGNS, MAX_EVIDENCE, nextCommands, parseLogLine, quote, restartsOf } from '../src/engine/diagnose';
import { MedicError } from '../src/engine/errors';
import { summarize } from '../src/engine/status-summary';
import type { NodeRuntime } from '../src/runtime/types';
import type { SnapshotStore } from '../src/snapshot/store';
import { diagnoseInput, DiagnoseCase, fixtureLog, snapshotRecord } from './support/diagnose-input';

/** Member ids the lab printed in each capture (the logs name them). */
const LAB_IDS = {
  wipedNew: { node1: '563e6b61ba81be7e', node2: 'ae8b2f53d93bda19', node3: '75a319cfe56f82d4' },
  wipedExisting: { node1: '55aeb2a4dc0f5d7c', node2: 'd2b385f4b239bebc', node3: '9388ede329f4ecb1' },
  quorum: { node1: '4160b7ded6a1e5dd', node2: '8a864bba2468ef40', node3: '9f3ef0ace606b8ba' },
  mismatch: { node1: 'c6dd70db2b8fd686', node2: 'd634a424e1e11690', node3: '35f2bfd0ad57b25a' },
  stale: { node1: '1c12f8d5bde19381', node2: 'c59de002b2ca92ad', node3: 'b0d8f9d8ddc14403' },
  nospace: { node1: 'ed632e69901efdcc', node2: '13a49cea4423b4d3', node3: 'a1fff214381fd706' },
};
const STOPPED = { config: 'absent', running: false, hasData: true } as const;
const CRASHING = { config: 'active', running: false, hasData: true } as const;

const run = (d: DiagnoseCase) => diagnose(diagnoseInput(d));
const scenarios = (f: Finding[]) => f.map((x) => x.scenario);
const text = (f: Finding) => [f.title, ...f.evidence].join('\n');

describe('log lines', () => {
  it('parses zap JSON and quotes the fields that name members and clusters', () => {
    const e = parseLogLine('{"level":"warn","ts":"2026-11-27T03:21:57.437Z","caller":"rafthttp/http.go:547","msg":"request cluster ID mismatch","local-member-id":"c6dd70db2b8fd686","local-member-cluster-id":"413330e826086717","local-member-server-version":"3.4.23","remote-peer-server-name":"edc9838ccbca0cd8","remote-peer-cluster-id":"d2740753add15f37"}');
    expect(quote('node1', e)).toBe('node1: 03:21:57.437 W request cluster ID mismatch local-member-id=c6dd70db2b8fd686 local-member-cluster-id=413330e826086717 remote-peer-server-name=edc9838ccbca0cd8 remote-peer-cluster-id=d2740753add…');
    expect(quote('node1', e).length).toBeLessThanOrEqual(EVIDENCE_CHARS);
    expect(quote('n', parseLogLine('panic: tocommit(141) is out of range [lastIndex(0)]'))).toBe('n: panic: tocommit(141) is out of range [lastIndex(0)]');
  });

  it('reads the restart count from the CRI file name', () => {
    expect(restartsOf('/var/log/pods/kube-system_etcd-node3_x/etcd/9.log')).toBe(9);
    expect(restartsOf('journalctl -u etcd.service')).toBeUndefined();
  });

  it('every signature matches the line the lab logged', () => {
    const all = (f: string) => fixtureLog(f).lines.join('\n');
    expect(all('wiped-data-state-new.node3.log')).toMatch(LOG_SIGNS.bootstrapped);
    expect(all('wiped-data-state-existing.node3.log')).toMatch(LOG_SIGNS.tocommit);
    expect(all('stale-removed.node2.log')).toMatch(LOG_SIGNS.removed);
    expect(all('cluster-id-mismatch.node3.log')).toMatch(LOG_SIGNS.clusterIdMismatch);
    expect(all('quorum-lost.node1.log')).toMatch(LOG_SIGNS.quorumInactive);
    expect(all('all-stopped.node1.log')).toMatch(LOG_SIGNS.stopped);
    expect(all('nospace.node3.log')).toMatch(LOG_SIGNS.nospace);
  });
});

describe('diagnose: one member down', () => {
  it('node unreachable over SSH too: the node is down; start it, or replace its member', () => {
    const f = run({ down: ['node3'], sshDown: ['node3'] });
    expect(scenarios(f)).toEqual(['member-down']);
    expect(f[0].title).toMatch(/^node3's member is down: if its data is intact, start the node again; otherwise replace the member/);
    expect(text(f[0])).toContain('node3: the bot can\'t log in over SSH either (ssh 10.0.0.13:22: connect ECONNREFUSED)');
    expect(text(f[0])).toContain('quorum holds: 2/3 voting members healthy, 0 more failures tolerable');
    expect(f[0].next).toEqual(['/etcd replace-member prod-eu1 node3']);
  });

  it('a probe that already failed on SSH: one SSH line, not two', () => {
    const f = run({ sshUnreachable: ['node3'], sshDown: ['node3'] });
    expect(scenarios(f)).toEqual(['member-down']);
    expect(f[0].evidence.filter((l) => l.startsWith('node3:'))).toEqual(['node3: the bot can\'t log in over SSH either (ssh 10.0.0.13:22: connect ECONNREFUSED): the node itself looks down']);
  });

  it('etcd stopped on a reachable node: quotes the shutdown, says the data dir is there', () => {
    const f = run({ down: ['node3'], logs: { node3: fixtureLog('all-stopped.node3.log') }, runtime: { node3: STOPPED } });
    expect(scenarios(f)).toEqual(['member-down']);
    expect(f[0].title).toContain('(etcd was stopped): if its data is intact, put its manifest back / start etcd again');
    expect(text(f[0])).toContain('node3: SSH works; no etcd process runs; its config is not in place (manifest moved away?); /var/lib/etcd/member exists');
    expect(text(f[0])).toMatch(/node3: 03:19:50\.150 I closed etcd server/);
    expect(f[0].next).toEqual(['/etcd replace-member prod-eu1 node3']);
  });

  it('a node the bot may not log in to is not called down (fix access first)', () => {
    const input = diagnoseInput({});
    input.snapshot.probes[2] = { node: 'node3', clientUrl: input.snapshot.probes[2].clientUrl, reachable: false, errorCode: 'SSH_HOST_KEY_MISMATCH', unreachableReason: 'node3 host key changed' };
    const f = diagnose({ ...input, summary: summarize(input.cluster, input.snapshot) });
    expect(f).toEqual([]);
  });

  it('a healthy cluster: nothing recognised', () => {
    expect(run({})).toEqual([]);
  });
});

describe('diagnose: members whose data disagree (hashkv)', () => {
  const hashes = (byNode: Record<string, string>) => ({ revision: '4711', byNode: Object.entries(byNode).map(([node, hash]) => ({ node, hash, compactRevision: '100' })) });

  it('nothing when every healthy member has the same hash', () => {
    expect(diagnose({ ...diagnoseInput({}), hashes: hashes({ node1: '3525', node2: '3525', node3: '3525' }) })).toEqual([]);
  });

  it('the odd member out is named, with replace-member for it', () => {
    const f = diagnose({ ...diagnoseInput({}), hashes: hashes({ node1: '3525', node2: '9911', node3: '3525' }) });
    expect(scenarios(f)).toEqual(['data-inconsistent']);
    expect(f[0].title).toBe('node2 holds other data than the rest: the members\' hashes at revision 4711 disagree; replace that member');
    expect(f[0].evidence).toContain('hashkv at revision 4711: node2 has 9911');
    expect(f[0].next).toEqual(['/etcd replace-member prod-eu1 node2']);
  });

  it('no majority: no repair suggested', () => {
    const f = diagnose({ ...diagnoseInput({}), hashes: hashes({ node1: '1', node2: '2' }) });
    expect(f[0].title).toMatch(/no majority agrees: don't repair anything/);
    expect(f[0].next).toEqual([]);
  });
});

describe('diagnose: certificate expiry', () => {
  const now = Date.parse('2026-12-01T12:00:00Z');
  const year = '2027-11-30T12:00:00.000Z';
  const fine = (node: string) => ({ node, notAfter: { ca: '2036-11-28T12:00:00.000Z', server: year, peer: year, 'healthcheck-client': year } });
  const withCerts = (certs: ReturnType<typeof fine>[]) => diagnose({ ...diagnoseInput({}), certs, now });

  it('nothing when every certificate has more than 30 days', () => {
    expect(withCerts([fine('node1'), fine('node2'), fine('node3')])).toEqual([]);
  });

  it('names each certificate expiring within 30 days, soonest first, with how to renew', () => {
    const n2 = fine('node2');
    n2.notAfter.peer = '2026-12-20T12:00:00.000Z';
    n2.notAfter.server = '2026-12-11T12:00:00.000Z';
    const f = withCerts([fine('node1'), n2, fine('node3')]);
    expect(scenarios(f)).toEqual(['cert-expiry']);
    expect(f[0].title).toBe('etcd certificates expire within 30 days: node2 server.crt expires 2026-12-11T12:00:00.000Z (in 10 days), node2 peer.crt expires 2026-12-20T12:00:00.000Z (in 19 days)');
    expect(text(f[0])).toMatch(/kubeadm certs renew etcd-server etcd-peer etcd-healthcheck-client/);
  });

  it('an expired CA: said first, with the rotation it needs', () => {
    const n1 = fine('node1');
    n1.notAfter.ca = '2026-11-30T12:00:00.000Z';
    const f = withCerts([n1]);
    expect(f[0].title).toMatch(/^etcd certificates have expired: node1 ca\.crt expired 2026-11-30T12:00:00\.000Z: members and clients refuse them/);
    expect(text(f[0])).toMatch(/the etcd CA itself expires.*Plan a CA rotation/);
  });
});

describe('diagnose: a manifest written for another etcd version', () => {
  // What etcd 3.4.23 and 3.5.30 print, before any logger, when the manifest has --feature-gates (etcd 3.6's).
  const refused = ['flag provided but not defined: -feature-gates', 'Usage:', '', '  etcd [flags]', '    Start an etcd server.'];

  it('names the flag the etcd does not know, on that node only; no bot command, the manifest must be fixed', () => {
    const f = run({ down: ['node3'], logs: { node3: { source: '/var/log/pods/kube-system_etcd-node3_0cbf/etcd/6.log', lines: refused } }, runtime: { node3: CRASHING } });
    expect(scenarios(f)).toEqual(['config-refused']);
    expect(f[0].title).toBe('node3\'s etcd refuses its configuration: --feature-gates is unknown to this etcd version, so it exits at start; fix the manifest (no bot command repairs this)');
    expect(f[0].evidence[0]).toBe('node3: flag provided but not defined: -feature-gates');
    expect(text(f[0])).toContain('restarted 6 times (crash loop');
    expect(text(f[0])).toMatch(/written for another etcd version \(3\.6 flags such as --feature-gates/);
    expect(f[0].next).toEqual([]);
  });

  it('an --experimental- flag the running etcd dropped: says the new spelling', () => {
    const lines = ['flag provided but not defined: -experimental-snapshot-catchup-entries'];
    const f = run({ down: ['node3'], logs: { node3: { source: '/var/log/pods/kube-system_etcd-node3_0cbf/etcd/2.log', lines } }, runtime: { node3: CRASHING } });
    expect(text(f[0])).toContain('3.6 takes --snapshot-catchup-entries');
  });
});

describe('diagnose: a member whose data was wiped', () => {
  it('--initial-cluster-state=new on an empty data dir: "has already been bootstrapped", crash loop', () => {
    const f = run({ ids: LAB_IDS.wipedNew, down: ['node3'], logs: { node3: fixtureLog('wiped-data-state-new.node3.log', 9) }, runtime: { node3: CRASHING } });
    expect(scenarios(f)).toEqual(['member-data-wiped']);
    expect(f[0].title).toBe('node3\'s data was wiped: its member (75a319cfe56f82d4) is still in the cluster but node3 has no raft log to serve it: replace the member');
    expect(f[0].evidence[0]).toBe('node3: 03:16:31.939 F discovery failed error=member 75a319cfe56f82d4 has already been bootstrapped');
    expect(text(f[0])).toContain('etcd\'s container has restarted 9 times (crash loop');
    expect(f[0].next).toEqual(['/etcd replace-member prod-eu1 node3']);
  });

  it('--initial-cluster-state=existing on an empty data dir: raft panics "tocommit(141) is out of range [lastIndex(0)]"', () => {
    const f = run({ ids: LAB_IDS.wipedExisting, down: ['node3'], logs: { node3: fixtureLog('wiped-data-state-existing.node3.log', 4) }, runtime: { node3: CRASHING } });
    expect(scenarios(f)).toEqual(['member-data-wiped']);
    expect(text(f[0])).toMatch(/tocommit\(141\) is out of range \[lastIndex\(0\)\]/);
    expect(text(f[0])).toContain('its WAL was lost');
    expect(f[0].next).toEqual(['/etcd replace-member prod-eu1 node3']);
  });

  it('a member that answers with a raft index far below the others', () => {
    const f = run({ unhealthy: ['node3'], status: { node3: { raftIndex: '3', raftAppliedIndex: '3' } } });
    expect(scenarios(f)).toEqual(['member-data-wiped']);
    expect(text(f[0])).toContain('node3: raft index 3, the healthy members are at 1001');
  });

  it('no member dir on a node whose etcd is configured', () => {
    const f = run({ down: ['node3'], runtime: { node3: { config: 'active', running: false, hasData: false } } });
    expect(scenarios(f)).toEqual(['member-data-wiped']);
    expect(text(f[0])).toContain('node3: /var/lib/etcd/member does not exist');
  });
});

describe('diagnose: quorum lost', () => {
  it('two of three down: force-new-cluster from the survivor, quoting its step-down', () => {
    const f = run({
      ids: LAB_IDS.quorum, unhealthy: ['node1'], down: ['node2', 'node3'], sshDown: ['node2', 'node3'],
      status: { node1: { errors: ['etcdserver: no leader'] } }, logs: { node1: fixtureLog('quorum-lost.node1.log', 0, 'node1') },
    });
    expect(scenarios(f)).toEqual(['quorum-lost']);
    expect(f[0].title).toBe('quorum lost: force a new cluster from node1 (highest raft index, 1000), then rebuild the others');
    expect(f[0].evidence[0]).toBe('0 of 3 voting members healthy, quorum needs 2: the cluster can\'t commit writes or membership changes');
    expect(text(f[0])).toContain('node1 answers with its data: raft index 1000, term 7 (etcdserver: no leader)');
    expect(text(f[0])).toContain('if node2, node3 can be started again with their data, quorum comes back by itself');
    expect(text(f[0])).toMatch(/node1: 03:18:53\.929 W 4160b7ded6a1e5dd stepped down to follower since quorum is not active/);
    expect(f[0].next).toEqual(['/etcd force-new-cluster prod-eu1 node1']);
  });

  it('the survivor with the highest raft index seeds the new cluster', () => {
    const f = run({ unhealthy: ['node1', 'node2'], down: ['node3'], status: { node1: { raftIndex: '500' }, node2: { raftIndex: '900' } } });
    expect(f.find((x) => x.scenario === 'quorum-lost')!.next).toEqual(['/etcd force-new-cluster prod-eu1 node2']);
  });

  it('two wiped members out of three: force-new-cluster first; the wiped ones wait for it', () => {
    const f = run({
      ids: LAB_IDS.wipedNew, unhealthy: ['node1'], down: ['node2', 'node3'],
      logs: { node2: fixtureLog('wiped-data-state-new.node3.log', 3, 'node2'), node3: fixtureLog('wiped-data-state-new.node3.log', 9) },
      runtime: { node2: CRASHING, node3: CRASHING },
    });
    expect(scenarios(f)).toEqual(['quorum-lost', 'member-data-wiped', 'member-data-wiped']);
    expect(nextCommands(f)).toEqual(['/etcd force-new-cluster prod-eu1 node1']);
    expect(f[1].evidence[1]).toMatch(/force-new-cluster first; its plan rebuilds the other members/);
  });
});

describe('diagnose: all members lost', () => {
  const allStopped = {
    down: ['node1', 'node2', 'node3'],
    logs: Object.fromEntries([1, 2, 3].map((i) => [`node${i}`, fixtureLog(`all-stopped.node${i}.log`, 0, `node${i}`)])),
    runtime: { node1: STOPPED, node2: STOPPED, node3: STOPPED },
  };

  it('offers a restore from the newest verified snapshot, and says the data dirs are still there', () => {
    const snap = snapshotRecord();
    const f = run({ ...allStopped, backups: { newestVerified: snap, total: 3 } });
    expect(scenarios(f)).toEqual(['all-members-lost']);
    expect(f[0].title).toBe('all members lost: no member\'s etcd answers; restore every node from the newest verified snapshot 20261127T031900Z-node1-1a2b (or first start etcd again where the data is intact)');
    expect(f[0].evidence[0]).toBe('newest verified snapshot: 20261127T031900Z-node1-1a2b, revision 1042, 1000 keys, taken 2026-11-27T03:19:00.000Z from node1');
    expect(f[0].evidence[1]).toMatch(/^node1, node2, node3 still have their data dir: starting etcd there again keeps every write/);
    expect(f[0].next).toEqual(['/etcd restore prod-eu1 20261127T031900Z-node1-1a2b --mode all']);
  });

  it('without a verified snapshot: says so and what to do', () => {
    const f = run({ ...allStopped, backups: { newestVerified: undefined, total: 1 } });
    expect(f[0].title).toMatch(/there is no verified snapshot to restore: start etcd again on a node whose data dir is intact, then force a new cluster from it/);
    expect(f[0].evidence[0]).toBe('no verified snapshot of prod-eu1 in the bot\'s store (1 snapshot in all)');
    expect(f[0].next).toEqual(['/etcd snapshot list prod-eu1', '/etcd status prod-eu1']);
  });

  it('nodes powered off count too (whatever SSH says)', () => {
    const f = run({ sshUnreachable: ['node1', 'node2', 'node3'], sshDown: ['node1', 'node2', 'node3'], backups: { newestVerified: snapshotRecord(), total: 1 } });
    expect(scenarios(f)).toEqual(['all-members-lost']);
    expect(text(f[0])).toContain('node2: unreachable over SSH too (ssh 10.0.0.12:22: connect ECONNREFUSED): the node looks down');
  });

  it('every node refusing the bot is an access problem, not a lost cluster', () => {
    const input = diagnoseInput({ sshUnreachable: ['node1', 'node2', 'node3'] });
    for (const p of input.snapshot.probes) p.errorCode = 'SSH_AUTH_FAILED';
    expect(diagnose(input)).toEqual([]);
  });
});

describe('diagnose: NOSPACE alarm', () => {
  it('defrag then disarm, with the quota etcd logged', () => {
    const f = run({
      ids: LAB_IDS.nospace, alarms: [{ node: 'node3', alarm: 'NOSPACE' }], dbSize: { node1: 643072, node2: 643072, node3: 643072 },
      logs: { node3: fixtureLog('nospace.node3.log') },
    });
    expect(scenarios(f)).toEqual(['nospace-alarm']);
    expect(f[0].evidence[0]).toBe('alarm NOSPACE raised on node3: the cluster refuses writes until it is disarmed');
    expect(f[0].evidence[1]).toBe('node3: 03:36:18.499 W message exceeded backend quota; raising alarm error=etcdserver: no space quota-size-bytes=436864 quota-size=437 kB');
    expect(text(f[0])).toContain('DB size (in use): node1 628 KiB (25.0 MiB)');
    expect(f[0].next).toEqual(['/etcd defrag prod-eu1', '/etcd alarm-disarm prod-eu1']);
  });

  it('after the member repairs when a member is down too (defrag refuses until then)', () => {
    const f = run({ alarms: [{ node: 'node1', alarm: 'NOSPACE' }], down: ['node3'], sshDown: ['node3'] });
    expect(scenarios(f)).toEqual(['member-down', 'nospace-alarm']);
    expect(nextCommands(f)).toEqual(['/etcd replace-member prod-eu1 node3', '/etcd defrag prod-eu1', '/etcd alarm-disarm prod-eu1']);
    expect(f[1].evidence[1]).toMatch(/defrag is refused while a member is unhealthy/);
  });
});

describe('diagnose: stale members after force-new-cluster', () => {
  it('configured nodes removed from the membership whose etcd still runs with the old identity: add them back', () => {
    const f = run({
      ids: LAB_IDS.stale, notMembers: ['node2', 'node3'],
      logs: { node2: fixtureLog('stale-removed.node2.log', 4, 'node2'), node3: fixtureLog('stale-removed.node2.log', 6) },
      runtime: { node2: CRASHING, node3: CRASHING },
    });
    expect(scenarios(f)).toEqual(['stale-member', 'stale-member']);
    expect(f[0].title).toMatch(/^node2 was removed from the cluster \(after force-new-cluster, or member remove\) but its etcd still runs with its old identity/);
    expect(f[0].evidence[0]).toBe('node2 is in clusters.yaml but not in the member list (members: node1 1c12f8d5bde19381)');
    expect(text(f[0])).toMatch(/node2: 03:26:10\.69\d W .*(the member has been permanently removed from the cluster|data-dir used by this member must be removed)/);
    expect(nextCommands(f)).toEqual(['/etcd add-member prod-eu1 node2', '/etcd add-member prod-eu1 node3']);
  });

  it('a member in the list that no configured node answers as: remove it by id', () => {
    const f = run({ strangers: [{ id: '5f3a0c1d2e4b6a79', name: 'node3-old', ip: '10.0.0.99' }] });
    expect(scenarios(f)).toEqual(['stale-member']);
    expect(f[0].title).toMatch(/^member 5f3a0c1d2e4b6a79 \(node3-old\) is in the member list but no configured node answers as it/);
    expect(f[0].next).toEqual(['/etcd remove-member prod-eu1 5f3a0c1d2e4b6a79']);
  });
});

describe('diagnose: cluster-ID mismatch', () => {
  const mismatch: DiagnoseCase = { ids: LAB_IDS.mismatch, down: ['node3'], logs: { node3: fixtureLog('cluster-id-mismatch.node3.log') } };

  it('names the node on the other cluster from the cluster ids in its log and the member ids of the others', () => {
    const f = run(mismatch);
    expect(scenarios(f)).toEqual(['cluster-id-mismatch']);
    expect(f[0].title).toMatch(/^node3 is on another cluster \(different cluster ID\): it was started with another --initial-cluster-token or restored alone/);
    expect(f[0].evidence).toContain('node3 runs as member edc9838ccbca0cd8 of cluster d2740753add15f37, which the cluster\'s member list doesn\'t have (node3 is member 35f2bfd0ad57b25a there)');
    expect(f[0].evidence).toContain('cluster 413330e826086717: node1, node2 (the healthy members); cluster d2740753add15f37: node3');
    expect(text(f[0])).toMatch(/node3: \S+ W request cluster ID mismatch local-member-id=edc9838ccbca0cd8 local-member-cluster-id=d2740753add15f37/);
    expect(f[0].next).toEqual(['/etcd replace-member prod-eu1 node3']);
  });

  it('the same when node3 answers as its new member: no stale-member findings on top', () => {
    const f = run({ ...mismatch, down: [], answersAs: { node3: 'edc9838ccbca0cd8' } });
    expect(scenarios(f)).toEqual(['cluster-id-mismatch']);
    expect(f[0].next).toEqual(['/etcd replace-member prod-eu1 node3']);
  });
});

describe('findings within Slack\'s limits', () => {
  const many = (): Finding[] => Array.from({ length: 7 }, (_, i) => ({
    scenario: 'member-down', title: `node${i}'s member is down: ${'x'.repeat(150)}`,
    evidence: Array.from({ length: MAX_EVIDENCE }, (_, k) => `evidence ${k} <&> ${'y'.repeat(190)}`), next: [`/etcd replace-member c node${i}`],
  }));

  it('every finding keeps its title and command; evidence is cut to fit', () => {
    const notes = findingNotes(many());
    const shown = notes.reduce((n, l) => n + l.length + (l.match(/[&<>]/g)?.length ?? 0) * 4 + 3, 0);
    expect(shown).toBeLessThanOrEqual(DIAGNOSE_NOTES_CHARS);
    for (let i = 0; i < 7; i++) {
      expect(notes).toContain(`*${i + 1}. node${i}'s member is down: ${'x'.repeat(150)}* [member-down]`);
      expect(notes).toContain(`→ /etcd replace-member c node${i}`);
    }
    expect(notes[notes.length - 1]).toMatch(/^\(\d+ evidence lines cut to fit the message/);
  });

  it('the Slack message of a big diagnosis: no section over 3000 characters, all findings shown', () => {
    const input = diagnoseInput({ down: ['node3'] });
    const report = diagnoseReport(input.cluster, input.snapshot, input.summary, many(), []);
    const msg = renderReport(report);
    for (const b of msg.blocks as Array<{ text?: { text: string } }>) expect((b.text?.text ?? '').length).toBeLessThanOrEqual(SLACK_LIMITS.sectionText);
    const all = JSON.stringify(msg.blocks);
    for (let i = 0; i < 7; i++) expect(all).toContain(`/etcd replace-member c node${i}`);
    expect(report.verdict!.text).toBe('7 findings: member-down — status degraded: 2/3 voting members healthy');
  });

  it('diagnose() itself caps evidence: at most 5 lines of at most 200 characters per finding', () => {
    const f = run({ down: ['node1', 'node2', 'node3'], logs: { node1: fixtureLog('all-stopped.node1.log', 0, 'node1') }, runtime: { node1: STOPPED, node2: STOPPED, node3: STOPPED }, backups: { newestVerified: snapshotRecord(), total: 1 } });
    expect(f[0].evidence.length).toBeLessThanOrEqual(MAX_EVIDENCE);
    for (const l of f[0].evidence) expect(l.length).toBeLessThanOrEqual(EVIDENCE_CHARS);
  });

  it('nothing recognised: the status verdict and its advice', () => {
    const input = diagnoseInput({});
    const report = diagnoseReport(input.cluster, input.snapshot, input.summary, [], []);
    expect(report.verdict).toEqual({ level: 'ok', text: 'no known failure scenario recognised — status healthy: 3/3 voting members healthy' });
  });
});

describe('diagnose command (execute with a fake worker context)', () => {
  function ctx(input: ReturnType<typeof diagnoseInput>, withNode: RunContext['withNode'], snapshots?: Partial<SnapshotStore>): RunContext {
    return {
      config: { clusters: [input.cluster] } as never, cluster: input.cluster, args: { cluster: 'prod-eu1' }, origin: { kind: 'console', user: 'console:alice', channel: 'console' } as never,
      jobId: '7', probe: async () => input.snapshot, withNode, snapshots: snapshots as SnapshotStore | undefined,
    };
  }
  const runtime = (logs: () => Promise<{ source: string; lines: string[] }>): NodeRuntime => ({
    logs, state: async () => ({ config: 'active', running: false, hasData: true }),
  } as unknown as NodeRuntime);

  it('redacts a node\'s log as one text when it is read: a key block cut by the tail never reaches a finding', async () => {
    const input = diagnoseInput({ down: ['node3'] });
    const lines = [
      '{"level":"info","ts":"2026-11-27T03:16:31.917Z","caller":"etcdmain/etcd.go:134","msg":"server has been already initialized","data-dir":"/var/lib/etcd","dir-type":"member"}',
      '-----BEGIN PRIVATE KEY-----',
      'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDTOPSECRETKEYMATERIAL0123456789',
    ];
    const report = await diagnoseCommand.execute!(ctx(input, async (_c, _node, fn) => fn(runtime(async () => ({ source: '/var/log/pods/kube-system_etcd-node3_x/etcd/2.log', lines })))));
    const text = JSON.stringify(report);
    expect(text).not.toContain('TOPSECRETKEYMATERIAL');
    expect(text).toContain('[REDACTED PRIVATE KEY]');
  });

  it('reads logs only where etcd is not healthy, and finds the wiped member', async () => {
    const input = diagnoseInput({ ids: LAB_IDS.wipedNew, down: ['node3'] });
    const asked: string[] = [];
    const report = await diagnoseCommand.execute!(ctx(input, async (_c, node, fn) => {
      asked.push(node);
      return fn(runtime(async () => fixtureLog('wiped-data-state-new.node3.log', 9)));
    }));
    expect(asked).toEqual(['node3']);
    expect(report.verdict!.text).toBe('1 finding: member-data-wiped — status degraded: 2/3 voting members healthy');
    expect(report.next).toEqual(['/etcd replace-member prod-eu1 node3']);
    expect(report.notes!.join('\n')).toContain('has already been bootstrapped');
  });

  it('a failure to read logs is evidence, not a crash; a node that never answers is cut off at the deadline', async () => {
    const input = diagnoseInput({ nodes: 5, down: ['node4', 'node5'] });
    input.cluster.ssh.connectTimeoutMs = 20;
    input.cluster.statusTimeoutMs = 30;
    const report = await diagnoseCommand.execute!(ctx(input, async (_c, node, fn) => {
      if (node === 'node4') throw new MedicError('SSH_UNREACHABLE', 'ssh 10.0.0.14:22: connect ECONNREFUSED');
      return new Promise(() => undefined); // node5: never answers
    }, { list: async () => { throw new Error('EACCES: snapshot dir'); } }));
    const notes = report.notes!.join('\n');
    expect(notes).toContain('node4: the bot can\'t log in over SSH either (ssh 10.0.0.14:22: connect ECONNREFUSED)');
    expect(notes).toContain('node5: the bot can\'t log in over SSH either (no answer within 50 ms)');
    expect(report.next).toEqual(['/etcd replace-member prod-eu1 node4', '/etcd replace-member prod-eu1 node5']);
  });

  it('all lost: lists the store and offers the newest verified snapshot, skipping unverified ones', async () => {
    const input = diagnoseInput({ down: ['node1', 'node2', 'node3'] });
    const good = snapshotRecord({ id: '20261127T031500Z-node2-beef', createdAt: '2026-11-27T03:15:00.000Z' });
    const unverified = snapshotRecord({ id: '20261127T031800Z-node1-dead', createdAt: '2026-11-27T03:18:00.000Z', verified: { by: 'none', integrity: 'none' } });
    const report = await diagnoseCommand.execute!(ctx(input, async (_c, _n, fn) => fn(runtime(async () => fixtureLog('all-stopped.node1.log', 0, 'node1'))), {
      list: async () => [unverified, good],
    }));
    expect(report.next).toEqual(['/etcd restore prod-eu1 20261127T031500Z-node2-beef --mode all']);
    expect(report.verdict!.level).toBe('critical');
  });
});
