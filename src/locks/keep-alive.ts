/**
 * Keeps a cluster lease alive while a plan runs, in the spirit of bullmq's LockManager: a
 * renewal loop of its own instead of timers inside the job loop.
 *
 * The lease is presumed lost as soon as no renewal has *succeeded* for the lease time minus
 * a margin, whatever the cause: Redis unreachable (SIGSTOPped, partitioned), too slow to
 * answer, or answering "not yours" (another holder). Past that point another worker may
 * legitimately take the cluster, so this one must have stopped acting before then: the
 * margin covers aborting the step in flight and clock drift between hosts.
 */
import type { Lease } from './cluster-lock';

export interface KeepAliveOptions {
  /** Lease time of the lock (what one renewal extends it by). */
  leaseMs: number;
  /** Renewal interval. @defaultValue leaseMs / 3 */
  everyMs?: number;
  /**
   * How long before the lease could lapse in Redis the holder gives up.
   * @defaultValue min(5000, max(500, leaseMs / 5))
   */
  marginMs?: number;
  /** Called once, with why, when the lease is presumed lost. */
  onLost(reason: string): void;
  /** @defaultValue Date.now */
  now?: () => number;
}

export interface KeepAlive {
  /** Set once the lease is presumed lost; never cleared. */
  readonly lost: string | undefined;
  /** Milliseconds left before the holder must have stopped acting (0 once lost). */
  remainingMs(): number;
  /** Stops renewing (the job is over; releasing the lease is the caller's business). */
  stop(): void;
}

export function defaultMarginMs(leaseMs: number): number {
  return Math.min(5000, Math.max(500, Math.floor(leaseMs / 5)));
}

/**
 * Starts renewing `lease`. The deadline counts from when a successful renewal was *sent*
 * (Redis extends the lease at some point after that, never before), starting with the
 * acquisition, which the caller made just before.
 */
export function keepAlive(lease: Lease, opts: KeepAliveOptions): KeepAlive {
  const now = opts.now ?? Date.now;
  const everyMs = opts.everyMs ?? Math.max(200, Math.floor(opts.leaseMs / 3));
  const marginMs = opts.marginMs ?? defaultMarginMs(opts.leaseMs);
  let okSentAt = now();
  let lost: string | undefined;
  let stopped = false;
  let inFlight = false;
  let watchdog: NodeJS.Timeout | undefined;

  const deadline = () => okSentAt + opts.leaseMs - marginMs;
  const lose = (reason: string) => {
    if (lost || stopped) return;
    lost = reason;
    clearInterval(loop);
    clearTimeout(watchdog);
    opts.onLost(reason);
  };
  const arm = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => {
      if (now() >= deadline()) {
        lose(`no renewal of the lease on ${lease.cluster} succeeded for ${Math.round((now() - okSentAt) / 100) / 10} s (lease ${opts.leaseMs / 1000} s): Redis unreachable or too slow`);
      } else arm();
    }, Math.max(0, deadline() - now()));
    watchdog.unref?.();
  };
  const renew = async () => {
    if (inFlight || lost || stopped) return; // one renewal at a time: a hung one counts as failing
    inFlight = true;
    const sentAt = now();
    try {
      const ok = await lease.renew();
      if (stopped || lost) return;
      if (!ok) return lose(`the lease on ${lease.cluster} (token ${lease.token}) is held by someone else now`);
      okSentAt = Math.max(okSentAt, sentAt);
      arm();
    } catch {
      /* Redis blinked: the watchdog decides when that has lasted too long */
    } finally {
      inFlight = false;
    }
  };
  const loop = setInterval(() => { void renew(); }, everyMs);
  loop.unref?.();
  arm();
  return {
    get lost() { return lost; },
    remainingMs: () => (lost ? 0 : Math.max(0, deadline() - now())),
    stop() {
      stopped = true;
      clearInterval(loop);
      clearTimeout(watchdog);
    },
  };
}
