/**
 * Sends requests the way Slack does to an app's request URL: form-encoded, signed with the
 * app's signing secret (https://docs.slack.dev/authentication/verifying-requests-from-slack).
 */
import { createHmac } from 'node:crypto';
import { request } from 'node:http';

export interface SignedResponse {
  status: number;
  /** Raw response body. */
  body: string;
  /** The body parsed, when it is JSON. */
  json?: Record<string, unknown>;
}

interface SignOptions {
  /** The app's endpoint, e.g. 'http://127.0.0.1:PORT/slack/events'. */
  url: string;
  signingSecret: string;
  /** Unix seconds. @defaultValue now */
  timestamp?: number;
  /** Sign with a different secret, so verification fails. */
  badSignature?: boolean;
}

export interface SlashCommandFields {
  command: string;
  text: string;
  user_id: string;
  channel_id: string;
  team_id: string;
  response_url: string;
  trigger_id?: string;
  [extra: string]: string | undefined;
}

/** POSTs a signed slash command (as Slack sends `/etcd status lab`). */
export function signedSlashCommand(opts: SignOptions & { fields: SlashCommandFields }): Promise<SignedResponse> {
  const fields: Record<string, string> = {
    token: 'deprecated-verification-token',
    team_domain: 'medic-test',
    channel_name: 'incidents',
    user_name: 'alice',
    api_app_id: 'A0MEDIC01',
    is_enterprise_install: 'false',
    trigger_id: `${Date.now()}.1234.abcdef`,
  };
  for (const [k, v] of Object.entries(opts.fields)) if (v !== undefined) fields[k] = v;
  return signedPost(opts, new URLSearchParams(fields).toString());
}

/** POSTs a signed interaction, e.g. a `block_actions` payload from a button click. */
export function signedInteraction(opts: SignOptions & { payload: Record<string, unknown> }): Promise<SignedResponse> {
  return signedPost(opts, new URLSearchParams({ payload: JSON.stringify(opts.payload) }).toString());
}

/**
 * A minimal `block_actions` payload for one button click, shaped as Slack sends it:
 * `user: {id, username, name, team_id}` (the clicking user's own workspace) and
 * `team: {id, domain}` (the workspace the click came through).
 */
export function blockActionsPayload(p: {
  actionId: string;
  value: string;
  userId: string;
  channelId: string;
  teamId: string;
  /**
   * The clicking user's workspace (user.team_id): another one for a Slack Connect guest;
   * null leaves it out. @defaultValue teamId
   */
  userTeamId?: string | null;
  responseUrl: string;
  messageTs?: string;
  blockId?: string;
}): Record<string, unknown> {
  const userTeam = p.userTeamId === undefined ? p.teamId : p.userTeamId;
  return {
    type: 'block_actions',
    user: { id: p.userId, username: 'alice', name: 'alice', ...(userTeam === null ? {} : { team_id: userTeam }) },
    api_app_id: 'A0MEDIC01',
    token: 'deprecated-verification-token',
    container: { type: 'message', message_ts: p.messageTs ?? '1700000000.000100', channel_id: p.channelId, is_ephemeral: false },
    trigger_id: `${Date.now()}.1234.abcdef`,
    team: { id: p.teamId, domain: 'medic-test' },
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: p.channelId, name: 'incidents' },
    message: { type: 'message', ts: p.messageTs ?? '1700000000.000100', text: '' },
    response_url: p.responseUrl,
    actions: [{
      type: 'button',
      action_id: p.actionId,
      block_id: p.blockId ?? 'medic-actions',
      text: { type: 'plain_text', text: 'button' },
      value: p.value,
      action_ts: `${Date.now() / 1000}`,
    }],
  };
}

/** `v0=` + hex HMAC-SHA256(secret, `v0:<timestamp>:<raw body>`). */
export function slackSignature(signingSecret: string, timestamp: number, rawBody: string): string {
  return `v0=${createHmac('sha256', signingSecret).update(`v0:${timestamp}:${rawBody}`).digest('hex')}`;
}

function signedPost(opts: SignOptions, rawBody: string): Promise<SignedResponse> {
  const timestamp = opts.timestamp ?? Math.floor(Date.now() / 1000);
  const secret = opts.badSignature ? `${opts.signingSecret}-wrong` : opts.signingSecret;
  const url = new URL(opts.url);
  return new Promise((resolve, reject) => {
    const req = request({
      hostname: url.hostname,
      port: url.port,
      path: `${url.pathname}${url.search}`,
      method: 'POST',
      // One connection per request: nothing lingers to keep the app's server (or jest) open.
      agent: false,
      headers: {
        // Exactly this: Bolt parses bodies only for this literal content type.
        'content-type': 'application/x-www-form-urlencoded',
        'content-length': Buffer.byteLength(rawBody),
        'x-slack-request-timestamp': String(timestamp),
        'x-slack-signature': slackSignature(secret, timestamp, rawBody),
        connection: 'close',
      },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let json: Record<string, unknown> | undefined;
        try {
          const parsed: unknown = body ? JSON.parse(body) : undefined;
          if (typeof parsed === 'object' && parsed !== null) json = parsed as Record<string, unknown>;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(rawBody);
  });
}
