/**
 * A local stand-in for Slack's Web API and for slash-command response URLs, faithful to
 * Slack's documented wire format (https://docs.slack.dev/apis/web-api/):
 *
 * - `POST /api/<method>`, body `application/x-www-form-urlencoded` (with `blocks` /
 *   `attachments` as JSON strings) or `application/json`; token as `Authorization: Bearer`
 *   or a `token` field. Answers are HTTP 200 `{ ok, ... }` / `{ ok: false, error }`, and
 *   HTTP 429 + `Retry-After` when rate-limited.
 * - `POST /response/<id>`: a slash command's response_url (JSON body, 5 uses in 30 min).
 *
 * Real Slack is unreachable from tests; this is what the Slack adapter talks to instead.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeSlackOptions {
  /** Bot token the fake accepts. @defaultValue 'xoxb-test-token' */
  token?: string;
  /**
   * Channels that exist. @defaultValue any id matching /^[CGD][A-Z0-9]+$/
   */
  channels?: string[] | ((id: string) => boolean);
  /**
   * Per-channel limit on chat.postMessage (a token bucket): `perSecond` refill, `burst`
   * capacity. Over it the fake answers HTTP 429 with Retry-After. @defaultValue off
   */
  rateLimit?: { perSecond: number; burst: number };
  /** Lifetime of a response_url. @defaultValue 30 minutes */
  responseUrlTtlMs?: number;
  /** Uses allowed per response_url. @defaultValue 5 */
  responseUrlUses?: number;
  team?: string;
  teamId?: string;
  botUserId?: string;
  botId?: string;
  /** User groups (S…) and their members, for usergroups.users.list. @defaultValue none */
  usergroups?: Record<string, string[]>;
  /** Scopes the bot token lacks: methods needing them answer `missing_scope`. @defaultValue none */
  missingScopes?: string[];
}

export interface FakeCall {
  method: string;
  /** Parsed body; `blocks` / `attachments` parsed back to objects when they were JSON strings. */
  body: Record<string, unknown>;
  contentType: string;
  /** HTTP status the fake answered with. */
  status: number;
  /** The JSON the fake answered with. */
  response: Record<string, unknown>;
  time: number;
}

export interface FakeMessage {
  channel: string;
  ts: string;
  text?: string;
  blocks?: unknown[];
  thread_ts?: string;
  /** Set for chat.postEphemeral: the only user who sees it. */
  user?: string;
  ephemeral: boolean;
  /** How many times chat.update changed it. */
  edits: number;
}

export interface FakeResponse {
  id: string;
  response_type?: string;
  text?: string;
  blocks?: unknown[];
  replace_original?: boolean;
  delete_original?: boolean;
  body: Record<string, unknown>;
  status: number;
  time: number;
}

export interface FailNext {
  /** Slack error code to answer with, e.g. 'channel_not_found'. */
  error?: string;
  /** HTTP status instead (e.g. 500, or 429 with `retryAfter`). */
  status?: number;
  retryAfter?: number;
}

class BlockError extends Error {}

const LIMITS = {
  blocks: 50,
  headerText: 150,
  sectionText: 3000,
  fields: 10,
  fieldText: 2000,
  contextElements: 10,
  actionsElements: 25,
  buttonText: 75,
  buttonValue: 2000,
  actionId: 255,
  blockId: 255,
  textObject: 3000,
  messageText: 40_000,
  tableRows: 100,
  tableCells: 20,
} as const;

const KNOWN_BLOCKS = new Set([
  'actions', 'context', 'divider', 'file', 'header', 'image', 'input', 'markdown', 'rich_text',
  'section', 'table', 'video',
]);

export class FakeSlack {
  readonly calls: FakeCall[] = [];
  readonly responses: FakeResponse[] = [];
  private readonly stored: FakeMessage[] = [];
  private readonly responseUrls = new Map<string, { minted: number; uses: number }>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly failures = new Map<string, FailNext[]>();
  private readonly listeners = new Set<() => void>();
  private readonly opts: Required<Omit<FakeSlackOptions, 'rateLimit'>> & Pick<FakeSlackOptions, 'rateLimit'>;
  private server?: Server;
  private port = 0;
  private lastTs = 0;

