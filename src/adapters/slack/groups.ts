/**
 * Slack user groups (S…) named in access rules: which of them a user belongs to, from
 * usergroups.users.list (scope usergroups:read), cached briefly. Fails closed: a group whose
 * members can't be read matches nobody, and the user is told they are not permitted.
 */
import type { Logger } from '@slack/bolt';
import type { WebClient } from '@slack/web-api';
import { describeError } from '../../engine/errors';

export interface GroupResolverOptions {
  /** How long a group's member list is trusted. @defaultValue 60000 */
  ttlMs?: number;
  /** Bound on one lookup, so a slash command is still acknowledged within Slack's 3 s. @defaultValue 1200 */
  timeoutMs?: number;
}

export interface GroupResolver {
  /** The groups of interest that `user` belongs to (empty when none, or when lookups fail). */
  groupsOf(user: string): Promise<string[]>;
}

export function createGroupResolver(client: WebClient, groupIds: readonly string[], logger: Logger, o: GroupResolverOptions = {}): GroupResolver {
  const ttl = o.ttlMs ?? 60_000;
  const timeoutMs = o.timeoutMs ?? 1200;
  const cache = new Map<string, { users: Set<string>; at: number }>();
  // One lookup per group at a time: a crowd typing at once (cache cold) asks Slack once, not once each.
  const inFlight = new Map<string, Promise<Set<string>>>();

  const fetchMembers = async (group: string): Promise<Set<string>> => {
    try {
      const r = await client.usergroups.users.list({ usergroup: group });
      const users = new Set((r.users ?? []) as string[]);
      cache.set(group, { users, at: Date.now() });
      return users;
    } catch (e) {
      logger.warn(`could not read members of user group ${group} (${describeError(e)}): it matches nobody until it can be read; the app needs the usergroups:read scope`);
      return new Set();
    }
  };
  const members = (group: string): Promise<Set<string>> => {
    const hit = cache.get(group);
    if (hit && Date.now() - hit.at < ttl) return Promise.resolve(hit.users);
    let p = inFlight.get(group);
    if (!p) {
      p = fetchMembers(group).finally(() => inFlight.delete(group));
      inFlight.set(group, p);
    }
    return p;
  };

  return {
    async groupsOf(user) {
      if (!groupIds.length) return [];
      let timer: NodeJS.Timeout | undefined;
      const lookup = Promise.all(groupIds.map(async (g) => ((await members(g)).has(user) ? g : undefined)));
      const late = new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), timeoutMs); });
      try {
        const found = await Promise.race([lookup, late]);
        if (!found) logger.warn(`user group lookup for ${user} took over ${timeoutMs} ms: treating them as in no group this time`);
        return (found ?? []).filter((g): g is string => g !== undefined);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Every user group id (S…) the access rules of the configuration name. */
export function groupIdsIn(config: { clusters: Array<{ access: Record<string, unknown> }> }): string[] {
  const ids = new Set<string>();
  for (const c of config.clusters) {
    for (const rule of Object.values(c.access)) {
      if (!rule || typeof rule !== 'object') continue;
      for (const list of [(rule as { requesters?: string[] }).requesters, (rule as { approvers?: string[] }).approvers]) {
        for (const p of list ?? []) if (/^S[A-Z0-9]+$/.test(p)) ids.add(p);
      }
    }
  }
  return [...ids];
}
