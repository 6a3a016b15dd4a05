/**
 * The systemd runtime and its environment file. File commands in the transcripts were
 * recorded for real on a throwaway tree; systemctl and journalctl answers are hand-written
 * (the recording machine has no systemd as PID 1), in the format of Debian 12's systemd 252.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { adaptPeerConfig, createRuntime } from '../src/runtime';
import { EnvFileConfig, envName } from '../src/runtime/env-file';
import { parseShow } from '../src/runtime/systemd';
import type { NodeRuntime, RuntimeDeps } from '../src/runtime/types';
import {
  Answer, RECORDING, RecordSetup, Responder, silentSession, StepClock, TranscriptSession, transcriptSession,
} from './support/transcript-session';

const PATHS: RuntimeDeps['paths'] = {
  manifest: '/etc/kubernetes/manifests/etcd.yaml', dataDir: '/var/lib/etcd/default', pki: '/etc/etcd/pki', workDir: '/var/lib/etcd/etcd-medic',
};
const SYSTEMD = { unit: 'etcd.service', envFile: '/etc/default/etcd' };
const NOTE = 'Recorded by test/runtime-systemd.test.ts with MEDIC_RECORD=1. File commands (test, cat, cp, mv) ran for real '
  + '(sh -c) in a throwaway tree standing for the node\'s /etc/default and /var/lib/etcd. systemctl and journalctl '
  + 'answers are HAND-WRITTEN by the test\'s script, not recorded: the recording machine has no systemd as PID 1. '
  + 'They follow Debian 12 (systemd 252, etcd-server 3.4.23): `systemctl show -p` prints Service properties '
  + '(MainPID, Result) before Unit ones; --quiet/--no-block commands print nothing and exit 0.';

/** Debian's /etc/default/etcd: the package's commented defaults, then the admin's settings. */
const ENV = `## etcd(1) daemon options
## See "/usr/share/doc/etcd-server/op-guide/configuration.md.gz"

##### --name
## Human-readable name for this member.
## default: "default"
# ETCD_NAME="default"
ETCD_NAME="node1"
ETCD_DATA_DIR=/var/lib/etcd/default
ETCD_LISTEN_PEER_URLS="https://10.0.0.11:2380"
ETCD_LISTEN_CLIENT_URLS="https://127.0.0.1:2379,https://10.0.0.11:2379"
ETCD_INITIAL_ADVERTISE_PEER_URLS="https://10.0.0.11:2380"
ETCD_INITIAL_CLUSTER="node1=https://10.0.0.11:2380,node2=https://10.0.0.12:2380,node3=https://10.0.0.13:2380"
ETCD_INITIAL_CLUSTER_STATE='new'
ETCD_ADVERTISE_CLIENT_URLS=https://10.0.0.11:2379
# the admin's own note, kept as it is
DAEMON_ARGS=""
`;

interface Unit { active: string; sub: string; pid: number; enabled?: string; load?: string; result?: string }

/** `systemctl show -p LoadState -p ActiveState -p SubState -p UnitFileState -p MainPID -p Result`, as systemd 252 prints it. */
function show(u: Unit): Answer {
  const load = u.load ?? 'loaded';
  return {
    code: 0, stderr: '',
    stdout: `MainPID=${u.pid}\nResult=${u.result ?? 'success'}\nLoadState=${load}\nActiveState=${u.active}\nSubState=${u.sub}\nUnitFileState=${load === 'not-found' ? '' : u.enabled ?? 'enabled'}\n`,
  };
}

const RUNNING: Unit = { active: 'active', sub: 'running', pid: 31337 };
const DEAD: Unit = { active: 'inactive', sub: 'dead', pid: 0, enabled: 'disabled' };

/** systemctl show answers from the list (the last repeats); other systemctl/journalctl commands from `other`. */
function systemdScript(shows: Unit[], other: Record<string, Answer> = {}): Responder {
  let i = 0;
  return (cmd) => {
    if (cmd.startsWith('systemctl show ')) return show(shows[Math.min(i++, shows.length - 1)]);
    const verb = /^(systemctl \S+|journalctl)/.exec(cmd)?.[1];
    if (verb && other[verb]) return other[verb];
    if (/^systemctl (disable|enable|stop|start|reset-failed) /.test(cmd)) return { code: 0, stdout: '', stderr: '' };
    return undefined;
  };
}