  constructor(options: FakeSlackOptions = {}) {
    this.opts = {
      token: options.token ?? 'xoxb-test-token',
      channels: options.channels ?? ((id: string) => /^[CGD][A-Z0-9]+$/.test(id)),
      rateLimit: options.rateLimit,
      responseUrlTtlMs: options.responseUrlTtlMs ?? 30 * 60_000,
      responseUrlUses: options.responseUrlUses ?? 5,
      team: options.team ?? 'Medic Test',
      teamId: options.teamId ?? 'T0MEDIC01',
      botUserId: options.botUserId ?? 'U0MEDICBOT',
      botId: options.botId ?? 'B0MEDICBOT',
      usergroups: options.usergroups ?? {},
      missingScopes: options.missingScopes ?? [],
    };
  }

  /** Web API base URL, e.g. 'http://127.0.0.1:PORT/api/' (for WebClient's slackApiUrl). */
  get url(): string {
    return `${this.base}/api/`;
  }

  get token(): string {
    return this.opts.token;
  }

  private get base(): string {
    if (!this.server) throw new Error('FakeSlack is not started: await fake.start() first');
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const server = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        if (!res.headersSent) send(res, 500, { ok: false, error: 'fatal_error', detail: String(e) });
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      // Clients keep connections alive (fetch, WebClient): don't wait for them to idle out.
      server.closeAllConnections();
    });
  }

  /** Mints a response_url (as Slack puts in a slash command) the fake will accept. */
  responseUrl(id: string = `r${this.responseUrls.size + 1}`): string {
    if (!/^[A-Za-z0-9_-]+$/.test(id)) throw new Error(`response_url id must be [A-Za-z0-9_-]+, got ${JSON.stringify(id)}`);
    this.responseUrls.set(id, { minted: Date.now(), uses: 0 });
    return `${this.base}/response/${id}`;
  }

  /** Messages in channels (chat.postMessage, as changed by chat.update), oldest first. */
  messages(channel?: string): FakeMessage[] {
    return this.stored.filter((m) => !m.ephemeral && (channel === undefined || m.channel === channel));
  }

  /** chat.postEphemeral messages. */
  ephemerals(channel?: string): FakeMessage[] {
    return this.stored.filter((m) => m.ephemeral && (channel === undefined || m.channel === channel));
  }

  /** Calls of one Web API method. */
  callsTo(method: string): FakeCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  /** Makes the next call(s) of `method` fail, once per entry. */
  failNext(method: string, ...failures: FailNext[]): void {
    this.failures.set(method, [...(this.failures.get(method) ?? []), ...failures]);
  }

  /** Turns the per-channel chat.postMessage limit on or off at run time. */
  setRateLimit(limit: FakeSlackOptions['rateLimit']): void {
    this.opts.rateLimit = limit;
    this.buckets.clear();
  }

  /**
   * Resolves with the first truthy value of `predicate`, re-checked on every request the fake
   * receives. Rejects after `timeoutMs` with a list of what did arrive.
   */
  waitFor<T>(predicate: (fake: this) => T | undefined | null | false, timeoutMs = 5000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = (): boolean => {
        let value: T | undefined | null | false;
        try {
          value = predicate(this);
        } catch (e) {
          finish();
          reject(e);
          return true;
        }
        if (value) {
          finish();
          resolve(value);
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`FakeSlack.waitFor: condition not met within ${timeoutMs} ms. Received:\n${this.describe()}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      const listener = () => {
        check();
      };
      if (check()) return;
      this.listeners.add(listener);
    });
  }

  /** One line per call and response_url use, for failure messages. */
  describe(): string {
    const lines = [
      ...this.calls.map((c) => ({ time: c.time, line: `${c.method} ${JSON.stringify(summary(c.body))} -> ${c.status} ${JSON.stringify(c.response.ok ? { ok: true } : c.response)}` })),
      ...this.responses.map((r) => ({ time: r.time, line: `response_url ${r.id} ${JSON.stringify(summary(r.body))} -> ${r.status}` })),
    ].sort((a, b) => a.time - b.time);
    return lines.length ? lines.map((l) => `  ${l.line}`).join('\n') : '  (nothing)';
  }

  // -------------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const raw = await readBody(req);
    try {
      if (req.method === 'POST' && path.startsWith('/api/')) {
        this.handleApi(decodeURIComponent(path.slice('/api/'.length)), req, raw, res);
      } else if (req.method === 'POST' && path.startsWith('/response/')) {
        this.handleResponseUrl(path.slice('/response/'.length), req, raw, res);
      } else {
        send(res, 404, { ok: false, error: 'not_found' });
      }
    } finally {
      for (const l of [...this.listeners]) l();
    }
  }

  private handleApi(method: string, req: IncomingMessage, raw: string, res: ServerResponse): void {
    const contentType = String(req.headers['content-type'] ?? '');
    const record = (status: number, response: Record<string, unknown>, body: Record<string, unknown>, headers: Record<string, string> = {}) => {
      this.calls.push({ method, body, contentType, status, response, time: Date.now() });
      send(res, status, response, headers);
    };

    let body: Record<string, unknown>;
    try {
      body = parseApiBody(contentType, raw);
    } catch {
      record(200, { ok: false, error: 'invalid_json' }, { raw });
      return;
    }
    const bearer = /^Bearer\s+(.+)$/i.exec(String(req.headers.authorization ?? ''))?.[1];
    const token = bearer ?? (typeof body.token === 'string' ? body.token : undefined);
    delete body.token;

    const failure = this.failures.get(method)?.shift();
    if (failure) {
      if (failure.status === 429 || failure.retryAfter !== undefined) {
        record(429, { ok: false, error: 'ratelimited' }, body, { 'Retry-After': String(failure.retryAfter ?? 1) });
      } else if (failure.status !== undefined && failure.status !== 200) {
        record(failure.status, { ok: false, error: failure.error ?? 'fatal_error' }, body);
      } else {
        record(200, { ok: false, error: failure.error ?? 'fatal_error' }, body);
      }
      return;
    }

    if (!token) return record(200, { ok: false, error: 'not_authed' }, body);
    if (token !== this.opts.token) return record(200, { ok: false, error: 'invalid_auth' }, body);

    // Blocks arrive as JSON strings in form bodies; keep the parsed array for the record.
    let blocks: unknown[] | undefined;
    let blockErrors: string[] = [];
    if (body.blocks !== undefined) {
      const parsed = parseBlocks(body.blocks);
      if (parsed.blocks) body.blocks = parsed.blocks;
      blocks = parsed.blocks;
      blockErrors = parsed.errors;
    }
    if (typeof body.attachments === 'string') {
      try {
        body.attachments = JSON.parse(body.attachments);
      } catch {
        return record(200, { ok: false, error: 'invalid_attachments' }, body);
      }
    }

    const fail = (error: string, extra: Record<string, unknown> = {}) => record(200, { ok: false, error, ...extra }, body);
    const blocksInvalid = () => fail('invalid_blocks', { errors: blockErrors, response_metadata: { messages: blockErrors.map((e) => `[ERROR] ${e}`) } });

    switch (method) {
      case 'auth.test':
        return record(200, {
          ok: true,
          url: `https://medic-test.slack.com/`,
          team: this.opts.team,
          user: 'etcd-medic',
          team_id: this.opts.teamId,
          user_id: this.opts.botUserId,
          bot_id: this.opts.botId,
          is_enterprise_install: false,
        }, body);

      case 'chat.postMessage':
      case 'chat.postEphemeral': {
        const channel = str(body.channel);
        if (!channel) return fail('channel_not_found');
        const text = str(body.text);
        if (blockErrors.length) return blocksInvalid();
        if (!text && blocks === undefined && body.attachments === undefined) return fail('no_text');
        if (text && text.length > LIMITS.messageText) return fail('msg_too_long');
        if (!this.channelExists(channel)) return fail('channel_not_found');
        if (method === 'chat.postEphemeral') {
          const user = str(body.user);
          if (!user || !/^[UW][A-Z0-9]+$/.test(user)) return fail('user_not_in_channel');
          const ts = this.nextTs();
          this.stored.push({ channel, ts, text, blocks, user, ephemeral: true, edits: 0 });
          return record(200, { ok: true, message_ts: ts }, body);
        }
        const wait = this.rateLimited(channel);
        if (wait !== undefined) return record(429, { ok: false, error: 'ratelimited' }, body, { 'Retry-After': String(wait) });
        const threadTs = str(body.thread_ts);
        if (threadTs && !this.stored.some((m) => !m.ephemeral && m.channel === channel && m.ts === threadTs)) {
          return fail('thread_not_found');
        }
        const ts = this.nextTs();
        const message: FakeMessage = { channel, ts, text, blocks, thread_ts: threadTs, ephemeral: false, edits: 0 };
        this.stored.push(message);
        return record(200, { ok: true, channel, ts, message: this.wire(message) }, body);
      }

      case 'chat.update': {
        const channel = str(body.channel);
        const ts = str(body.ts);
        if (!channel || !this.channelExists(channel)) return fail('channel_not_found');
        // Ephemeral messages are not stored by Slack, so they can't be found to update.
        const message = this.stored.find((m) => !m.ephemeral && m.channel === channel && m.ts === ts);
        if (!message) return fail('message_not_found');
        if (blockErrors.length) return blocksInvalid();
        const text = str(body.text);
        if (text && text.length > LIMITS.messageText) return fail('msg_too_long');
        if (body.text !== undefined) message.text = text;
        if (blocks !== undefined) message.blocks = blocks;
        message.edits += 1;
        return record(200, { ok: true, channel, ts, text: message.text, message: this.wire(message) }, body);
      }

      // https://api.slack.com/methods/usergroups.users.list — scope usergroups:read.
      case 'usergroups.users.list': {
        if (this.opts.missingScopes.includes('usergroups:read')) return fail('missing_scope', { needed: 'usergroups:read', provided: 'commands,chat:write' });
        const group = str(body.usergroup);
        if (!group) return fail('invalid_arguments');
        const users = this.opts.usergroups[group];
        if (!users) return fail('no_such_subteam');
        return record(200, { ok: true, users }, body);
      }

      default:
        return record(200, { ok: false, error: 'unknown_method', req_method: method }, body);
    }
  }

  private handleResponseUrl(id: string, req: IncomingMessage, raw: string, res: ServerResponse): void {
    const answer = (status: number, body: Record<string, unknown>, reply: string) => {
      const r: FakeResponse = {
        id,
        response_type: str(body.response_type),
        text: str(body.text),
        blocks: Array.isArray(body.blocks) ? body.blocks : undefined,
        replace_original: typeof body.replace_original === 'boolean' ? body.replace_original : undefined,
        delete_original: typeof body.delete_original === 'boolean' ? body.delete_original : undefined,
        body,
        status,
        time: Date.now(),
      };
      this.responses.push(r);
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(reply);
    };
    let body: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(raw);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      body = parsed as Record<string, unknown>;
    } catch {
      return answer(400, { raw }, 'invalid_payload');
    }
    const url = this.responseUrls.get(id);
    if (!url) return answer(404, body, 'invalid_url');
    if (Date.now() - url.minted > this.opts.responseUrlTtlMs) return answer(404, body, 'expired_url');
    if (url.uses >= this.opts.responseUrlUses) return answer(404, body, 'used_url');
    if (body.blocks !== undefined) {
      const parsed = parseBlocks(body.blocks);
      if (parsed.errors.length) return answer(400, body, 'invalid_blocks');
      body.blocks = parsed.blocks;
    }
    const text = str(body.text);
    if (text && text.length > LIMITS.messageText) return answer(400, body, 'msg_too_long');
    if (!text && body.blocks === undefined && body.delete_original !== true) return answer(400, body, 'no_text');
    url.uses += 1;
    answer(200, body, 'ok');
  }

  private channelExists(id: string): boolean {
    const c = this.opts.channels;
    return Array.isArray(c) ? c.includes(id) : c(id);
  }

  /** Seconds to wait when the channel's bucket is empty, else undefined (and a token is spent). */
  private rateLimited(channel: string): number | undefined {
    const limit = this.opts.rateLimit;
    if (!limit) return undefined;
    const now = Date.now();
    const b = this.buckets.get(channel) ?? { tokens: limit.burst, at: now };
    b.tokens = Math.min(limit.burst, b.tokens + ((now - b.at) / 1000) * limit.perSecond);
    b.at = now;
    this.buckets.set(channel, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return undefined;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / limit.perSecond));
  }

  /** Message ids like Slack's: "<unix seconds>.<6 digits>", unique and increasing. */
  private nextTs(): string {
    const micros = Math.max(Date.now() * 1000, this.lastTs + 1);
    this.lastTs = micros;
    return `${Math.floor(micros / 1e6)}.${String(micros % 1e6).padStart(6, '0')}`;
  }

  private wire(m: FakeMessage): Record<string, unknown> {
    return {
      type: 'message',
      user: this.opts.botUserId,
      bot_id: this.opts.botId,
      ts: m.ts,
      text: m.text ?? '',
      ...(m.blocks ? { blocks: m.blocks } : {}),
      ...(m.thread_ts ? { thread_ts: m.thread_ts } : {}),
    };
  }
}

