/**
 * The Slack adapter: turns `/etcd …` slash commands into engine calls and posts finished
 * jobs' reports back to the channel. Transport and rendering only; what a command means and
 * whether it may run is the engine's business.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { App, LogLevel, type AllMiddlewareArgs, type BlockAction, type ButtonAction, type Logger, type RespondArguments, type SlackActionMiddlewareArgs, type SlackCommandMiddlewareArgs } from '@slack/bolt';
import { retryPolicies, WebClient, type RetryOptions } from '@slack/web-api';
import { describeError, isMedicError, MedicError } from '../../engine/errors';
import type { Report } from '../../engine/report';
import type { ChatSurface, DecisionResult, EngineApi, Invocation, Notifier, Origin, Prepared } from '../../engine/types';
import { escapeMrkdwn, PLAN_ACTION_IDS, renderReport } from './blocks';
import { createGroupResolver, GroupResolver } from './groups';
import { observeWebClient } from './observe';
import type { MedicMetrics } from '../../metrics/metrics';

export interface SlackAppOptions {
  engine: EngineApi;
  /** Verifies that requests come from Slack (HTTP mode). */
  signingSecret: string;
  /** Bot token (xoxb-…). */
  botToken: string;
  /** Web API base URL, with trailing slash. @defaultValue 'https://slack.com/api/' */
  slackApiUrl?: string;
  /** Port of the HTTP endpoint `/slack/events`; 0 picks a free one (see `address()`). Unused in Socket Mode. */
  port: number;
  /** Interface to listen on. @defaultValue all interfaces */
  host?: string;
  /** Connect out over Socket Mode instead of serving HTTP (no public URL needed). */
  socketMode?: { appToken: string };
  /** Bolt's Logger, or any logger with debug/info/warn/error (pino). @defaultValue Bolt's console logger */
  logger?: Logger | LoggerLike;
  /**
   * Web API retries (network errors, 5xx). A 429 is always retried after its Retry-After.
   * A number means that many quick retries (for tests).
   * @defaultValue 5 retries over about 5 minutes
   */
  webClientRetries?: number | RetryOptions;
  /** Per-request timeout for Web API calls, in ms. @defaultValue 10000 */
  webClientTimeoutMs?: number;
  /** Slash command to handle. @defaultValue '/etcd' */
  command?: string;
  /** User group ids (S…) the access rules name; their membership is looked up per request. @defaultValue none */
  groupIds?: readonly string[];
  /** Where Web API failures and 429s are counted. @defaultValue not counted */
  metrics?: MedicMetrics;
}

