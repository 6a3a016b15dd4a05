import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { startMedic, Medic, MedicOptions } from '../../src/app';
import { loadConfig } from '../../src/config/load';
import type { MedicConfig } from '../../src/config/schema';
import { FakeSlack, FakeSlackOptions } from './fake-slack';
import { signedSlashCommand, SignedResponse } from './slack-sign';
import { LAB_DIR, labConfigPath } from './lab';

export const SIGNING_SECRET = 'test-signing-secret-0123456789abcdef';
export const LAB_CHANNEL = 'CLAB00001';
/** Snapshots the bot takes during tests (safety snapshots). */
export const TEST_SNAPSHOT_DIR = `/tmp/etcd-medic-test-snapshots-${process.pid}`;
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6399';

export interface Harness {
  fake: FakeSlack;
  medic: Medic;
  config: MedicConfig;
  /** Sends a correctly signed `/etcd <text>` as Slack would. */
  slash(text: string, opts?: { user?: string; channel?: string; timestamp?: number; badSignature?: boolean; responseUrl?: string }): Promise<SignedResponse>;
  /**
   * Waits for the next channel message (chat.postMessage) whose fallback text matches;
   * returns what a user sees: the text of its blocks, and the fallback text.
   */
  nextMessage(match: RegExp, timeoutMs?: number): Promise<{ blocks: string; text: string }>;
  stop(): Promise<void>;
}

let seq = 0;

/**
 * The whole bot as production wires it — Bolt's HTTP receiver, BullMQ queue and worker on
 * the test Redis, SSH to the lab — with Slack's Web API replaced by the local fake.
 */
export interface HarnessOptions {
  mutateConfig?: (c: MedicConfig) => void;
  redisUrl?: string;
  /** Run a worker in the test process. @defaultValue true */
  worker?: boolean;
  queueName?: string;
  now?: () => Date;
  /** Options of the fake Slack (user groups, missing scopes…). */
  fakeSlack?: FakeSlackOptions;
  /** The per-user request limit (benchmarks turn it off). @defaultValue the bot's */
  requestLimit?: MedicOptions['requestLimit'];
  /** Serve /metrics, /healthz, /readyz (port 0: any free one; see medic.opsUrl). @defaultValue not served */
  ops?: MedicOptions['ops'];
  /** Keep snapshots offsite too (an S3-API store). @defaultValue none */
  offsite?: MedicOptions['offsite'];
  /** How long status probes keep their connections (0: a fresh set per probe). @defaultValue the bot's */
  keepConnectionsMs?: number;
}

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const fake = new FakeSlack(opts.fakeSlack);
  await fake.start();
  const config = loadConfig(labConfigPath());
  opts.mutateConfig?.(config);
  const queueName = opts.queueName ?? `t-${process.pid}-${Date.now()}-${seq++}`;
  const medic = await startMedic({
    config,
    redisUrl: opts.redisUrl ?? TEST_REDIS_URL,
    queueName,
    worker: opts.worker ?? true,
    snapshotDir: TEST_SNAPSHOT_DIR,
    now: opts.now,
    requestLimit: opts.requestLimit,
    ops: opts.ops,
    offsite: opts.offsite,
    keepConnectionsMs: opts.keepConnectionsMs,
    // A fresh audit log per harness: tests verify the chain they wrote.
    audit: { key: `t-audit-${queueName}` },
    sshKey: readFileSync(join(LAB_DIR, 'bot_id_ed25519')),
    slack: { serve: true, botToken: fake.token, signingSecret: SIGNING_SECRET, apiUrl: fake.url, port: 0, host: '127.0.0.1', webClientRetries: 0 },
    log: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
  });
  const url = medic.slackUrl!;
  let seen = 0;
  return {
    fake,
    medic,
    config,
    slash: (text, o = {}) => signedSlashCommand({
      url,
      signingSecret: SIGNING_SECRET,
      timestamp: o.timestamp,
      badSignature: o.badSignature,
      fields: {
        command: '/etcd', text, user_id: o.user ?? 'U0ALICE', channel_id: o.channel ?? LAB_CHANNEL, team_id: 'T0MEDIC',
        response_url: o.responseUrl ?? fake.responseUrl(),
      },
    }),
    async nextMessage(match, timeoutMs = 60000) {
      const msg = await fake.waitFor((f) => f.messages().slice(seen).find((m) => match.test(m.text ?? '')), timeoutMs);
      seen = fake.messages().indexOf(msg) + 1;
      return { blocks: blocksText(msg.blocks ?? []), text: msg.text ?? '' };
    },
    async stop() {
      await medic.stop();
      await fake.stop();
    },
  };
}

/** Jobs in the harness's queue, whatever their state (what "nothing was queued" is checked with). */
export async function jobCount(h: Harness): Promise<number> {
  const counts = await h.medic.queue.queue.getJobCounts();
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

/** Every text a user would read in a message's blocks, in order, one per line. */
export function blocksText(blocks: unknown[]): string {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) { v.forEach(walk); return; }
    if (!v || typeof v !== 'object') return;
    const o = v as Record<string, unknown>;
    if (typeof o.text === 'string') out.push(o.text);
    for (const [k, child] of Object.entries(o)) if (k !== 'text' || typeof child !== 'string') walk(child);
  };
  walk(blocks);
  return out.join('\n');
}