// ---------------------------------------------------------------------------------------

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
  res.end(JSON.stringify(body));
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parseApiBody(contentType: string, raw: string): Record<string, unknown> {
  if (raw.trim() === '') return {};
  if (contentType.startsWith('application/json')) {
    const parsed: unknown = JSON.parse(raw);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    return parsed as Record<string, unknown>;
  }
  // Slack's default: application/x-www-form-urlencoded.
  return Object.fromEntries(new URLSearchParams(raw));
}

function str(x: unknown): string | undefined {
  return typeof x === 'string' ? x : typeof x === 'number' ? String(x) : undefined;
}

function summary(body: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body)) {
    if (k === 'blocks' && Array.isArray(v)) out.blocks = `[${v.length} blocks]`;
    else if (typeof v === 'string' && v.length > 80) out[k] = `${v.slice(0, 77)}...`;
    else out[k] = v;
  }
  return out;
}

/** Parses and checks blocks against Block Kit's documented limits. */
export function parseBlocks(input: unknown): { blocks?: unknown[]; errors: string[] } {
  let blocks: unknown = input;
  if (typeof input === 'string') {
    try {
      blocks = JSON.parse(input);
    } catch {
      return { errors: ['invalid JSON [json-pointer:/blocks]'] };
    }
  }
  if (!Array.isArray(blocks)) return { errors: ['must be an array [json-pointer:/blocks]'] };
  const errors: string[] = [];
  if (blocks.length > LIMITS.blocks) errors.push(`no more than ${LIMITS.blocks} items allowed [json-pointer:/blocks]`);
  let tables = 0;
  blocks.forEach((b, i) => {
    try {
      if (isObj(b) && b.type === 'table') tables += 1;
      checkBlock(b, `/blocks/${i}`);
    } catch (e) {
      errors.push(e instanceof BlockError ? e.message : String(e));
    }
  });
  if (tables > 1) errors.push('only one table block allowed per message [json-pointer:/blocks]');
  return { blocks, errors };
}

