/**
 * One etcd member, over etcd3 (npm). etcd3 is unmaintained: we use only its plain
 * RPC clients, turn off its retries and circuit breakers, put a deadline on every
 * call (and a local one behind it), and translate every failure here.
 */
import {
  AlarmAction, AlarmType, ClientClosedError, Etcd3, EtcdPermissionDeniedError, GRPCCancelledError,
  GRPCDeadlineExceededError, GRPCUnauthenticatedError, GRPCUnavailableError, IOptions, IResponseHeader, ISnapshotResponse,
} from 'etcd3';
import { ErrorCode, isMedicError, MedicError } from '../engine/errors';
import { Alarm, EndpointStatus, MemberInfo } from './types';

export interface EtcdTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export interface EtcdMemberClientOptions {
  /** https://127.0.0.1:<tunnel port> (or the member's URL when reachable directly). */
  endpoint: string;
  /** Client certificate; omit only for an http:// endpoint. */
  tls?: EtcdTls;
  /** Name the server certificate must cover (the member's real host), when the endpoint is a tunnel. */
  servername?: string;
  /** Deadline of every call. */
  deadlineMs: number;
  /** Who this is in messages, e.g. "node3". @defaultValue the endpoint */
  label?: string;
}

export interface EtcdHealth {
  healthy: boolean;
  latencyMs: number;
  error?: string;
}

export interface EtcdMemberClient {
  readonly endpoint: string;
  /** `deadlineMs`: shorter than the client's for polls of a member that may not serve yet. */
  status(opts?: { deadlineMs?: number }): Promise<EndpointStatus>;
  memberList(): Promise<MemberInfo[]>;
  alarms(): Promise<Alarm[]>;
  /** Like `etcdctl endpoint health`; never throws. */
  health(): Promise<EtcdHealth>;
  /** Adds a member (as a learner by default: it can't vote until promoted). */
  memberAdd(peerUrls: string[], opts?: { isLearner?: boolean }): Promise<{ member: MemberInfo; members: MemberInfo[] }>;
  /** Removes a member by hex id. */
  memberRemove(id: string): Promise<MemberInfo[]>;
  /** Promotes a learner (hex id); etcd refuses while it lags the leader. */
  memberPromote(id: string): Promise<MemberInfo[]>;
  /** Defragments this member's backend (it stops serving for the duration). */
  defragment(opts?: { deadlineMs?: number }): Promise<void>;
  /** Disarms one alarm of one member (hex id). */
  alarmDisarm(memberId: string, alarm: 'NOSPACE' | 'CORRUPT'): Promise<Alarm[]>;
  /**
   * `etcdctl endpoint hashkv`: the hash of this member's keys up to `revision` (0: its
   * newest). Members of one healthy cluster agree on it at any revision they all hold.
   */
  hashKV(revision?: string): Promise<{ hash: string; compactRevision: string; revision: string; memberId: string }>;
  /** A linearizable read of one key (tests and verification); undefined when absent. */
  get(key: string): Promise<string | undefined>;
  put(key: string, value: string): Promise<void>;
  /**
   * Live keys (count only, no values), at `revision` when given (fails once compacted past
   * it), and the revision the answer is from.
   */
  countKeys(opts?: { revision?: string; prefix?: string }): Promise<{ count: number; revision: string }>;
  /**
   * Streams this member's backend snapshot into `sink` (called per chunk, in order).
   * Resolves with the revision of the snapshot's first header and the byte count.
   */
  snapshot(sink: (chunk: Buffer) => void | Promise<void>, opts?: { deadlineMs?: number }): Promise<{ revision: string; memberId: string; bytes: number }>;
  close(): void;
}

/** The first key after every key with this prefix (etcd's range_end for a prefix). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) { end[i] += 1; return end.subarray(0, i + 1); }
  }
  return Buffer.from([0]);
}

/** Our hex ids back to etcd's decimal uint64 strings. */
export function decimalId(hex: string): string {
  if (!/^[0-9a-f]{1,16}$/.test(hex)) throw new MedicError('BAD_INPUT', `not a member id: ${JSON.stringify(hex)} (16 hex digits)`);
  return BigInt(`0x${hex}`).toString(10);
}

