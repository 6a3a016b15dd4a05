/**
 * Data returned by the executors. Executors import neither Slack nor the engine's
 * adapters; the engine turns these into Reports.
 */

/** One member as `member list` reports it. IDs are lowercase hex (as etcdctl prints them). */
export interface MemberInfo {
  id: string;
  name: string;          // '' for a member added but not yet started
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

/** `endpoint status` of one member. Revisions/indexes as decimal strings (uint64). */
export interface EndpointStatus {
  memberId: string;      // hex, from the response header: proves which member answered
  version: string;
  dbSize: number;        // bytes
  dbSizeInUse: number;   // bytes (0 when the version does not report it)
  leader: string;        // hex member id of the leader as this member sees it
  isLearner: boolean;
  raftTerm: string;
  raftIndex: string;
  raftAppliedIndex: string;
  errors: string[];
  /** The store's revision when this member answered (response header). */
  revision?: string;
  /** The cluster this member belongs to (response header), hex: members of one cluster agree. */
  clusterId?: string;
  /** Its backend quota (--quota-backend-bytes), from its /metrics; undefined when it did not say. */
  quotaBytes?: number;
  /** The cluster version this member runs at (its /version `etcdcluster`, e.g. 3.5.0). */
  clusterVersion?: string;
  /** The storage version of its data (its /version `storage`: etcd 3.6 and later only). */
  storageVersion?: string;
}

export interface Alarm {
  memberId: string;      // hex
  alarm: 'NOSPACE' | 'CORRUPT' | 'NONE' | string;
}

/** What one configured node told us, or why it could not. */
export interface NodeProbe {
  node: string;                       // config node name
  clientUrl: string;
  reachable: boolean;                 // false: SSH or etcd could not be reached in time
  unreachableReason?: string;         // e.g. "ssh 127.10.0.13:2222: connect ECONNREFUSED"
  errorCode?: string;                 // MedicError code when unreachable (SSH_HOST_KEY_MISMATCH…)
  status?: EndpointStatus;
  health?: { healthy: boolean; latencyMs: number; error?: string };
  members?: MemberInfo[];             // member list as this member sees it
  alarms?: Alarm[];
}

export interface ClusterSnapshot {
  cluster: string;
  collectedAt: string;                // ISO time
  probes: NodeProbe[];                // one per configured node, config order
  /**
   * What the bot remembers of the cluster and how the cluster now contradicts it (data
   * lost, another cluster in its place): set where the bot keeps a memory (engine/cluster-memory).
   */
  memory?: { findings: DataLossFinding[]; remembered: ClusterMemoryView };
}

/** What the bot has seen of a cluster before (kept across probes, in Redis). */
export interface ClusterMemoryView {
  /** The cluster id its serving members agreed on, hex. */
  clusterId?: string;
  /** Member ids (hex), sorted. */
  members?: string[];
  /** The highest store revision seen (decimal). */
  revision: string;
  /** When the identity was last confirmed (ISO). */
  at?: string;
}

/** A way the cluster's data vanished or was replaced, as the bot can tell from what it saw before. */
export interface DataLossFinding {
  kind: 'revision-backwards' | 'came-back-empty' | 'cluster-id-changed' | 'split-cluster';
  text: string;
}