function checkBlock(b: unknown, at: string): void {
  if (!isObj(b) || typeof b.type !== 'string') throw new BlockError(`must be an object with a type [json-pointer:${at}]`);
  if (!KNOWN_BLOCKS.has(b.type)) throw new BlockError(`unknown block type ${b.type} [json-pointer:${at}/type]`);
  if (b.block_id !== undefined) checkString(b.block_id, 1, LIMITS.blockId, `${at}/block_id`);
  switch (b.type) {
    case 'header':
      checkTextObject(b.text, `${at}/text`, LIMITS.headerText, ['plain_text']);
      break;
    case 'section': {
      if (b.text === undefined && b.fields === undefined) throw new BlockError(`must provide text or fields [json-pointer:${at}]`);
      if (b.text !== undefined) checkTextObject(b.text, `${at}/text`, LIMITS.sectionText);
      if (b.fields !== undefined) {
        if (!Array.isArray(b.fields) || b.fields.length === 0) throw new BlockError(`fields must be a non-empty array [json-pointer:${at}/fields]`);
        if (b.fields.length > LIMITS.fields) throw new BlockError(`no more than ${LIMITS.fields} items allowed [json-pointer:${at}/fields]`);
        b.fields.forEach((f, j) => checkTextObject(f, `${at}/fields/${j}`, LIMITS.fieldText));
      }
      if (b.accessory !== undefined) checkElement(b.accessory, `${at}/accessory`);
      break;
    }
    case 'context': {
      if (!Array.isArray(b.elements) || b.elements.length === 0) throw new BlockError(`elements must be a non-empty array [json-pointer:${at}/elements]`);
      if (b.elements.length > LIMITS.contextElements) throw new BlockError(`no more than ${LIMITS.contextElements} items allowed [json-pointer:${at}/elements]`);
      b.elements.forEach((e, j) => {
        if (isObj(e) && e.type === 'image') return;
        checkTextObject(e, `${at}/elements/${j}`, LIMITS.textObject);
      });
      break;
    }
    case 'actions': {
      if (!Array.isArray(b.elements) || b.elements.length === 0) throw new BlockError(`elements must be a non-empty array [json-pointer:${at}/elements]`);
      if (b.elements.length > LIMITS.actionsElements) throw new BlockError(`no more than ${LIMITS.actionsElements} items allowed [json-pointer:${at}/elements]`);
      b.elements.forEach((e, j) => checkElement(e, `${at}/elements/${j}`));
      break;
    }
    case 'table': {
      if (!Array.isArray(b.rows)) throw new BlockError(`rows must be an array [json-pointer:${at}/rows]`);
      if (b.rows.length > LIMITS.tableRows) throw new BlockError(`no more than ${LIMITS.tableRows} items allowed [json-pointer:${at}/rows]`);
      b.rows.forEach((r, j) => {
        if (!Array.isArray(r) || r.length > LIMITS.tableCells) throw new BlockError(`no more than ${LIMITS.tableCells} items allowed [json-pointer:${at}/rows/${j}]`);
      });
      break;
    }
    default:
      break;
  }
}

