/**
 * Inputs for diagnose() from a short description: the cluster and probes of plan-state's
 * builders (unchanged), then what the lab showed in that scenario — member ids as the lab
 * printed them (so they match the captured logs), logs from test/fixtures/logs, SSH
 * failures, runtime state, snapshots.
 *
 *   diagnoseInput({ down: ['node3'], sshDown: ['node3'] })
 *   diagnoseInput({ down: ['node3'], logs: { node3: fixtureLog('wiped-data-state-new.node3.log', 9) } })
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DiagnoseInput, NodeEvidence } from '../../src/engine/diagnose';
import { summarize } from '../../src/engine/status-summary';
import type { ClusterSnapshot, EndpointStatus } from '../../src/exec/types';
import type { RuntimeState } from '../../src/runtime/types';
import { stripCri } from '../../src/runtime/kubeadm';
import type { SnapshotRecord } from '../../src/snapshot/store';
import type { ClusterConfig } from '../../src/config/schema';
import { ClusterDescription, clusterConfig, MEMBER_IDS, snapshotOf } from './plan-state';

export const LOG_FIXTURES = join(__dirname, '..', 'fixtures', 'logs');

/**
 * A captured CRI log file as NodeRuntime.logs returns it: CRI prefixes stripped, and the
 * source path kubelet writes (its file name is the container's restart count).
 */
export function fixtureLog(file: string, restarts = 0, node = 'node3'): { source: string; lines: string[] } {
  const raw = readFileSync(join(LOG_FIXTURES, file), 'utf8').replace(/\n$/, '').split('\n');
  return { source: `/var/log/pods/kube-system_etcd-${node}_0cbf6fdd3517d151a645f37be5cba429/etcd/${restarts}.log`, lines: stripCri(raw) };
}

export interface DiagnoseCase extends ClusterDescription {
  /** Member id per node (hex), replacing plan-state's MEMBER_IDS everywhere in the probes. */
  ids?: Record<string, string>;
  /** etcd's log per node, as read over SSH. */
  logs?: Record<string, { source: string; lines: string[] }>;
  /** SSH to these nodes fails (the node itself is down). */
  sshDown?: string[];
  /** Runtime state per node; a node with logs and no entry here gets { config: 'active', running: true, hasData: true }. */
  runtime?: Record<string, RuntimeState>;
  /** Changes to one node's endpoint status (raft index, errors…). */
  status?: Record<string, Partial<EndpointStatus>>;
  /** The node answers status (etcd runs) but with this member id, unknown to the others. */
  answersAs?: Record<string, string>;
  backups?: DiagnoseInput['backups'];
}

function renameIds(snap: ClusterSnapshot, map: Map<string, string>): ClusterSnapshot {
  const id = (x: string) => map.get(x) ?? x;
  return {
    ...snap,
    probes: snap.probes.map((p) => ({
      ...p,
      status: p.status && { ...p.status, memberId: id(p.status.memberId), leader: id(p.status.leader) },
      members: p.members?.map((m) => ({ ...m, id: id(m.id) })),
      alarms: p.alarms?.map((a) => ({ ...a, memberId: id(a.memberId) })),
    })),
  };
}

export function diagnoseInput(d: DiagnoseCase = {}): DiagnoseInput & { cluster: ClusterConfig } {
  const cluster = clusterConfig(d);
  let snapshot = snapshotOf(cluster, d);
  if (d.ids) {
    snapshot = renameIds(snapshot, new Map(cluster.nodes.map((n, i) => [MEMBER_IDS[i], d.ids![n.name] ?? MEMBER_IDS[i]])));
  }
  snapshot = {
    ...snapshot,
    probes: snapshot.probes.map((p) => {
      const patch = d.status?.[p.node];
      const as = d.answersAs?.[p.node];
      if (as) {
        // etcd runs on the node but as a member the cluster doesn't know: no quorum behind it.
        const st: EndpointStatus = { memberId: as, version: '3.4.23', dbSize: 24576, dbSizeInUse: 24576, leader: '0', isLearner: false, raftTerm: '1', raftIndex: '3', raftAppliedIndex: '3', errors: ['etcdserver: no leader'], ...patch };
        return { node: p.node, clientUrl: p.clientUrl, reachable: true, status: st, health: { healthy: false, latencyMs: 3000, error: 'context deadline exceeded' }, members: [], alarms: [] };
      }
      return patch && p.status ? { ...p, status: { ...p.status, ...patch } } : p;
    }),
  };
  const nodes: NodeEvidence[] = [];
  for (const n of cluster.nodes) {
    if (d.sshDown?.includes(n.name)) {
      nodes.push({ node: n.name, sshError: { code: 'SSH_UNREACHABLE', message: `ssh ${n.ssh.host}:22: connect ECONNREFUSED` } });
    } else if (d.logs?.[n.name] || d.runtime?.[n.name]) {
      nodes.push({ node: n.name, logs: d.logs?.[n.name], runtime: d.runtime?.[n.name] ?? { config: 'active', running: true, hasData: true } });
    }
  }
  return { cluster, snapshot, summary: summarize(cluster, snapshot), nodes, backups: d.backups };
}

/** A verified snapshot record as the store lists it. */
export function snapshotRecord(over: Partial<SnapshotRecord> = {}): SnapshotRecord {
  return {
    id: '20261127T031900Z-node1-1a2b', cluster: 'prod-eu1', node: 'node1', memberId: MEMBER_IDS[0], revision: '1042',
    etcdVersion: '3.4.23', sizeBytes: 2_000_000, sha256: 'a'.repeat(64), createdAt: '2026-11-27T03:19:00.000Z',
    requester: 'U0ALICE', reason: 'manual', kind: 'manual', liveKeys: 1000,
    verified: { by: 'etcdctl', hash: 'deadbeef', revision: '1042', totalKeys: 1100, totalSize: 2_000_000, integrity: 'sha256' },
    ...over,
  };
}