/** HashKVResponse as grpc decodes it (keepCase: the proto's field names). */
type RawHashKV = { header?: { member_id: string; revision: string }; hash: number | string; compact_revision?: string };

type RawMember = { ID: string; name?: string; peerURLs?: string[]; clientURLs?: string[]; isLearner?: boolean };
function toMember(m: RawMember): MemberInfo {
  return {
    id: hexId(m.ID),
    name: m.name ?? '',
    peerUrls: m.peerURLs ?? [],
    clientUrls: m.clientURLs ?? [],
    isLearner: Boolean(m.isLearner),
  };
}

/** What etcd3 returns for the snapshot stream at runtime: a grpc-js ClientReadableStream. */
type SnapshotStream = NodeJS.ReadableStream & { cancel(): void };

type FaultPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/**
 * A policy that calls through once. etcd3's defaults retry on a random other host and
 * open a 5 s circuit breaker; a retried memberAdd/memberRemove can apply twice. etcd3
 * only ever calls `execute` on these policies (cockatiel is not our dependency).
 */
const callOnce = {
  execute: <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T) =>
    Promise.resolve().then(() => fn({ signal: new AbortController().signal })),
} as unknown as FaultPolicy;

/** Local guard behind the gRPC deadline, in case a call never settles. */
const LOCAL_GRACE_MS = 1000;

