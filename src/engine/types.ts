import type { Report } from './report';

/** Where a request came from and where its answers go. Plain JSON: stored in the job. */
export type Origin =
  | {
      adapter: 'slack';
      /** Slack channel id the command was typed in. */
      channel: string;
      /** Slack user id of the requester. */
      user: string;
      /** Slack workspace id. */
      team?: string;
      /** response_url of the slash command (ephemeral follow-ups, 5 uses / 30 min). */
      responseUrl?: string;
      /** Slack user group ids (S…) the user belongs to, when the adapter resolved them. */
      groups?: string[];
    }
  | {
      adapter: 'console';
      /** "console" */
      channel: string;
      /** "console:<name>" */
      user: string;
      groups?: string[];
    };

/** One command as typed: "status lab" (without the leading "/etcd"). */
export interface Invocation {
  text: string;
  origin: Origin;
}

/** A job the queue carries to a worker. Plain JSON. */
export interface JobRequest {
  command: string;                       // command id, e.g. "status"
  args: Record<string, string>;          // validated arguments (names from the inventory)
  cluster?: string;
  origin: Origin;
  requestedAt: string;                   // ISO time
}

/** Outcome of validating an invocation, before anything is queued. */
export type Prepared =
  /** Bad input or not allowed: tell the requester privately, nothing runs. */
  | { kind: 'rejected'; code: string; message: string }
  /** Answered from configuration alone (help, clusters): no queue involved. */
  | { kind: 'reply'; report: Report; visibility: 'ephemeral' | 'channel' }
  /** Valid: to be queued. `summary` is a one-line description for acks ("status of lab"). */
  | { kind: 'job'; job: JobRequest; summary: string };

export type Submitted =
  | Exclude<Prepared, { kind: 'job' }>
  | { kind: 'queued'; jobId: string; job: JobRequest; summary: string };

/**
 * The engine's entry points. Chat adapters call these; nothing here knows about Slack.
 * `prepare` is synchronous and touches no network, so an adapter can acknowledge within
 * Slack's 3 s and enqueue afterwards; `submit` is prepare + enqueue for adapters without
 * that constraint.
 */
export interface EngineApi {
  prepare(inv: Invocation): Prepared;
  /** Throws MedicError('QUEUE_UNAVAILABLE') when Redis cannot take the job. */
  enqueue(job: JobRequest): Promise<string>;
  submit(inv: Invocation): Promise<Submitted>;
}

/** Delivers a finished job's report to where the request came from (chat adapters implement it). */
export interface Notifier {
  deliver(origin: Origin, report: Report, meta: { jobId: string }): Promise<void>;
}