function checkElement(e: unknown, at: string): void {
  if (!isObj(e) || typeof e.type !== 'string') throw new BlockError(`must be an object with a type [json-pointer:${at}]`);
  if (e.action_id !== undefined) checkString(e.action_id, 1, LIMITS.actionId, `${at}/action_id`);
  if (e.type === 'button') {
    checkTextObject(e.text, `${at}/text`, LIMITS.buttonText, ['plain_text']);
    if (e.value !== undefined) checkString(e.value, 1, LIMITS.buttonValue, `${at}/value`);
    if (e.style !== undefined && e.style !== 'primary' && e.style !== 'danger') {
      throw new BlockError(`must be one of primary, danger [json-pointer:${at}/style]`);
    }
  }
}

function checkTextObject(t: unknown, at: string, max: number, types: string[] = ['plain_text', 'mrkdwn']): void {
  if (!isObj(t)) throw new BlockError(`must be a text object [json-pointer:${at}]`);
  if (typeof t.type !== 'string' || !types.includes(t.type)) {
    throw new BlockError(`must be one of ${types.join(', ')} [json-pointer:${at}/type]`);
  }
  checkString(t.text, 1, max, `${at}/text`);
}

function checkString(s: unknown, min: number, max: number, at: string): void {
  if (typeof s !== 'string') throw new BlockError(`must be a string [json-pointer:${at}]`);
  if (s.length < min) throw new BlockError(`must be at least ${min} characters [json-pointer:${at}]`);
  if (s.length > max) throw new BlockError(`must be less than ${max + 1} characters [json-pointer:${at}]`);
}

function isObj(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
