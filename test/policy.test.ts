/**
 * Policy tests: for every command, who may request it (by its risk and the cluster's
 * access block), who may approve it, and how many approvals it needs.
 */
import { commands } from '../commands';
import type { CommandDef, Risk } from '../src/engine/command';
import { isMedicError } from '../src/engine/errors';
import { checkRequest, matches } from '../src/engine/policy';
import type { Origin } from '../src/engine/types';
import { requiredApprovals } from '../src/engine/workflow';
import { clusterConfig } from './support/plan-state';

/** What each command is allowed to do to a cluster: the contract help and approvals rest on. */
const RISKS: Record<string, Risk> = {
  status: 'read',
  fleet: 'read',
  alarm: 'read',
  logs: 'read',
  jobs: 'read',
  audit: 'read',
  clusters: 'read',
  help: 'read',
  defrag: 'mutating',
  'alarm-disarm': 'mutating',
  // Changes only the bot's memory, but silences a data-loss alarm.
  forget: 'mutating',
  'add-member': 'mutating',
  'remove-member': 'destructive',
  'replace-member': 'destructive',
  'force-new-cluster': 'destructive',
  restore: 'destructive',
  'snapshot save': 'read',
  'snapshot list': 'read',
  diagnose: 'read',
  // Decisions on a plan: requesting them is harmless; who may approve is checked on the plan.
  approve: 'read',
  reject: 'read',
  cancel: 'read',
};

const ACCESS = {
  read: { requesters: ['*'] },
  mutating: { requesters: ['U0ONCALL', 'S0SRE'], approvers: ['U0LEAD', 'S0SRE'] },
  destructive: { requesters: ['U0ONCALL'], approvers: ['U0LEAD', 'U0LEAD2'] },
};
const cluster = clusterConfig({ access: ACCESS });

const slack = (user: string, groups?: string[], channel = 'C0INCIDENT'): Origin => ({ adapter: 'slack', channel, user, groups });

/** The error code checkRequest throws, or 'ok'. */
function request(c: CommandDef, origin: Origin, cl = cluster): string {
  try {
    checkRequest(cl, c.risk, origin);
    return 'ok';
  } catch (e) {
    if (isMedicError(e)) return e.code;
    throw e;
  }
}

describe('risk of each command', () => {
  it('every command declares the risk its effect calls for', () => {
    for (const c of commands) expect([c.id, c.risk]).toEqual([c.id, RISKS[c.id]]);
    // Every command that changes something is registered.
    const changing = Object.keys(RISKS).filter((id) => RISKS[id] !== 'read');
    expect(commands.filter((c) => c.risk !== 'read').map((c) => c.id).sort()).toEqual(changing.sort());
  });

  it('read commands only read; the others run as an approved plan', () => {
    for (const c of commands) {
      if (c.risk === 'read') expect({ id: c.id, plan: !!c.plan }).toEqual({ id: c.id, plan: false });
      else expect({ id: c.id, plan: !!c.plan, execute: !!c.execute }).toEqual({ id: c.id, plan: true, execute: false });
    }
  });
});

describe('who may request', () => {
  const table: Array<[string, Origin, Record<Risk, string>]> = [
    ['anyone in the channel', slack('U0RANDOM'), { read: 'ok', mutating: 'NOT_PERMITTED', destructive: 'NOT_PERMITTED' }],
    ['a member of the SRE user group', slack('U0SRE1', ['S0SRE']), { read: 'ok', mutating: 'ok', destructive: 'NOT_PERMITTED' }],
    ['the on-call engineer', slack('U0ONCALL'), { read: 'ok', mutating: 'ok', destructive: 'ok' }],
    ['an approver who is not a requester', slack('U0LEAD'), { read: 'ok', mutating: 'NOT_PERMITTED', destructive: 'NOT_PERMITTED' }],
    ['a console user', { adapter: 'console', channel: 'console', user: 'console:alice' }, { read: 'ok', mutating: 'NOT_PERMITTED', destructive: 'NOT_PERMITTED' }],
  ];
  for (const [who, origin, byRisk] of table) {
    it(`${who}: ${JSON.stringify(byRisk)}`, () => {
      for (const c of commands) expect([c.id, request(c, origin)]).toEqual([c.id, byRisk[c.risk]]);
    });
  }

  it('nobody, for any command, from a channel the cluster does not list', () => {
    for (const c of commands) expect([c.id, request(c, slack('U0ONCALL', [], 'C0ELSEWHERE'))]).toEqual([c.id, 'CHANNEL_NOT_ALLOWED']);
  });

  it('without an access block anyone in an allowed channel may request anything (approvals still apply)', () => {
    const open = clusterConfig();
    for (const c of commands) expect([c.id, request(c, slack('U0RANDOM'), open)]).toEqual([c.id, 'ok']);
  });

  it('the refusal says which list to be on', () => {
    const remove = commands.find((c) => c.id === 'remove-member')!;
    expect(() => checkRequest(cluster, remove.risk, slack('U0RANDOM'))).toThrow(/access\.destructive\.requesters/);
  });
});

