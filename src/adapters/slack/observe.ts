/**
 * Slack Web API calls, counted: 429s (the client waits out Retry-After and tries again) and
 * calls that failed for good, by method and Slack's error code or the HTTP failure.
 */
import { WebClientEvent, type WebClient } from '@slack/web-api';
import type { MedicMetrics } from '../../metrics/metrics';

/** Slack's `error` ("channel_not_found"), the HTTP status, or the client's own error code. */
export function slackErrorLabel(e: unknown): string {
  if (typeof e !== 'object' || e === null) return 'unknown';
  const err = e as { code?: unknown; data?: { error?: unknown }; statusCode?: unknown; original?: { response?: { status?: unknown } } };
  if (typeof err.data?.error === 'string') return err.data.error.slice(0, 60);
  if (typeof err.statusCode === 'number') return `http_${err.statusCode}`;
  if (typeof err.original?.response?.status === 'number') return `http_${err.original.response.status}`;
  return typeof err.code === 'string' ? err.code.slice(0, 60) : 'unknown';
}

const observed = new WeakSet<WebClient>();

/** The Web API families the bot calls (the adapter, user groups, auth.test). */
const NAMESPACES = ['auth', 'chat', 'conversations', 'users', 'usergroups'] as const;

function wrapMethods(target: unknown, prefix: string, metrics: MedicMetrics): void {
  if (typeof target !== 'object' || target === null) return;
  const obj = target as Record<string, unknown>;
  for (const [key, v] of Object.entries(obj)) {
    const method = `${prefix}.${key}`;
    if (typeof v === 'function') {
      const fn = v as (...a: unknown[]) => Promise<unknown>;
      obj[key] = async (...args: unknown[]) => {
        try {
          return await fn(...args);
        } catch (e) {
          metrics.slackError(method, slackErrorLabel(e));
          throw e;
        }
      };
    } else {
      wrapMethods(v, method, metrics);
    }
  }
}

export function observeWebClient(client: WebClient, metrics: MedicMetrics): WebClient {
  if (observed.has(client)) return client;
  observed.add(client);
  client.on(WebClientEvent.RATE_LIMITED, (_seconds: number, info?: { url?: string }) => {
    // The full URL of the call (…/api/chat.postMessage): its method is the last segment.
    metrics.slackRateLimited(/([a-zA-Z.]+)\/?$/.exec(info?.url ?? '')?.[1] ?? 'unknown');
  });
  // The method functions are bound to apiCall when the client is built: wrap each of them.
  for (const ns of NAMESPACES) wrapMethods((client as unknown as Record<string, unknown>)[ns], ns, metrics);
  return client;
}