/** The four methods this adapter and Bolt log through; pino and console both fit. */
export interface LoggerLike {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

export interface SlackApp {
  app: App;
  /** Verifies the bot token (auth.test) and starts serving / connecting. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Posts finished jobs' reports to the channel they were requested from. */
  notifier: Notifier;
  /** Plan messages, their in-place updates and their threads. */
  surface: ChatSurface;
  /** Where the HTTP endpoint listens, once started (undefined in Socket Mode). */
  address(): { host: string; port: number; url: string } | undefined;
}

function webClientOptions(opts: Pick<SlackAppOptions, 'slackApiUrl' | 'webClientRetries' | 'webClientTimeoutMs'>) {
  return {
    slackApiUrl: opts.slackApiUrl,
    retryConfig: retryConfig(opts.webClientRetries),
    timeout: opts.webClientTimeoutMs ?? 10_000,
  };
}

/**
 * A worker's way to post results when it serves no Slack endpoint itself
 * (MEDIC_ROLE=worker): only the bot token and the Web API.
 */
export function createSlackWebNotifier(
  opts: Pick<SlackAppOptions, 'botToken' | 'slackApiUrl' | 'webClientRetries' | 'webClientTimeoutMs' | 'logger' | 'metrics'>,
): Notifier & { surface: ChatSurface } {
  const logger = opts.logger ? toBoltLogger(opts.logger) : undefined;
  const client = new WebClient(opts.botToken, { ...webClientOptions(opts), logger });
  if (opts.metrics) observeWebClient(client, opts.metrics);
  return { ...createSlackNotifier(client, logger ?? toBoltLogger(console)), surface: createSlackSurface(client, logger ?? toBoltLogger(console)) };
}

export function createSlackApp(opts: SlackAppOptions): SlackApp {
  const clientOptions = webClientOptions(opts);
  const common = {
    token: opts.botToken,
    logger: opts.logger ? toBoltLogger(opts.logger) : undefined,
    clientOptions,
    // No auth.test from the constructor: start() runs it, so a bad token fails start()
    // instead of surfacing as an unhandled rejection on the first request.
    deferInitialization: true,
    convoStore: false as const,
  };
  const app = opts.socketMode
    ? new App({ ...common, socketMode: true, appToken: opts.socketMode.appToken })
    : new App({
      ...common,
      signingSecret: opts.signingSecret,
      signatureVerification: true,
      endpoints: '/slack/events',
      // Slack wants the HTTP answer within 3 s: ack() responds at once, work continues after.
      processBeforeResponse: false,
    });

  const logger = app.logger;
  if (opts.metrics) observeWebClient(app.client, opts.metrics);
  const groups = createGroupResolver(app.client, opts.groupIds ?? [], logger);
  app.command(opts.command ?? '/etcd', createCommandListener(opts.engine, groups));
  app.action(new RegExp(`^(${Object.values(PLAN_ACTION_IDS).join('|')})$`), createPlanActionListener(opts.engine, groups));
  app.error(async (error) => {
    // The listener answers every error itself; this only keeps Bolt from rethrowing.
    logger.error(`unhandled error: ${describeError(error)}`);
  });

  let server: Server | undefined;
  let started = false;
  return {
    app,
    notifier: createSlackNotifier(app.client, logger),
    surface: createSlackSurface(app.client, logger),
    async start() {
      try {
        await app.init();
      } catch (e) {
        const slackError = platformError(e);
        if (!slackError) throw e;
        throw new MedicError('CONFIG_INVALID', `Slack rejected the bot token (auth.test: ${slackError}): check SLACK_BOT_TOKEN (xoxb-…) and that the app is installed in the workspace`, false, { cause: e });
      }
      if (opts.socketMode) {
        await app.start();
      } else {
        server = await app.start({ port: opts.port, host: opts.host });
      }
      started = true;
    },
    async stop() {
      if (!started) return;
      started = false;
      server = undefined;
      await app.stop();
    },
    address() {
      const a = server?.address() as AddressInfo | null | undefined;
      if (!a || typeof a !== 'object') return undefined;
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      return { host: a.address, port: a.port, url: `http://${host}:${a.port}/slack/events` };
    },
  };
}

// ---------------------------------------------------------------------------------------
// Slash command

type CommandArgs = SlackCommandMiddlewareArgs & AllMiddlewareArgs;

/** The `/etcd` listener: prepare, ack within Slack's 3 s, then enqueue. */
export function createCommandListener(engine: EngineApi, groups?: GroupResolver) {
  return async ({ command, ack, respond, client, logger }: CommandArgs): Promise<void> => {
    let acked = false;
    const ackOnce = async (message: RespondArguments) => {
      acked = true;
      await ack(message);
    };
    const origin: Origin = {
      adapter: 'slack',
      channel: command.channel_id,
      user: command.user_id,
      team: command.team_id,
      // Stamped with when Slack issued it: the job may be delivered by another process, much later.
      responseUrl: command.response_url ? stampResponseUrl(command.response_url) : undefined,
    };
    const inGroups = groups ? await groups.groupsOf(command.user_id) : [];
    if (inGroups.length) origin.groups = inGroups;
    const invocation: Invocation = { text: (command.text ?? '').trim(), origin };
    try {
      const prepared: Prepared = engine.prepare(invocation);
      switch (prepared.kind) {
        case 'rejected':
          await ackOnce(ephemeral(prepared.message));
          return;
        case 'reply': {
          const { text, blocks } = renderReport(prepared.report);
          await ackOnce({ response_type: prepared.visibility === 'channel' ? 'in_channel' : 'ephemeral', text, blocks });
          return;
        }
        case 'job': {
          await ackOnce(ephemeral(`⏳ ${prepared.summary}: on it…`));
          try {
            const jobId = await engine.enqueue(prepared.job);
            logger.info(`queued job ${jobId} (${prepared.summary}) for ${origin.user} in ${origin.channel}`);
          } catch (e) {
            logger.error(`enqueue failed for ${prepared.summary}: ${describeError(e)}`);
            await tellRequester({ respond, client, logger, origin }, enqueueFailedMessage(prepared.summary, e));
          }
          return;
        }
        case 'decision': {
          await ackOnce(ephemeral(`⏳ ${prepared.decision.action} ${prepared.decision.planId}…`));
          const result = await engine.decide!(prepared.decision);
          await applyDecision(client, logger, result);
          await tellRequester({ respond, client, logger, origin }, result.text);
          return;
        }
        default: {
          const unknown: never = prepared;
          throw new Error(`engine returned an unknown result: ${JSON.stringify(unknown)}`);
        }
      }
    } catch (e) {
      logger.error(`/etcd ${invocation.text} failed: ${describeError(e)}`);
      const message = `:x: etcd-medic failed to handle \`/etcd ${oneLine(invocation.text)}\`: ${describeError(e)}. `
        + 'Nothing was queued. Try again; if it keeps failing, check the bot\'s logs.';
      if (!acked) {
        try {
          await ackOnce(ephemeral(message));
          return;
        } catch (ackError) {
          logger.error(`ack failed: ${describeError(ackError)}`);
        }
      }
      await tellRequester({ respond, client, logger, origin }, message);
    }
  };
}

// ---------------------------------------------------------------------------------------
// Plan buttons

type ActionArgs = SlackActionMiddlewareArgs<BlockAction> & AllMiddlewareArgs;

/** A Slack workspace id (T…) or, for org-wide installs, an Enterprise Grid org id (E…). */
const SLACK_TEAM_ID = /^[TE][A-Z0-9]{2,20}$/;

/**
 * Approve / Reject / Cancel on a plan message. Bolt has verified the signature and the
 * timestamp; the engine checks the rest (who, which channel, which message, expiry).
 */
export function createPlanActionListener(engine: EngineApi, groups?: GroupResolver) {
  return async ({ ack, body, action, respond, client, logger }: ActionArgs): Promise<void> => {
    await ack();
    const button = action as ButtonAction;
    const kind = (Object.entries(PLAN_ACTION_IDS).find(([, id]) => id === button.action_id)?.[0]) as 'approve' | 'reject' | 'cancel' | undefined;
    const planId = typeof button.value === 'string' ? button.value : '';
    const say = async (text: string) => {
      try {
        await respond({ response_type: 'ephemeral', replace_original: false, text: escapeMrkdwn(text) });
      } catch (e) {
        logger.warn(`could not answer ${body.user.id} privately: ${describeError(e)}`);
      }
    };
    if (!kind || !/^[a-z0-9][a-z0-9-]{0,40}$/.test(planId) || !body.channel?.id || !engine.decide) {
      await say(':x: this button is not one of etcd-medic\'s plan buttons: nothing changed');
      return;
    }
    // The clicking user's own workspace, not the one the payload came through: in a shared
    // channel (Slack Connect) members of other workspaces see the same buttons, and only
    // the plan's own workspace may decide (the engine compares it with the plan's team).
    const team = body.user.team_id;
    if (!team || !SLACK_TEAM_ID.test(team)) {
      logger.warn(`${kind} of plan ${planId} by ${body.user.id}: refused, the click carried ${team ? `a malformed user.team_id ${JSON.stringify(team.slice(0, 40))}` : 'no user.team_id'}`);
      await say(`:no_entry: your ${kind} of plan ${planId} was refused: Slack did not say which workspace you belong to (user.team_id), so the bot can't check you are in the plan's workspace. Nothing changed. Use /etcd ${kind} ${planId} in the plan's channel instead.`);
      return;
    }
    const origin: Origin = { adapter: 'slack', channel: body.channel.id, user: body.user.id, team };
    const inGroups = groups ? await groups.groupsOf(body.user.id) : [];
    if (inGroups.length) origin.groups = inGroups;
    const message = body.message?.ts ? { channel: body.channel.id, ts: body.message.ts } : undefined;
    try {
      const result = await engine.decide({ action: kind, planId, origin, message });
      await applyDecision(client, logger, result);
      await say(result.text);
    } catch (e) {
      logger.error(`${kind} of plan ${planId} by ${origin.user} failed: ${describeError(e)}`);
      await say(`:x: could not record your ${kind} of plan ${planId}: ${describeError(e)}. Try again.`);
    }
  };
}

/** The plan message as it is now, and a line in its thread. */
async function applyDecision(client: WebClient, logger: Logger, r: DecisionResult): Promise<void> {
  if (!r.update) return;
  const { text, blocks } = renderReport(r.update.report);
  try {
    await client.chat.update({ channel: r.update.message.channel, ts: r.update.message.ts, text, blocks });
  } catch (e) {
    logger.warn(`could not update the plan message: ${describeError(e)}`);
  }
  if (r.thread) {
    try {
      await client.chat.postMessage({ channel: r.update.message.channel, thread_ts: r.update.message.ts, text: escapeMrkdwn(r.thread) });
    } catch (e) {
      logger.warn(`could not post to the plan's thread: ${describeError(e)}`);
    }
  }
}

/** Plan messages for workers: post once, update in place, details in the thread. */
export function createSlackSurface(client: WebClient, logger: Logger): ChatSurface {
  return {
    async post(origin, report) {
      if (origin.adapter !== 'slack') return undefined;
      const { text, blocks } = renderReport(report);
      const r = await client.chat.postMessage({ channel: origin.channel, text, blocks, unfurl_links: false, unfurl_media: false });
      if (!r.ts || !r.channel) throw new MedicError('INTERNAL', 'Slack returned no ts for the plan message');
      return { channel: r.channel, ts: r.ts };
    },
    async update(message, report) {
      const { text, blocks } = renderReport(report);
      await client.chat.update({ channel: message.channel, ts: message.ts, text, blocks });
    },
    async thread(origin, message, report) {
      if (origin.adapter !== 'slack') return;
      const rendered = typeof report === 'string' ? { text: escapeMrkdwn(report), blocks: undefined } : renderReport(report);
      try {
        await client.chat.postMessage({
          channel: message?.channel ?? origin.channel, thread_ts: message?.ts, text: rendered.text, blocks: rendered.blocks,
          unfurl_links: false, unfurl_media: false,
        });
      } catch (e) {
        logger.warn(`could not post to ${origin.channel}${message ? ` (thread ${message.ts})` : ''}: ${describeError(e)}`);
        throw e;
      }
    },
  };
}

function enqueueFailedMessage(summary: string, e: unknown): string {
  const reason = describeError(e);
  if (isMedicError(e) && (e.code === 'QUEUE_UNAVAILABLE' || e.code === 'RATE_LIMITED')) {
    // The engine's message already says what went wrong, that nothing ran, and what to do.
    return `:x: Could not queue ${summary}: ${reason}`;
  }
  const code = isMedicError(e) ? ` [${e.code}]` : '';
  return `:x: Could not queue ${summary}: ${reason}${code}. Nothing was run. `
    + 'Try again; if it keeps failing, check the bot\'s logs.';
}

/**
 * A private follow-up after the ack: through the response_url (works in any channel), or
 * chat.postEphemeral when that fails (expired or used up: 5 uses in 30 min).
 */
async function tellRequester(
  deps: { respond: CommandArgs['respond']; client: WebClient; logger: Logger; origin: Extract<Origin, { adapter: 'slack' }> },
  text: string,
): Promise<void> {
  const message = ephemeral(text);
  try {
    await deps.respond(message);
    return;
  } catch (e) {
    deps.logger.warn(`response_url follow-up failed (${describeError(e)}); trying chat.postEphemeral`);
  }
  try {
    await deps.client.chat.postEphemeral({ channel: deps.origin.channel, user: deps.origin.user, text: message.text });
  } catch (e) {
    deps.logger.error(`could not tell ${deps.origin.user} in ${deps.origin.channel}: ${describeError(e)}; message was: ${text}`);
  }
}

function ephemeral(text: string): RespondArguments & { text: string } {
  return { response_type: 'ephemeral', text: escapeMrkdwn(text) };
}

// ---------------------------------------------------------------------------------------
// Notifier

/** Slack errors after which the response_url may still reach the channel. */
const NOT_IN_CHANNEL = new Set(['not_in_channel', 'channel_not_found']);

export function createSlackNotifier(client: WebClient, logger: Logger): Notifier {
  return {
    async deliver(origin: Origin, report: Report, meta: { jobId: string }): Promise<void> {
      if (origin.adapter !== 'slack') return;
      const { text, blocks } = renderReport(report);
      try {
        await client.chat.postMessage({ channel: origin.channel, text, blocks, unfurl_links: false, unfurl_media: false });
        return;
      } catch (e) {
        const slackError = platformError(e);
        const responseUrl = slackError && NOT_IN_CHANNEL.has(slackError) && origin.responseUrl
          ? usableResponseUrl(origin.responseUrl, logger, meta.jobId) : undefined;
        if (responseUrl) {
          // The bot isn't a member of a private channel; a slash command's response_url can
          // still post there (for 30 minutes after the command).
          logger.warn(`chat.postMessage to ${origin.channel} failed (${slackError}); using the response_url for job ${meta.jobId}`);
          if (await postToResponseUrl(responseUrl, { response_type: 'in_channel', text, blocks }, logger)) return;
        }
        if (slackError && BLOCK_ERRORS.has(slackError)) {
          // Slack refused the layout (e.g. its undocumented total block-text limit): the
          // plain-text fallback carries the same report, so post that rather than nothing.
          logger.warn(`chat.postMessage to ${origin.channel} refused the blocks (${slackError}); posting text only for job ${meta.jobId}`);
          try {
            await client.chat.postMessage({ channel: origin.channel, text, unfurl_links: false, unfurl_media: false });
            return;
          } catch (e2) {
            logger.warn(`text-only post failed too: ${describeError(e2)}`);
          }
        }
        throw new MedicError(
          'INTERNAL',
          `Could not post the report of job ${meta.jobId} to Slack channel ${origin.channel}: ${slackError ?? describeError(e)}. `
            + (slackError && NOT_IN_CHANNEL.has(slackError)
              ? 'Invite the bot to the channel (/invite @etcd-medic) and run the command again.'
              : 'Check the bot token and Slack\'s status; the job itself has finished.'),
          // Platform errors (bad channel, bad token, bad blocks) won't fix themselves.
          slackError === undefined,
          { cause: e },
        );
      }
    },
  };
}

/** Slack honours a slash command's response_url for 30 minutes (and 5 uses). */
export const RESPONSE_URL_TTL_MS = 30 * 60_000;
/** Given up a minute early: web and worker hosts' clocks may differ a little. */
const RESPONSE_URL_MARGIN_MS = 60_000;
const ISSUED_AT = /#medic-issued-at=(\d{1,15})$/;

/**
 * The response_url as a job keeps it: with the time it was issued in the URL's fragment,
 * which is never sent over HTTP, so whichever process holds the origin later (a worker,
 * a resumed job) knows whether Slack still honours it. Slack's URLs carry no fragment.
 */
export function stampResponseUrl(url: string, issuedAt: number = Date.now()): string {
  return url.includes('#') ? url : `${url}#medic-issued-at=${Math.floor(issuedAt)}`;
}

/** How long ago a stamped response_url was issued, in ms; undefined without a stamp. */
export function responseUrlAgeMs(url: string, now: number = Date.now()): number | undefined {
  const m = ISSUED_AT.exec(url);
  return m ? now - Number(m[1]) : undefined;
}

/**
 * The response_url while Slack still honours it, else undefined, saying in the log why it
 * was dropped. One without a stamp (queued by an older version) can't be shown fresh.
 */
function usableResponseUrl(url: string, logger: Logger, jobId: string): string | undefined {
  const age = responseUrlAgeMs(url);
  if (age === undefined) {
    logger.warn(`job ${jobId}: its response_url carries no issue time, so it may have expired: dropped`);
    return undefined;
  }
  if (age < -RESPONSE_URL_MARGIN_MS) {
    logger.warn(`job ${jobId}: its response_url says it was issued in the future (clocks apart?): dropped`);
    return undefined;
  }
  if (age > RESPONSE_URL_TTL_MS - RESPONSE_URL_MARGIN_MS) {
    logger.warn(`job ${jobId}: its response_url was issued ${Math.round(age / 60_000)} min ago and Slack honours one for 30: dropped`);
    return undefined;
  }
  return url;
}

/** Errors about the message's blocks, not about the channel or token. */
const BLOCK_ERRORS = new Set(['invalid_blocks', 'invalid_blocks_format', 'msg_blocks_too_long']);

async function postToResponseUrl(url: string, body: RespondArguments, logger: Logger): Promise<boolean> {
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    await res.text();
    if (res.ok) return true;
    logger.warn(`response_url answered ${res.status}`);
  } catch (e) {
    logger.warn(`response_url failed: ${describeError(e)}`);
  }
  return false;
}