describe('who may approve', () => {
  const approver = (risk: 'mutating' | 'destructive', user: string, groups: string[] = []) => matches(cluster.access[risk].approvers, user, groups);

  it('destructive plans: only the listed approvers', () => {
    expect(approver('destructive', 'U0LEAD')).toBe(true);
    expect(approver('destructive', 'U0LEAD2')).toBe(true);
    expect(approver('destructive', 'U0SRE1', ['S0SRE'])).toBe(false);
    expect(approver('destructive', 'U0ONCALL')).toBe(false);
  });

  it('mutating plans: listed approvers and members of a listed group', () => {
    expect(approver('mutating', 'U0LEAD')).toBe(true);
    expect(approver('mutating', 'U0SRE1', ['S0SRE'])).toBe(true);
    expect(approver('mutating', 'U0RANDOM')).toBe(false);
  });

  it('without an access block nobody is an approver', () => {
    const open = clusterConfig();
    expect(matches(open.access.destructive.approvers, 'U0LEAD')).toBe(false);
    expect(matches(open.access.mutating.approvers, 'U0LEAD')).toBe(false);
  });
});

describe('required approvals', () => {
  const planned = commands.filter((c) => c.plan);

  it('by default: destructive needs one approver, mutating only the requester\'s confirmation', () => {
    expect(Object.fromEntries(planned.map((c) => [c.id, requiredApprovals(c, cluster)]))).toEqual({
      'replace-member': 1, 'remove-member': 1, 'add-member': 0, defrag: 0, 'alarm-disarm': 0,
      // Silencing a data-loss alarm: someone else agrees.
      forget: 1,
      // Each throws away the identity of every other member: two people, whatever the policy.
      'force-new-cluster': 2, ...(planned.some((c) => c.id === 'restore') ? { restore: 2 } : {}),
    });
  });

  it('the cluster\'s access.<risk>.approvals sets the number', () => {
    const strict = clusterConfig({ access: { ...ACCESS, mutating: { ...ACCESS.mutating, approvals: 1 }, destructive: { ...ACCESS.destructive, approvals: 2 } } });
    expect(Object.fromEntries(planned.map((c) => [c.id, requiredApprovals(c, strict)]))).toEqual({
      'replace-member': 2, 'remove-member': 2, 'add-member': 1, defrag: 1, 'alarm-disarm': 1, forget: 1,
      'force-new-cluster': 2, ...(planned.some((c) => c.id === 'restore') ? { restore: 2 } : {}),
    });
  });

  it('a policy of 0 for destructive still needs one approver other than the requester', () => {
    const lax = clusterConfig({ access: { ...ACCESS, destructive: { ...ACCESS.destructive, approvals: 0 } } });
    expect(requiredApprovals({ risk: 'destructive' }, lax)).toBe(1);
    expect(requiredApprovals({ risk: 'mutating' }, lax)).toBe(0);
  });

  it('a command\'s own minimum wins over a lower policy, never lowers a higher one', () => {
    expect(requiredApprovals({ risk: 'destructive', minApprovals: 2 }, cluster)).toBe(2);
    const strict = clusterConfig({ access: { ...ACCESS, destructive: { ...ACCESS.destructive, approvals: 3 } } });
    expect(requiredApprovals({ risk: 'destructive', minApprovals: 2 }, strict)).toBe(3);
  });
});
