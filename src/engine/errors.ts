/**
 * Typed errors. Errors cross Redis (job failures) and process boundaries, so
 * callers recognise them by `code`, not only by `instanceof`.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'BAD_INPUT'
  | 'UNKNOWN_COMMAND'
  | 'UNKNOWN_CLUSTER'
  | 'UNKNOWN_NODE'
  | 'CHANNEL_NOT_ALLOWED'
  | 'NOT_PERMITTED'
  | 'QUEUE_UNAVAILABLE'
  | 'CLUSTER_BUSY'
  /** A user over the per-user request limit: nothing was queued. */
  | 'RATE_LIMITED'
  | 'UNSAFE'
  | 'APPROVAL_REFUSED'
  | 'APPROVAL_EXPIRED'
  | 'UNKNOWN_JOB'
  | 'CANCELLED'
  | 'LEASE_LOST'
  /** A stale lock holder's action refused where the change happens (fence file, lock token). */
  | 'FENCED'
  /** The worker is shutting down: the job is handed over at a step boundary. */
  | 'SHUTDOWN'
  | 'SSH_HOST_KEY_MISMATCH'
  | 'SSH_UNREACHABLE'
  | 'SSH_AUTH_FAILED'
  | 'REMOTE_TIMEOUT'
  | 'REMOTE_FAILED'
  | 'ETCD_UNAVAILABLE'
  | 'ETCD_TIMEOUT'
  | 'ETCD_ERROR'
  | 'SNAPSHOT_INVALID'
  /** The offsite object store could not be written or read (the local snapshot stays). */
  | 'OFFSITE_FAILED'
  | 'SNAPSHOT_FAILED'
  | 'TIMEOUT'
  | 'INTERNAL';

export class MedicError extends Error {
  override readonly name = 'MedicError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Whether running the same thing again may succeed (BullMQ retries only these). */
    readonly retryable = false,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isMedicError(e: unknown): e is MedicError {
  return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'MedicError'
    && typeof (e as { code?: unknown }).code === 'string';
}

/** A one-line, user-facing description of any thrown value. */
export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