function open(name: string, rec: Omit<RecordSetup, 'note'>): { rt: NodeRuntime; s: TranscriptSession } {
  const clock = new StepClock();
  const s = transcriptSession(name, clock, { note: NOTE, ...rec });
  return { rt: createRuntime('systemd', { session: s, node: 'node1', paths: PATHS, systemd: SYSTEMD, now: clock.now }), s };
}

const WITH_DATA = { '/etc/default/etcd': ENV, '/var/lib/etcd/default/member/snap/db': 'bolt' };
const SHOW = "systemctl show -p LoadState -p ActiveState -p SubState -p UnitFileState -p MainPID -p Result -- 'etcd.service'";

describe('systemd runtime: stop and start', () => {
  it('stop disables the unit (stays stopped across a reboot), stops it without blocking and polls; a second stop does nothing', async () => {
    const { rt, s } = open('systemd-stop-twice', {
      files: WITH_DATA,
      answer: systemdScript([RUNNING, RUNNING, { active: 'deactivating', sub: 'stop-sigterm', pid: 31337, enabled: 'disabled' }, DEAD]),
    });
    expect(await rt.state()).toEqual({ config: 'active', running: true, hasData: true });
    const waits: number[] = [];
    expect(await rt.stop({ timeoutMs: 5000, pollMs: 1, onWait: (ms) => waits.push(ms) })).toBe('stopped');
    expect(waits).toEqual([100]);
    expect(await rt.stop({ timeoutMs: 5000, pollMs: 1 })).toBe('already-stopped');
    s.done();
    expect(s.commands).toEqual([
      SHOW,
      "test -f '/etc/default/etcd' && echo env; test -d '/var/lib/etcd/default/member' && echo data; true",
      SHOW,
      "systemctl disable --quiet -- 'etcd.service'",
      "systemctl stop --no-block -- 'etcd.service'",
      SHOW,
      SHOW,
      SHOW,
    ]);
  });

  it('start enables the unit again, starts it without blocking and waits for a main process (not for READY, which needs quorum)', async () => {
    const { rt, s } = open('systemd-start-twice', {
      files: WITH_DATA,
      answer: systemdScript([DEAD, DEAD, { active: 'activating', sub: 'start', pid: 40404 }]),
    });
    expect(await rt.state()).toEqual({ config: 'stopped', running: false, hasData: true });
    expect(await rt.start({ timeoutMs: 5000, pollMs: 1 })).toBe('started');
    expect(await rt.start({ timeoutMs: 5000, pollMs: 1 })).toBe('already-running');
    s.done();
    expect(s.commands.slice(2)).toEqual([
      SHOW,
      "systemctl enable --quiet -- 'etcd.service'",
      "systemctl start --no-block -- 'etcd.service'",
      SHOW,
      SHOW,
    ]);
  });

  it('start after a failure resets it first, and a unit that fails again is reported at once, not after the deadline', async () => {
    const failed: Unit = { active: 'failed', sub: 'failed', pid: 0, enabled: 'enabled', result: 'exit-code' };
    const { rt, s } = open('systemd-start-failed', { answer: systemdScript([failed, { ...DEAD, enabled: 'enabled' }, failed]) });
    await expect(rt.start({ timeoutMs: 60_000, pollMs: 1 }))
      .rejects.toMatchObject({ code: 'REMOTE_FAILED', message: 'node1: etcd.service failed to start (exit-code): see its logs' });
    s.done();
    expect(s.commands).toEqual([SHOW, "systemctl reset-failed -- 'etcd.service'", "systemctl start --no-block -- 'etcd.service'", SHOW, SHOW]);
  });

  it('stop gives up with REMOTE_TIMEOUT while the unit keeps deactivating, reporting every poll', async () => {
    const { rt, s } = open('systemd-stop-timeout', {
      answer: systemdScript([RUNNING, { active: 'deactivating', sub: 'stop-sigterm', pid: 31337, enabled: 'disabled' }]),
    });
    const waits: number[] = [];
    await expect(rt.stop({ timeoutMs: 200, pollMs: 1, onWait: (ms) => waits.push(ms) })).rejects.toMatchObject({ code: 'REMOTE_TIMEOUT' });
    expect(waits).toEqual([100, 200]);
    s.done();
  });

  it('state is absent without env file and unit; start refuses', async () => {
    const { rt, s } = open('systemd-absent', { answer: systemdScript([{ active: 'inactive', sub: 'dead', pid: 0, load: 'not-found' }]) });
    expect(await rt.state()).toEqual({ config: 'absent', running: false, hasData: false });
    expect(await rt.readConfig()).toBeUndefined();
    await expect(rt.start({ timeoutMs: 1000 })).rejects.toMatchObject({ code: 'REMOTE_FAILED', message: expect.stringMatching(/not-found/) });
    s.done();
  });
});