/** The `error` of a Web API platform error (`{ok: false, error}`), recognised by code. */
function platformError(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const err = e as { code?: unknown; data?: { error?: unknown } };
  return err.code === 'slack_webapi_platform_error' && typeof err.data?.error === 'string' ? err.data.error : undefined;
}

// ---------------------------------------------------------------------------------------

function retryConfig(retries: SlackAppOptions['webClientRetries']): RetryOptions {
  if (retries === undefined) return retryPolicies.fiveRetriesInFiveMinutes;
  if (typeof retries === 'number') return { retries, minTimeout: 50, maxTimeout: 500, factor: 2 };
  return retries;
}

function toBoltLogger(l: Logger | LoggerLike): Logger {
  if ('setLevel' in l && 'getLevel' in l && 'setName' in l) return l;
  // Bolt and the WebClient log strings with extra args, or an error first: give a
  // structured logger (pino) one object and one message.
  const method = (fn: (...args: unknown[]) => void) => (...args: unknown[]) => {
    const [first, ...rest] = args;
    if (typeof first === 'object' && first !== null) {
      fn.call(l, first, `slack: ${rest.map(String).join(' ')}`.trim());
    } else {
      fn.call(l, `slack: ${args.map(String).join(' ')}`);
    }
  };
  let level = LogLevel.INFO;
  return {
    debug: method(l.debug),
    info: method(l.info),
    warn: method(l.warn),
    error: method(l.error),
    // The wrapped logger filters by its own level.
    setLevel: (next: LogLevel) => {
      level = next;
    },
    getLevel: () => level,
    setName: () => undefined,
  };
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').slice(0, 200);
}