export function createEtcdMemberClient(o: EtcdMemberClientOptions): EtcdMemberClient {
  const who = o.label ?? o.endpoint;
  const client = new Etcd3({
    hosts: [o.endpoint],
    credentials: o.tls ? { rootCertificate: o.tls.ca, certChain: o.tls.cert, privateKey: o.tls.key } : undefined,
    grpcOptions: {
      ...(o.servername ? { 'grpc.ssl_target_name_override': o.servername } : {}),
      // A member restarted by a runbook is dialled again within a second (gRPC's default
      // backoff grows to minutes: a job's client to a member it stopped and started again
      // sat waiting for its next reconnect for seconds).
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    },
    faultHandling: { host: () => callOnce, global: callOnce },
    defaultCallOptions: () => ({ deadline: Date.now() + o.deadlineMs }),
  });

  const call = <T>(what: string, fn: (opts: { deadline: number }) => Promise<T>): Promise<T> => callWithin(o.deadlineMs, what, fn);
  const callWithin = async <T>(deadlineMs: number, what: string, fn: (opts: { deadline: number }) => Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const guard = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new GRPCDeadlineExceededError('local deadline exceeded')), deadlineMs + LOCAL_GRACE_MS);
    });
    try {
      return await Promise.race([fn({ deadline: Date.now() + deadlineMs }), guard]);
    } catch (e) {
      throw toMedicError(e, `etcd ${who} ${what}`);
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    endpoint: o.endpoint,

    status: (so) => callWithin(so?.deadlineMs ?? o.deadlineMs, 'status', async (opts) => {
      const r = await client.maintenance.status(opts);
      return {
        memberId: hexId(r.header.member_id),
        version: r.version,
        dbSize: Number(r.dbSize),
        // etcd 3.4 sends no dbSizeInUse; the proto default makes it "0".
        dbSizeInUse: Number(r.dbSizeInUse ?? 0) || 0,
        leader: hexId(r.leader),
        isLearner: Boolean(r.isLearner),
        raftTerm: String(r.raftTerm),
        raftIndex: String(r.raftIndex),
        raftAppliedIndex: String(r.raftAppliedIndex ?? '0'),
        errors: r.errors ?? [],
        revision: r.header?.revision !== undefined ? String(r.header.revision) : undefined,
        clusterId: r.header?.cluster_id !== undefined ? hexId(r.header.cluster_id) : undefined,
      };
    }),

    // Served from the member's local state (3.4 has no linearizable flag; 3.5 defaults to
    // false), so it answers even when quorum is lost.
    memberList: () => call('member list', async (opts) => {
      const r = await client.cluster.memberList({ linearizable: false }, opts);
      return (r.members ?? []).map(toMember);
    }),

    memberAdd: (peerUrls, o) => call('member add', async (opts) => {
      const r = await client.cluster.memberAdd({ peerURLs: peerUrls, isLearner: o?.isLearner ?? true }, opts);
      return { member: toMember(r.member), members: (r.members ?? []).map(toMember) };
    }),

    memberRemove: (id) => call('member remove', async (opts) => {
      const r = await client.cluster.memberRemove({ ID: decimalId(id) }, opts);
      return (r.members ?? []).map(toMember);
    }),

    memberPromote: (id) => call('member promote', async (opts) => {
      const r = await client.cluster.memberPromote({ ID: decimalId(id) }, opts);
      return (r.members ?? []).map(toMember);
    }),

    defragment: (d) => callWithin(d?.deadlineMs ?? o.deadlineMs, 'defragment', async (opts) => {
      await client.maintenance.defragment(opts);
    }),

    alarmDisarm: (memberId, alarm) => call('alarm disarm', async (opts) => {
      const r = await client.maintenance.alarm({
        action: AlarmAction.Deactivate, memberID: decimalId(memberId), alarm: alarm === 'NOSPACE' ? AlarmType.Nospace : AlarmType.Corrupt,
      }, opts);
      return (r.alarms ?? []).map((a) => ({ memberId: hexId(a.memberID), alarm: String(a.alarm).toUpperCase() }));
    }),

    // etcd3's own hashKV calls a method the grpc client does not have ("hashKV": grpc names it
    // "HashKV", and "hashKv" in camel case): call the proto's method through etcd3's pool.
    hashKV: (revision) => call('hash kv', async (opts) => {
      const pool = (client.maintenance as unknown as { client: { exec(service: string, method: string, payload: unknown, options: unknown): Promise<RawHashKV> } }).client;
      const r = await pool.exec('Maintenance', 'HashKV', { revision: revision ?? '0' }, opts);
      return { hash: String(r.hash), compactRevision: String(r.compact_revision ?? '0'), revision: String(r.header?.revision ?? '0'), memberId: r.header ? hexId(r.header.member_id) : '' };
    }),

    get: (key) => call('get', async (opts) => {
      const r = await client.kv.range({ key: Buffer.from(key) }, opts);
      return r.kvs?.[0]?.value?.toString();
    }),

    countKeys: (o2) => call('count keys', async (opts) => {
      // The whole keyspace: from "\0" to "\0" (etcd's "all keys" range), or one prefix.
      const key = o2?.prefix ? Buffer.from(o2.prefix) : Buffer.from([0]);
      const rangeEnd = o2?.prefix ? prefixEnd(Buffer.from(o2.prefix)) : Buffer.from([0]);
      const r = await client.kv.range({ key, range_end: rangeEnd, count_only: true, serializable: false, revision: o2?.revision }, opts);
      return { count: Number(r.count), revision: String(r.header.revision) };
    }),

    put: (key, value) => call('put', async (opts) => {
      await client.kv.put({ key: Buffer.from(key), value: Buffer.from(value) }, opts);
    }),

    // etcd (3.4 and 3.5 at least) sends no header in snapshot responses, whatever the proto
    // comment says: the revision and member id are then unknown here ('0' and ''); read the
    // revision from the file (`snapshot status`) and the member from status() instead.
    snapshot: (sink, d) => callWithin(d?.deadlineMs ?? 10 * 60_000, 'snapshot', async (opts) => {
      const stream = (await client.maintenance.snapshot(opts)) as unknown as SnapshotStream;
      return new Promise<{ revision: string; memberId: string; bytes: number }>((resolve, reject) => {
        let header: IResponseHeader | undefined;
        let bytes = 0;
        let failed = false;
        let chain = Promise.resolve();
        const fail = (e: unknown) => {
          if (failed) return;
          failed = true;
          stream.cancel(); // a failed sink must not leave etcd streaming the rest to nobody
          reject(e);
        };
        stream.on('data', (r: ISnapshotResponse) => {
          if (failed) return;
          header ??= (r.header as IResponseHeader | null) ?? undefined;
          const blob = Buffer.from(r.blob);
          bytes += blob.length;
          // Backpressure: read no more (grpc-js then stops opening etcd's flow-control
          // window) until the sink has taken this chunk; memory stays bounded.
          stream.pause();
          chain = chain.then(() => sink(blob)).then(() => { if (!failed) stream.resume(); }, fail);
        });
        stream.on('error', fail);
        stream.on('end', () => {
          void chain.then(() => {
            if (failed) return;
            resolve({ revision: header ? String(header.revision) : '0', memberId: header ? hexId(header.member_id) : '', bytes });
          });
        });
      });
    }),

    alarms: () => call('alarm list', async (opts) => {
      const r = await client.maintenance.alarm({ action: AlarmAction.Get, memberID: 0, alarm: AlarmType.None }, opts);
      return (r.alarms ?? []).map((a) => ({ memberId: hexId(a.memberID), alarm: String(a.alarm).toUpperCase() }));
    }),

    // `etcdctl endpoint health`: a linearizable get of "health" needs the leader and a
    // quorum; "permission denied" still proves the member serves requests.
    health: async () => {
      const start = Date.now();
      try {
        await call('health', (opts) => client.kv.range({ key: Buffer.from('health') }, opts));
        return { healthy: true, latencyMs: Date.now() - start };
      } catch (e) {
        const latencyMs = Date.now() - start;
        const cause = (e as MedicError).cause;
        if (cause instanceof EtcdPermissionDeniedError) return { healthy: true, latencyMs };
        return { healthy: false, latencyMs, error: (e as Error).message };
      }
    },

    close: () => client.close(),
  };
}

