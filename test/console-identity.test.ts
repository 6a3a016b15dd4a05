/**
 * Who the console is: the OS login, unless a drill says otherwise out loud. Access rules
 * name console users as approvers, so a name anyone can put in the environment would let
 * one person approve their own destructive plan.
 */
import { PassThrough } from 'node:stream';
import { commands } from '../commands';
import { runConsole } from '../src/adapters/console/console';
import { parseConfig } from '../src/config/load';
import { Engine } from '../src/engine/engine';
import type { JobRequest } from '../src/engine/types';
import { consoleIdentity, readSettings } from '../src/settings';

const root = () => ({ username: 'root' });

describe('console identity', () => {
  it('is console:<OS login> by default', () => {
    expect(consoleIdentity({}, root)).toEqual({ user: 'console:root', identity: 'os', osLogin: 'root' });
    expect(consoleIdentity({}, () => ({ username: 'alice' }))).toMatchObject({ user: 'console:alice', identity: 'os' });
  });

  it('refuses MEDIC_CONSOLE_USER without MEDIC_DRILL=1, saying why and what to do', () => {
    expect(() => consoleIdentity({ MEDIC_CONSOLE_USER: 'console:bob' }, root)).toThrow(
      /MEDIC_CONSOLE_USER=console:bob: the console acts as your OS login \(console:root\); another identity is for tests and drills only.*set MEDIC_DRILL=1 as well.*or unset MEDIC_CONSOLE_USER/,
    );
    expect(() => consoleIdentity({ MEDIC_CONSOLE_USER: 'bob', MEDIC_DRILL: '' }, root)).toThrow(/MEDIC_DRILL=1/);
  });

  it('takes the override under MEDIC_DRILL=1 and marks it as one', () => {
    expect(consoleIdentity({ MEDIC_CONSOLE_USER: 'console:bob', MEDIC_DRILL: '1' }, root))
      .toEqual({ user: 'console:bob', identity: 'override', osLogin: 'root' });
    expect(consoleIdentity({ MEDIC_CONSOLE_USER: 'bob', MEDIC_DRILL: '1' }, root)).toMatchObject({ user: 'console:bob', identity: 'override' });
  });

  it('needs no drill to name the OS login itself', () => {
    expect(consoleIdentity({ MEDIC_CONSOLE_USER: 'console:root' }, root)).toEqual({ user: 'console:root', identity: 'os', osLogin: 'root' });
  });

  it('refuses bad values and logins it cannot use as they are', () => {
    expect(() => consoleIdentity({ MEDIC_CONSOLE_USER: 'console:Bob;id', MEDIC_DRILL: '1' }, root)).toThrow(/"console:<name>" with a name of lowercase letters/);
    expect(() => consoleIdentity({ MEDIC_CONSOLE_USER: 'console:bob', MEDIC_DRILL: 'yes' }, root)).toThrow(/MEDIC_DRILL=yes: 1 \(tests and drills\) or unset/);
    // "Bob" and "bob" are two accounts: folding case would make them one identity.
    expect(() => consoleIdentity({}, () => ({ username: 'Bob' }))).toThrow(/OS login "Bob" can't be a console identity/);
    expect(() => consoleIdentity({}, () => ({ username: '' }))).toThrow(/OS login "" can't be a console identity/);
    expect(() => consoleIdentity({}, () => { throw new Error('ENOENT: no such file or directory, uv_os_get_passwd'); }))
      .toThrow(/cannot tell which OS user runs the console \(ENOENT.*\): the console identity is the OS login/);
  });

  it('is resolved for the console role only (a worker in a container may have no login)', () => {
    const base = { MEDIC_SSH_KEY: 'k', MEDIC_CONSOLE_USER: 'console:bob' };
    expect(() => readSettings({ ...base, MEDIC_ROLE: 'console' })).toThrow(/MEDIC_DRILL=1/);
    expect(readSettings({ ...base, MEDIC_ROLE: 'console', MEDIC_DRILL: '1' }).console).toMatchObject({ user: 'console:bob', identity: 'override' });
    expect(readSettings({ ...base, MEDIC_ROLE: 'worker' }).console).toBeUndefined();
  });
});

describe('console adapter with an identity', () => {
  const config = parseConfig(`
clusters:
  - name: drill
    channels: [console]
    nodes:
      - { name: n1, ssh: { host: 10.0.0.11, hostKey: "SHA256:${'A'.repeat(43)}" }, clientUrl: "https://10.0.0.11:2379", peerUrl: "https://10.0.0.11:2380" }
`);

  async function session(lines: string, identity?: { identity: 'os' | 'override'; osLogin: string }, user = 'console:bob') {
    const jobs: JobRequest[] = [];
    const engine = new Engine({ config, commands, queue: { add: async (j) => { jobs.push(j); return String(jobs.length); } } });
    const input = new PassThrough();
    const output = new PassThrough();
    let out = '';
    output.on('data', (d) => { out += d; });
    const done = runConsole({
      engine, input, output, user, ...identity,
      waitForReport: async () => ({ title: 'etcd status — drill' }),
    });
    input.end(lines);
    await done;
    return { out, jobs };
  }

  it('shows a drill override in a banner and carries it in the origin of every request', async () => {
    const { out, jobs } = await session('status drill\nquit\n', { identity: 'override', osLogin: 'root' });
    expect(out).toContain('identity console:bob is a drill override of OS user root');
    expect(jobs).toHaveLength(1);
    // The origin is what the workflow writes to the audit log (job.requested) and keeps in the plan.
    expect(jobs[0].origin).toEqual({ adapter: 'console', channel: 'console', user: 'console:bob', identity: 'override' });
  });

  it('marks an OS identity as such, without a banner', async () => {
    const { out, jobs } = await session('status drill\nquit\n', { identity: 'os', osLogin: 'root' }, 'console:root');
    expect(out).not.toContain('drill override');
    expect(jobs[0].origin).toEqual({ adapter: 'console', channel: 'console', user: 'console:root', identity: 'os' });
  });
});
