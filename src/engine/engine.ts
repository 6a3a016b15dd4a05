import type { MedicConfig } from '../config/schema';
import type { CommandDef } from './command';
import { describeError, isMedicError, MedicError } from './errors';
import { parseInvocation } from './parse';
import { checkRequest } from './policy';
import type { Decision, DecisionResult, EngineApi, Invocation, JobRequest, Prepared, Submitted } from './types';

/** Whatever carries jobs to workers (BullMQ in production). */
export interface JobSink {
  /** jobId: a custom id, so adding the same job twice queues it once. */
  add(job: JobRequest, opts?: { jobId?: string }): Promise<string>;
}

export interface EngineOptions {
  config: MedicConfig;
  commands: readonly CommandDef[];
  queue: JobSink;
  /** @defaultValue () => new Date() */
  now?: () => Date;
  /** Approve/reject/cancel (the workflow); without it those commands say Redis is needed. */
  decide?: (d: Decision) => Promise<DecisionResult>;
}

/**
 * The one entry point every adapter uses (and tests use without Slack): validate,
 * answer what configuration alone can answer, queue the rest.
 */
export class Engine implements EngineApi {
  constructor(private readonly opts: EngineOptions) {}

  prepare(inv: Invocation): Prepared {
    try {
      const { command, args, cluster } = parseInvocation(inv.text, this.opts.commands, this.opts.config);
      if (command.reply) {
        const report = command.reply({ config: this.opts.config, commands: this.opts.commands, args, origin: inv.origin });
        return { kind: 'reply', report, visibility: 'ephemeral' };
      }
      if (command.decision) {
        return { kind: 'decision', decision: { action: command.decision, planId: args.job, origin: inv.origin } };
      }
      if (!cluster) throw new Error(`command ${command.id} has no cluster`);
      checkRequest(cluster, command.risk, inv.origin);
      const job: JobRequest = {
        command: command.id,
        args,
        cluster: cluster.name,
        origin: inv.origin,
        requestedAt: (this.opts.now ?? (() => new Date()))().toISOString(),
        phase: command.plan ? 'plan' : 'run',
      };
      return { kind: 'job', job, summary: `${command.id} ${Object.values(args).join(' ')}` };
    } catch (e) {
      if (isMedicError(e)) return { kind: 'rejected', code: e.code, message: e.message };
      return { kind: 'rejected', code: 'INTERNAL', message: `internal error: ${describeError(e)}` };
    }
  }

  async enqueue(job: JobRequest): Promise<string> {
    try {
      return await this.opts.queue.add(job);
    } catch (e) {
      if (isMedicError(e)) throw e;
      throw new MedicError('QUEUE_UNAVAILABLE', `could not queue ${job.command}: ${describeError(e)}`, true, { cause: e });
    }
  }

  async decide(d: Decision): Promise<DecisionResult> {
    if (!this.opts.decide) return { ok: false, text: 'this process can\'t record decisions (no Redis connection for approvals)' };
    try {
      return await this.opts.decide(d);
    } catch (e) {
      return { ok: false, text: `could not record your ${d.action} of plan ${d.planId}: ${describeError(e)}. Nothing changed; try again` };
    }
  }

  async submit(inv: Invocation): Promise<Submitted> {
    const prepared = this.prepare(inv);
    if (prepared.kind === 'decision') return { kind: 'decided', result: await this.decide(prepared.decision) };
    if (prepared.kind !== 'job') return prepared;
    const jobId = await this.enqueue(prepared.job);
    return { kind: 'queued', jobId, job: prepared.job, summary: prepared.summary };
  }
}
