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
      /**
       * How the console knows who this is: the OS login, or a drill override
       * (MEDIC_CONSOLE_USER with MEDIC_DRILL=1). Absent for the bot's own (scheduler).
       */
      identity?: 'os' | 'override';
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
  /**
   * run: a read command, answered by a report. plan: compute the plan of a mutating
   * command and ask for approval. execute: run an approved plan (planId).
   * @defaultValue 'run'
   */
  phase?: 'run' | 'plan' | 'execute';
  planId?: string;
  /** Execution checkpoint, saved after every step (job.updateData) so a resumed job continues. */
  exec?: ExecCheckpoint;
}

export interface ExecCheckpoint {
  /** Index of the next step to run. */
  cursor: number;
  /** Values steps produced (new member ids, snapshot ids). */
  outputs: Record<string, string>;
  /** Set once execution began: a job that finds it set was resumed after a crash. */
  startedAt?: string;
  resumes: number;
  /** One line per finished step, for the plan message. */
  states: string[];
  /** Why the last worker let go of the job (shutdown, lost lease), for the one that resumes it. */
  handedOver?: string;
}

/** A decision on a plan: a button click (Slack) or a typed approve/reject/cancel (console). */
export interface Decision {
  action: 'approve' | 'reject' | 'cancel';
  planId: string;
  origin: Origin;
  /** Slack: the message the button was on; it must be the plan's own message. */
  message?: { channel: string; ts: string };
}

export interface DecisionResult {
  ok: boolean;
  /** Told to the person who decided, privately. */
  text: string;
  /** The plan message as it should look now (Slack updates it in place). */
  update?: { message: { channel: string; ts: string }; report: Report };
  /** A line for the plan's thread (the audit trail in chat). */
  thread?: string;
  executeJobId?: string;
}

/** Where a mutating job's messages go: the plan message, updated in place, and its thread. */
export interface ChatSurface {
  /** Posts the plan message; returns where it is (undefined where messages can't be edited). */
  post(origin: Origin, report: Report): Promise<{ channel: string; ts: string } | undefined>;
  update(message: { channel: string; ts: string }, report: Report): Promise<void>;
  /** A message in the plan's thread (or, without one, in the channel). */
  thread(origin: Origin, message: { channel: string; ts: string } | undefined, report: Report | string): Promise<void>;
}

/** Outcome of validating an invocation, before anything is queued. */
export type Prepared =
  /** Bad input or not allowed: tell the requester privately, nothing runs. */
  | { kind: 'rejected'; code: string; message: string }
  /** Answered from configuration alone (help, clusters): no queue involved. */
  | { kind: 'reply'; report: Report; visibility: 'ephemeral' | 'channel' }
  /** Valid: to be queued. `summary` is a one-line description for acks ("status of lab"). */
  | { kind: 'job'; job: JobRequest; summary: string }
  /** approve/reject/cancel typed as a command: the adapter calls decide(). */
  | { kind: 'decision'; decision: Decision };

export type Submitted =
  | Exclude<Prepared, { kind: 'job' | 'decision' }>
  | { kind: 'decided'; result: DecisionResult }
  | { kind: 'queued'; jobId: string; job: JobRequest; summary: string };

/**
 * The engine's entry points. Chat adapters call these; nothing here knows about Slack.
 * `prepare` is synchronous and touches no network, so an adapter can acknowledge within
 * Slack's 3 s and enqueue afterwards; `submit` is prepare + enqueue for adapters without
 * that constraint.
 */
export interface EngineApi {
  prepare(inv: Invocation): Prepared;
  /** Approve, reject or cancel a plan. Never throws for a refusal: the result says why. */
  decide?(d: Decision): Promise<DecisionResult>;
  /** Throws MedicError('QUEUE_UNAVAILABLE') when Redis cannot take the job. */
  enqueue(job: JobRequest): Promise<string>;
  submit(inv: Invocation): Promise<Submitted>;
}

/** Delivers a finished job's report to where the request came from (chat adapters implement it). */
export interface Notifier {
  deliver(origin: Origin, report: Report, meta: { jobId: string }): Promise<void>;
}