describe('systemd runtime: config, data, logs', () => {
  it('writeConfig backs the env file up first, then replaces it; untouched lines stay byte for byte', async () => {
    const { rt, s } = open('systemd-write-config', { files: WITH_DATA, answer: systemdScript([DEAD]) });
    const cur = await rt.readConfig();
    expect(cur?.place).toBe('stopped');
    cur!.doc.set('--initial-cluster-state', 'existing').set('--force-new-cluster');
    const w = await rt.writeConfig(cur!.doc, 'job-9');
    expect(w).toEqual({ path: '/etc/default/etcd', backup: '/var/lib/etcd/etcd-medic/backup/etcd.20240501T123456Z.job-9' });
    s.done();
    const expected = ENV.replace("ETCD_INITIAL_CLUSTER_STATE='new'", "ETCD_INITIAL_CLUSTER_STATE='existing'") + 'ETCD_FORCE_NEW_CLUSTER=true\n';
    expect(s.commands.slice(-2).map((c) => c.split(' ')[6])).toEqual(["'/var/lib/etcd/etcd-medic/backup'", "'/etc/default'"]);
    if (RECORDING) {
      expect(readFileSync(join(s.root, w.backup!), 'utf8')).toBe(ENV);
      expect(readFileSync(join(s.root, w.path), 'utf8')).toBe(expected);
    }
  });

  it('moveDataAside refuses while the unit is active and moves member/ once stopped', async () => {
    const { rt, s } = open('systemd-move-data', { files: WITH_DATA, answer: systemdScript([RUNNING, DEAD]) });
    await expect(rt.moveDataAside('job-9')).rejects.toMatchObject({ code: 'REMOTE_FAILED', message: expect.stringMatching(/etcd.service is active: stop it/) });
    expect(await rt.moveDataAside('job-9')).toEqual({ movedTo: '/var/lib/etcd/default/member.medic-job-9' });
    s.done();
    if (RECORDING) expect(existsSync(join(s.root, '/var/lib/etcd/default/member.medic-job-9/snap/db'))).toBe(true);
  });

  it('logs are the unit\'s journal, messages only', async () => {
    const journal = [
      'etcd Version: 3.4.23',
      'raft2024/05/01 12:34:51 INFO: 8e9e05c52164694d became follower at term 3',
      'published {Name:node1 ClientURLs:[https://10.0.0.11:2379]} to cluster cdf818194e3a8c32',
      'ready to serve client requests',
    ];
    const { rt, s } = open('systemd-logs', { answer: systemdScript([], { journalctl: { code: 0, stdout: `${journal.join('\n')}\n`, stderr: '' } }) });
    expect(await rt.logs(4)).toEqual({ source: 'journalctl -u etcd.service', lines: journal });
    s.done();
    expect(s.commands).toEqual(["journalctl --quiet -u 'etcd.service' -n '4' --no-pager -o cat"]);
  });

  it('a hostile value is written so that both systemd and a sourcing shell read it back verbatim', async () => {
    const hostile = "x\" $(touch pwned) `touch pwned` 'q'; touch pwned \\";
    const { rt, s } = open('systemd-hostile', { files: WITH_DATA });
    const doc = rt.parseConfig(ENV, 'test').set('--initial-cluster-token', hostile);
    await rt.writeConfig(doc, 'job-1');
    s.done();
    expect(s.commands.join('\n')).not.toContain('pwned');
    expect(EnvFileConfig.parse(doc.toString()).flag('--initial-cluster-token')).toBe(hostile);
    if (RECORDING) {
      // Debian's SysV script sources the file with sh.
      const read = execFileSync('sh', ['-c', '. ./etc/default/etcd && printf %s "$ETCD_INITIAL_CLUSTER_TOKEN"'], { cwd: s.root, encoding: 'utf8' });
      expect(read).toBe(hostile);
      expect(existsSync(join(s.root, 'pwned'))).toBe(false);
    }
  });

  it('refuses a hostile tag before running anything', async () => {
    const clock = new StepClock();
    const s = silentSession(clock);
    const rt = createRuntime('systemd', { session: s, node: 'node1', paths: PATHS, systemd: SYSTEMD, now: clock.now });
    await expect(rt.writeConfig(EnvFileConfig.parse(ENV), '$(reboot)')).rejects.toMatchObject({ code: 'BAD_INPUT' });
    s.done();
  });
});

