/** User group lookups: a crowd typing at once (nothing cached yet) asks Slack once per group. */
import type { WebClient } from '@slack/web-api';
import { createGroupResolver } from '../src/adapters/slack/groups';

const logger = { warn: () => undefined, info: () => undefined, debug: () => undefined, error: () => undefined } as never;

function clientWith(members: Record<string, string[]>, o: { failFirst?: boolean } = {}) {
  const calls: string[] = [];
  let failed = false;
  const client = {
    usergroups: {
      users: {
        list: async ({ usergroup }: { usergroup: string }) => {
          calls.push(usergroup);
          await new Promise((r) => setTimeout(r, 50));
          if (o.failFirst && !failed) { failed = true; throw new Error('ratelimited'); }
          return { ok: true, users: members[usergroup] ?? [] };
        },
      },
    },
  } as unknown as WebClient;
  return { client, calls };
}

describe('user group resolver', () => {
  it('200 requests at once, cache cold: one lookup per group, every answer right', async () => {
    const { client, calls } = clientWith({ S0ONCALL: ['U0ALICE', 'U0BOB'], S0LEADS: ['U0CAROL'] });
    const groups = createGroupResolver(client, ['S0ONCALL', 'S0LEADS'], logger);
    const users = Array.from({ length: 200 }, (_, i) => ['U0ALICE', 'U0BOB', 'U0CAROL', 'U0MALLORY'][i % 4]);
    const answers = await Promise.all(users.map((u) => groups.groupsOf(u)));
    expect(calls.sort()).toEqual(['S0LEADS', 'S0ONCALL']);
    expect(answers.slice(0, 4)).toEqual([['S0ONCALL'], ['S0ONCALL'], ['S0LEADS'], []]);
    // Cached now: no more lookups.
    await groups.groupsOf('U0ALICE');
    expect(calls).toHaveLength(2);
  });

  it('a failed lookup is not remembered: the next request asks again', async () => {
    const { client, calls } = clientWith({ S0ONCALL: ['U0ALICE'] }, { failFirst: true });
    const groups = createGroupResolver(client, ['S0ONCALL'], logger);
    expect(await Promise.all([groups.groupsOf('U0ALICE'), groups.groupsOf('U0ALICE')])).toEqual([[], []]);
    expect(calls).toHaveLength(1);
    expect(await groups.groupsOf('U0ALICE')).toEqual(['S0ONCALL']);
    expect(calls).toHaveLength(2);
  });
});
