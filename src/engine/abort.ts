/** Aborting work in flight: what an abort reports, and waits that end with it. */
import { isMedicError, MedicError } from './errors';

/** What an aborted operation reports: the abort's own MedicError (timeout, lost lease, shutdown), else CANCELLED. */
export function abortReason(signal: AbortSignal, what = 'aborted'): MedicError {
  const r: unknown = signal.reason;
  if (isMedicError(r)) return r;
  return new MedicError('CANCELLED', `${what}: ${r instanceof Error ? r.message : String(r ?? 'no reason given')}`);
}

/** Sleeps `ms`, or rejects with the signal's reason as soon as it aborts. */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = () => { clearTimeout(timer); reject(abortReason(signal!)); };
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** `p`, or the signal's reason as soon as it aborts (what `p` does afterwards is ignored). */
export function untilAborted<T>(signal: AbortSignal, p: Promise<T>): Promise<T> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  let onAbort: (() => void) | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => { onAbort = () => reject(abortReason(signal)); signal.addEventListener('abort', onAbort, { once: true }); }),
  ]).finally(() => signal.removeEventListener('abort', onAbort!));
}
