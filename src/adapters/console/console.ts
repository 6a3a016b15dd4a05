import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { EngineApi, Origin } from '../../engine/types';
import { describeError } from '../../engine/errors';
import type { Report } from '../../engine/report';
import { renderText } from './render-text';

export interface ConsoleOptions {
  engine: EngineApi;
  /** Waits for a queued job's report (the queue's waitForReport). */
  waitForReport(jobId: string, timeoutMs: number, onProgress?: (text: string) => void): Promise<Report>;
  input: Readable;
  output: Writable;
  /** "console:<name>", matched against access rules. */
  user: string;
  /** How `user` was established (settings' ConsoleIdentity); carried in every request's origin. */
  identity?: 'os' | 'override';
  /** The OS login running the console, named in the banner of an override. */
  osLogin?: string;
  /** How long to wait for a job before giving the prompt back. @defaultValue 120000 */
  jobTimeoutMs?: number;
  prompt?: string;
}

/**
 * The same commands as in Slack, typed at a prompt: the embedded default without Slack
 * credentials, and the way in when Slack itself is down. Lines may start with "/etcd".
 */
export function runConsole(opts: ConsoleOptions): Promise<void> {
  const rl = createInterface({ input: opts.input, output: opts.output, terminal: false });
  const write = (s: string) => opts.output.write(`${s}\n`);
  const prompt = opts.prompt ?? 'etcd-medic> ';
  const origin: Origin = { adapter: 'console', channel: 'console', user: opts.user };
  if (opts.identity) origin.identity = opts.identity;
  write(`etcd-medic console — you are ${opts.user}. Type "help", or "quit" to leave.`);
  if (opts.identity === 'override') {
    // Said up front, so nobody mistakes a drill for a second person's approval.
    write(`identity ${opts.user} is a drill override of OS user ${opts.osLogin ?? 'unknown'} (MEDIC_DRILL=1)`);
  }
  opts.output.write(prompt);

  let chain = Promise.resolve();
  rl.on('line', (raw) => {
    // Handle lines one after another, in order, even when they arrive at once (pipes).
    chain = chain.then(async () => {
      const text = raw.trim().replace(/^\/etcd(\s+|$)/, '');
      if (text === 'quit' || text === 'exit') { rl.close(); return; }
      if (text) await handle(text);
      opts.output.write(prompt);
    });
  });

  async function handle(text: string): Promise<void> {
    try {
      const res = await opts.engine.submit({ text, origin });
      if (res.kind === 'rejected') write(`error: ${res.message}`);
      else if (res.kind === 'reply') write(renderText(res.report));
      else if (res.kind === 'decided') {
        write(`${res.result.ok ? '' : 'refused: '}${res.result.text.replace(/^:no_entry: /, '')}`);
        // The approval that completes a plan starts it: follow it here, step by step.
        if (res.result.executeJobId) {
          write(renderText(await opts.waitForReport(res.result.executeJobId, opts.jobTimeoutMs ?? 600000, (line) => write(line))));
        }
      } else {
        write(`queued ${res.summary} (job ${res.jobId})…`);
        write(renderText(await opts.waitForReport(res.jobId, opts.jobTimeoutMs ?? 120000, (line) => write(line))));
      }
    } catch (e) {
      write(`error: ${describeError(e)}`);
    }
  }

  return new Promise((resolve) => rl.on('close', () => { void chain.then(resolve); }));
}