describe('EnvFileConfig', () => {
  it('maps flags to ETCD_* variables, bare flags to =true', () => {
    expect(envName('--initial-cluster-state')).toBe('ETCD_INITIAL_CLUSTER_STATE');
    const c = EnvFileConfig.parse(ENV);
    expect(c.flag('--name')).toBe('node1');
    expect(c.flag('--initial-cluster-state')).toBe('new');
    expect(c.flag('--advertise-client-urls')).toBe('https://10.0.0.11:2379');
    expect(c.flag('--force-new-cluster')).toBeUndefined();
    expect(c.set('--force-new-cluster').flag('--force-new-cluster')).toBe('true');
    expect(c.remove('--force-new-cluster').toString()).toBe(ENV);
  });

  it('round-trips byte for byte and changes only the lines it sets, keeping their quoting', () => {
    expect(EnvFileConfig.parse(ENV).toString()).toBe(ENV);
    const out = EnvFileConfig.parse(ENV).set('--name', 'node4').set('--initial-cluster-state', 'existing').set('--data-dir', '/srv/etcd data').toString();
    const before = ENV.split('\n');
    expect(out.split('\n').filter((l, i) => l !== before[i])).toEqual([
      'ETCD_NAME="node4"', 'ETCD_DATA_DIR="/srv/etcd data"', "ETCD_INITIAL_CLUSTER_STATE='existing'",
    ]);
  });

  it('keeps CRLF, indentation and export, and appends to a file without a final newline', () => {
    expect(EnvFileConfig.parse('  export ETCD_NAME=a\r\n').set('--name', 'b').toString()).toBe('  export ETCD_NAME=b\r\n');
    expect(EnvFileConfig.parse('# only a comment').set('--name', 'b').toString()).toBe('# only a comment\nETCD_NAME=b\n');
    expect(EnvFileConfig.parse('').set('--name', 'b').toString()).toBe('ETCD_NAME=b\n');
  });

  it('refuses what it cannot edit safely', () => {
    expect(() => EnvFileConfig.parse('ETCD_NAME=a\nETCD_NAME=b\n').flag('--name')).toThrow(/set 2 times/);
    expect(() => EnvFileConfig.parse('ETCD_NAME="a\nb"\n')).toThrow(/line 1: a quoted value that does not end/);
    expect(() => EnvFileConfig.parse('ETCD_NAME=$HOSTNAME\n')).toThrow(/unquoted value/);
    expect(() => EnvFileConfig.parse('ETCD_NAME="a\\"\n')).toThrow(/does not end/);
    expect(() => EnvFileConfig.parse('').set('--name', 'a\nETCD_FORCE_NEW_CLUSTER=true')).toThrow(/line break/);
    expect(() => EnvFileConfig.parse('').set('--name;x', 'a')).toThrow(/not an etcd flag name/);
  });

  it('adaptPeerConfig works on it too, and never touches --initial-cluster', () => {
    const c = EnvFileConfig.parse(ENV);
    adaptPeerConfig(c, { name: 'node1', clientUrl: 'https://10.0.0.11:2379', peerUrl: 'https://10.0.0.11:2380' },
      { name: 'node4', clientUrl: 'https://10.0.0.14:2379', peerUrl: 'https://10.0.0.14:2380' });
    expect(c.flag('--name')).toBe('node4');
    expect(c.flag('--listen-client-urls')).toBe('https://127.0.0.1:2379,https://10.0.0.14:2379');
    expect(c.flag('--advertise-client-urls')).toBe('https://10.0.0.14:2379');
    expect(c.flag('--initial-cluster')).toBe('node1=https://10.0.0.11:2380,node2=https://10.0.0.12:2380,node3=https://10.0.0.13:2380');
  });

  it('parseShow reads systemctl show whatever the order', () => {
    expect(parseShow('ActiveState=active\nMainPID=12\nLoadState=loaded\nUnitFileState=enabled\n'))
      .toMatchObject({ active: 'active', mainPid: 12, load: 'loaded', unitFile: 'enabled', sub: '' });
  });
});
