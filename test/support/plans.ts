/** Helpers for tests that drive plans through the fake Slack: find plan messages, click buttons. */
import type { FakeMessage } from './fake-slack';
import { blocksText, Harness, LAB_CHANNEL, SIGNING_SECRET } from './harness';
import { blockActionsPayload, signedInteraction, SignedResponse } from './slack-sign';

/** The plan id carried by a plan message's buttons. */
export function planIdOf(m: FakeMessage): string {
  for (const b of (m.blocks ?? []) as Array<{ type: string; elements?: Array<{ value?: string }> }>) {
    if (b.type === 'actions' && b.elements?.[0]?.value) return b.elements[0].value;
  }
  throw new Error(`no plan buttons in message: ${m.text}`);
}

/** Waits for a channel (not thread) message whose text matches and that has buttons. */
export async function waitPlanMessage(h: Harness, match: RegExp, after = 0, timeoutMs = 60_000): Promise<FakeMessage> {
  return h.fake.waitFor((f) => f.messages(LAB_CHANNEL).slice(after).find((m) => !m.thread_ts && match.test(m.text ?? '')
    && (m.blocks ?? []).some((b) => (b as { type: string }).type === 'actions')), timeoutMs);
}

/** The plan message as it is now (after chat.update). */
export function currentMessage(h: Harness, ts: string): FakeMessage {
  const m = h.fake.messages(LAB_CHANNEL).find((x) => x.ts === ts);
  if (!m) throw new Error(`no message ${ts}`);
  return m;
}

/**
 * Waits until the plan message, as chat.update left it, matches: its last edit may arrive
 * after the thread's final report.
 */
export async function messageMatches(h: Harness, ts: string, match: RegExp, timeoutMs = 30_000): Promise<FakeMessage> {
  return h.fake.waitFor(() => {
    const m = currentMessage(h, ts);
    return match.test(m.text ?? '') ? m : undefined;
  }, timeoutMs).catch(() => {
    throw new Error(`the plan message never matched ${match} within ${timeoutMs} ms; it reads: ${currentMessage(h, ts).text}`);
  });
}

export function threadOf(h: Harness, ts: string): FakeMessage[] {
  return h.fake.messages(LAB_CHANNEL).filter((m) => m.thread_ts === ts);
}

export function threadText(h: Harness, ts: string): string {
  return threadOf(h, ts).map((m) => `${m.text ?? ''}\n${blocksText(m.blocks ?? [])}`).join('\n');
}

let clicks = 0;

/** A signed button click as Slack sends it; resolves with the HTTP answer and the private reply. */
export async function click(
  h: Harness, msg: FakeMessage, action: 'approve' | 'reject' | 'cancel', user: string,
  o: { channel?: string; value?: string; timestamp?: number; messageTs?: string } = {},
): Promise<{ res: SignedResponse; reply?: string }> {
  const id = `click${++clicks}`;
  const responseUrl = h.fake.responseUrl(id);
  const res = await signedInteraction({
    url: h.medic.slackUrl!,
    signingSecret: SIGNING_SECRET,
    timestamp: o.timestamp,
    payload: blockActionsPayload({
      actionId: `medic_${action}`, value: o.value ?? planIdOf(msg), userId: user, channelId: o.channel ?? msg.channel,
      teamId: 'T0MEDIC', responseUrl, messageTs: o.messageTs ?? msg.ts,
    }),
  });
  if (res.status !== 200) return { res };
  const reply = await h.fake.waitFor((f) => f.responses.find((r) => r.id === id), 15_000);
  return { res, reply: reply.text ?? "" };
}