/** etcd3 returns uint64 ids as decimal strings; etcdctl (and we) print lowercase hex. */
export function hexId(decimal: string | number): string {
  const s = String(decimal);
  if (!/^\d+$/.test(s)) throw new MedicError('ETCD_ERROR', `unexpected member id from etcd: ${JSON.stringify(s)}`);
  return BigInt(s).toString(16);
}

type ErrorClass = abstract new (...args: never[]) => Error;

/**
 * The one table from etcd3/gRPC failures to our codes. Rows are tried in order;
 * etcd3 usually casts gRPC errors to its classes, the numeric gRPC status is the fallback.
 */
const ETCD_ERROR_TABLE: { classes: ErrorClass[]; grpcCodes: number[]; code: ErrorCode; retryable: boolean; hint: string }[] = [
  { classes: [GRPCDeadlineExceededError], grpcCodes: [4], code: 'ETCD_TIMEOUT', retryable: true, hint: 'no answer before the deadline' },
  { classes: [GRPCUnavailableError, GRPCCancelledError, ClientClosedError], grpcCodes: [1, 14], code: 'ETCD_UNAVAILABLE', retryable: true, hint: 'unavailable' },
  { classes: [EtcdPermissionDeniedError, GRPCUnauthenticatedError], grpcCodes: [7, 16], code: 'ETCD_ERROR', retryable: false, hint: 'refused the client certificate' },
];

export function toMedicError(e: unknown, context: string): MedicError {
  if (isMedicError(e)) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const grpcCode = (err as { code?: unknown }).code;
  const row = ETCD_ERROR_TABLE.find((r) => r.classes.some((c) => err instanceof c) || (typeof grpcCode === 'number' && r.grpcCodes.includes(grpcCode)));
  const code = row?.code ?? 'ETCD_ERROR';
  const hint = row ? `${row.hint}: ` : '';
  return new MedicError(code, `${context}: ${hint}${err.message}`, row?.retryable ?? false, { cause: err });
}
