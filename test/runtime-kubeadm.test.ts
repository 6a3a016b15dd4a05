/**
 * The kubeadm static-pod runtime, driven by transcripts recorded for real on a throwaway
 * tree (see test/support/transcript-session.ts); `pgrep -x etcd` is answered from a script
 * because this machine may run a lab's real etcd processes.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { adaptPeerConfig, createRuntime, retargetUrlList } from '../src/runtime';
import { etcdProcessCheck, stripCri } from '../src/runtime/kubeadm';
import { EtcdManifest } from '../src/runtime/manifest';
import { sh } from '../src/exec/shell';
import { moveFile } from '../src/runtime/remote';
import type { NodeRuntime, RuntimeDeps } from '../src/runtime/types';
import {
  pgrepScript, RECORDING, RecordSetup, silentSession, StepClock, TranscriptSession, transcriptSession,
} from './support/transcript-session';

const MANIFEST = readFileSync(join(__dirname, 'fixtures', 'kubeadm-etcd.yaml'), 'utf8');
const PATHS: RuntimeDeps['paths'] = {
  manifest: '/etc/kubernetes/manifests/etcd.yaml', dataDir: '/var/lib/etcd', pki: '/etc/kubernetes/pki/etcd', workDir: '/etc/kubernetes/etcd-medic',
};
const NOTE = 'Recorded by test/runtime-kubeadm.test.ts with MEDIC_RECORD=1: file commands ran for real (sh -c) in a '
  + 'throwaway tree standing for the node\'s /etc/kubernetes, /var/lib/etcd and /var/log/pods; `pgrep -x etcd` answered '
  + 'from the test\'s script (code 0 + a pid: running, code 1: none), because the recording machine may run real etcd.';
const MEMBER_FILE = '/var/lib/etcd/member/snap/db';
const ACTIVE = { [PATHS.manifest]: MANIFEST, [MEMBER_FILE]: 'bolt' };
const STOPPED = { '/etc/kubernetes/etcd-medic/stopped/etcd.yaml': MANIFEST, [MEMBER_FILE]: 'bolt' };
const PGREP = etcdProcessCheck(PATHS.dataDir).text;

function open(name: string, rec: Omit<RecordSetup, 'note'>, paths = PATHS): { rt: NodeRuntime; s: TranscriptSession } {
  const clock = new StepClock();
  const s = transcriptSession(name, clock, { note: NOTE, ...rec });
  return { rt: createRuntime('kubeadm-static-pod', { session: s, node: 'node1', paths, systemd: { unit: 'etcd.service', envFile: '/etc/default/etcd' }, now: clock.now }), s };
}

/** In the recording tree: what the node's file system looks like afterwards. */
const onNode = (s: TranscriptSession, path: string) => join(s.root, path);

describe('kubeadm runtime: stop and start', () => {
  it('stop moves the manifest out of kubelet\'s directory and waits for etcd to exit; a second stop does nothing', async () => {
    const { rt, s } = open('kubeadm-stop-twice', { files: ACTIVE, answer: pgrepScript(PGREP, ['running', 'running', 'none', 'none']) });
    expect(await rt.state()).toEqual({ config: 'active', running: true, hasData: true });
    const waits: number[] = [];
    expect(await rt.stop({ timeoutMs: 5000, pollMs: 1, onWait: (ms) => waits.push(ms) })).toBe('stopped');
    expect(waits).toEqual([100]);
    expect(await rt.stop({ timeoutMs: 5000, pollMs: 1 })).toBe('already-stopped');
    s.done();
    expect(s.commands).toEqual([
      "test -f '/etc/kubernetes/manifests/etcd.yaml' && echo active; test -f '/etc/kubernetes/etcd-medic/stopped/etcd.yaml' && echo stopped; test -d '/var/lib/etcd/member' && echo data; true",
      PGREP,
      "test -f '/etc/kubernetes/manifests/etcd.yaml' && echo active; test -f '/etc/kubernetes/etcd-medic/stopped/etcd.yaml' && echo stopped; test -d '/var/lib/etcd/member' && echo data; true",
      "umask 077 && mkdir -p -- '/etc/kubernetes/etcd-medic/stopped' && if [ \"$(stat -c %d -- '/etc/kubernetes/manifests')\" = \"$(stat -c %d -- '/etc/kubernetes/etcd-medic/stopped')\" ]; then mv -f -- '/etc/kubernetes/manifests/etcd.yaml' '/etc/kubernetes/etcd-medic/stopped/etcd.yaml'; else cp -p -- '/etc/kubernetes/manifests/etcd.yaml' '/etc/kubernetes/etcd-medic/stopped/.etcd.yaml.medic-tmp' && sync -- '/etc/kubernetes/etcd-medic/stopped/.etcd.yaml.medic-tmp' && mv -f -- '/etc/kubernetes/etcd-medic/stopped/.etcd.yaml.medic-tmp' '/etc/kubernetes/etcd-medic/stopped/etcd.yaml' && rm -f -- '/etc/kubernetes/manifests/etcd.yaml'; fi",
      PGREP,
      PGREP,
      "test -f '/etc/kubernetes/manifests/etcd.yaml' && echo active; test -f '/etc/kubernetes/etcd-medic/stopped/etcd.yaml' && echo stopped; test -d '/var/lib/etcd/member' && echo data; true",
      PGREP,
    ]);
    if (RECORDING) {
      expect(existsSync(onNode(s, PATHS.manifest))).toBe(false);
      expect(readFileSync(onNode(s, '/etc/kubernetes/etcd-medic/stopped/etcd.yaml'), 'utf8')).toBe(MANIFEST);
    }
  });

  it('start moves the manifest back and waits for a process; a second start does nothing', async () => {
    const { rt, s } = open('kubeadm-start-twice', { files: STOPPED, answer: pgrepScript(PGREP, ['none', 'none', 'running', 'running']) });
    expect(await rt.state()).toEqual({ config: 'stopped', running: false, hasData: true });
    const waits: number[] = [];
    expect(await rt.start({ timeoutMs: 5000, pollMs: 1, onWait: (ms) => waits.push(ms) })).toBe('started');
    expect(waits).toEqual([100]);
    expect(await rt.start({ timeoutMs: 5000, pollMs: 1 })).toBe('already-running');
    s.done();
    expect(s.commands[3]).toContain("mv -f -- '/etc/kubernetes/etcd-medic/stopped/etcd.yaml' '/etc/kubernetes/manifests/etcd.yaml'");
    // The temp name is dot-prefixed: kubelet ignores such files in its manifests directory.
    expect(s.commands[3]).toContain("'/etc/kubernetes/manifests/.etcd.yaml.medic-tmp'");
    if (RECORDING) expect(readFileSync(onNode(s, PATHS.manifest), 'utf8')).toBe(MANIFEST);
  });

  it('stop gives up with REMOTE_TIMEOUT when etcd does not exit, reporting every poll; the manifest stays out', async () => {
    const { rt, s } = open('kubeadm-stop-timeout', { files: ACTIVE, answer: pgrepScript(PGREP, ['running']) });
    const waits: number[] = [];
    await expect(rt.stop({ timeoutMs: 300, pollMs: 1, onWait: (ms) => waits.push(ms) }))
      .rejects.toMatchObject({ code: 'REMOTE_TIMEOUT', message: expect.stringMatching(/etcd to exit .*is kubelet running/) });
    expect(waits).toEqual([100, 200, 300]);
    s.done();
    if (RECORDING) expect(existsSync(onNode(s, '/etc/kubernetes/etcd-medic/stopped/etcd.yaml'))).toBe(true);
  });

  it('start gives up with REMOTE_TIMEOUT when no etcd process appears', async () => {
    const { rt, s } = open('kubeadm-start-timeout', { files: STOPPED, answer: pgrepScript(PGREP, ['none']) });
    const waits: number[] = [];
    await expect(rt.start({ timeoutMs: 250, pollMs: 1, onWait: (ms) => waits.push(ms) })).rejects.toMatchObject({ code: 'REMOTE_TIMEOUT' });
    expect(waits).toEqual([100, 200, 300]);
    s.done();
  });

  it('stop keeps a stale copy found in the stopped place (backup) before moving the active manifest over it', async () => {
    const stale = MANIFEST.replace('--name=node1', '--name=old');
    const { rt, s } = open('kubeadm-stop-both', { files: { ...ACTIVE, '/etc/kubernetes/etcd-medic/stopped/etcd.yaml': stale }, answer: pgrepScript(PGREP, ['none']) });
    expect(await rt.stop({ timeoutMs: 1000, pollMs: 1 })).toBe('stopped');
    s.done();
    expect(s.commands[1]).toContain("'/etc/kubernetes/etcd-medic/backup/etcd.yaml.20240501T123456Z.replaced-by-stop'");
    expect(s.commands[2]).toContain("mv -f -- '/etc/kubernetes/manifests/etcd.yaml' '/etc/kubernetes/etcd-medic/stopped/etcd.yaml'");
    if (RECORDING) {
      expect(readFileSync(onNode(s, '/etc/kubernetes/etcd-medic/backup/etcd.yaml.20240501T123456Z.replaced-by-stop'), 'utf8')).toBe(stale);
      expect(readFileSync(onNode(s, '/etc/kubernetes/etcd-medic/stopped/etcd.yaml'), 'utf8')).toBe(MANIFEST);
    }
  });

  it('start refuses when there is no manifest anywhere', async () => {
    const { rt, s } = open('kubeadm-start-absent', { files: {}, answer: pgrepScript(PGREP, ['none']) });
    await expect(rt.start({ timeoutMs: 1000 })).rejects.toMatchObject({ code: 'REMOTE_FAILED', message: expect.stringMatching(/no etcd manifest .*write one first/) });
    expect(await rt.readConfig()).toBeUndefined();
    expect(await rt.state()).toEqual({ config: 'absent', running: false, hasData: false });
    s.done();
  });
});

describe('kubeadm runtime: config', () => {
  it('writeConfig copies the current manifest to workDir/backup first, then replaces it atomically', async () => {
    const { rt, s } = open('kubeadm-write-config', { files: ACTIVE });
    const cur = await rt.readConfig();
    expect(cur?.place).toBe('active');
    cur!.doc.set('--initial-cluster-state', 'existing');
    const w = await rt.writeConfig(cur!.doc, 'job-42');
    expect(w).toEqual({ path: PATHS.manifest, backup: '/etc/kubernetes/etcd-medic/backup/etcd.yaml.20240501T123456Z.job-42' });
    s.done();
    const backupAt = s.commands.findIndex((c) => c.includes("cp -p -- '/etc/kubernetes/manifests/etcd.yaml'"));
    const writeAt = s.commands.findIndex((c) => c.startsWith('umask 077 && mkdir -p -- \'/etc/kubernetes/manifests\' && cat >'));
    expect(backupAt).toBeGreaterThan(-1);
    expect(writeAt).toBe(backupAt + 1);
    expect(s.commands[writeAt]).toBe("umask 077 && mkdir -p -- '/etc/kubernetes/manifests' && cat > '/etc/kubernetes/manifests/.etcd.yaml.medic-tmp' && sync -- '/etc/kubernetes/manifests/.etcd.yaml.medic-tmp' && mv -f -- '/etc/kubernetes/manifests/.etcd.yaml.medic-tmp' '/etc/kubernetes/manifests/etcd.yaml'");
    if (RECORDING) {
      expect(readFileSync(onNode(s, w.backup!), 'utf8')).toBe(MANIFEST);
      expect(readFileSync(onNode(s, PATHS.manifest), 'utf8')).toBe(MANIFEST.replace('--initial-cluster-state=new', '--initial-cluster-state=existing'));
      expect(statSync(onNode(s, PATHS.manifest)).mode & 0o777).toBe(0o600);
    }
  });

  it('writeConfig on a node without any manifest writes to the stopped place (start activates it), without a backup', async () => {
    const { rt, s } = open('kubeadm-write-config-absent', { files: {} });
    const w = await rt.writeConfig(rt.parseConfig(MANIFEST, 'peer'), 'job-42');
    expect(w).toEqual({ path: '/etc/kubernetes/etcd-medic/stopped/etcd.yaml', backup: undefined });
    s.done();
    expect(s.commands.some((c) => c.includes('backup'))).toBe(false);
    if (RECORDING) expect(readFileSync(onNode(s, w.path), 'utf8')).toBe(MANIFEST);
  });

  it('refuses to write what is not an etcd Pod manifest', async () => {
    const clock = new StepClock();
    const rt = createRuntime('kubeadm-static-pod', { session: silentSession(clock), node: 'node1', paths: PATHS, systemd: { unit: 'etcd.service', envFile: '/etc/default/etcd' }, now: clock.now });
    const envDoc = { flag: () => undefined, set() { return this; }, remove() { return this; }, toString: () => 'ETCD_NAME=node1\n' };
    await expect(rt.writeConfig(envDoc, 'job-1')).rejects.toMatchObject({ code: 'REMOTE_FAILED', message: expect.stringMatching(/not a Pod manifest/) });
  });
});

describe('kubeadm runtime: nothing typed or stored becomes shell syntax', () => {
  const HOSTILE = "medic $(touch pwned) `touch pwned` 'q'; touch pwned";

  it.each(["x'; touch pwned #", '$(touch pwned)', '../../etc', 'a b', '', 'x'.repeat(65)])('refuses tag %j before running anything', async (tag) => {
    const clock = new StepClock();
    const s = silentSession(clock);
    const rt = createRuntime('kubeadm-static-pod', { session: s, node: 'node1', paths: PATHS, systemd: { unit: 'etcd.service', envFile: '/etc/default/etcd' }, now: clock.now });
    await expect(rt.writeConfig(EtcdManifest.parse(MANIFEST), tag)).rejects.toMatchObject({ code: 'BAD_INPUT' });
    await expect(rt.moveDataAside(tag)).rejects.toMatchObject({ code: 'BAD_INPUT' });
    expect(s.commands).toEqual([]);
    s.done();
  });

  it('a hostile work directory and flag value stay data: quoted in commands, passed on stdin', async () => {
    const paths = { ...PATHS, workDir: `/etc/kubernetes/${HOSTILE}` };
    const { rt, s } = open('kubeadm-hostile', { files: ACTIVE, answer: pgrepScript(PGREP, ['none']) }, paths);
    expect(await rt.stop({ timeoutMs: 1000, pollMs: 1 })).toBe('stopped');
    const cur = await rt.readConfig();
    cur!.doc.set('--initial-cluster-token', HOSTILE);
    const w = await rt.writeConfig(cur!.doc, 'job-1');
    expect(w.path).toBe(`/etc/kubernetes/${HOSTILE}/stopped/etcd.yaml`);
    s.done();
    const quoted = "'/etc/kubernetes/medic $(touch pwned) `touch pwned` '\\''q'\\''; touch pwned/stopped/etcd.yaml'";
    expect(s.commands.filter((c) => c.includes(quoted)).length).toBeGreaterThanOrEqual(3);
    expect(s.commands.some((c) => c.includes('cluster-token'))).toBe(false);
    if (RECORDING) {
      expect(existsSync(join(s.root, 'pwned'))).toBe(false);
      expect(EtcdManifest.parse(readFileSync(onNode(s, w.path), 'utf8')).flag('--initial-cluster-token')).toBe(HOSTILE);
    }
  });
});

describe('kubeadm runtime: data and logs', () => {
  it('moveDataAside refuses while etcd runs, then moves member/ once and answers the same on a retry', async () => {
    const { rt, s } = open('kubeadm-move-data', { files: STOPPED, answer: pgrepScript(PGREP, ['running', 'none', 'none']) });
    await expect(rt.moveDataAside('job-7')).rejects.toMatchObject({ code: 'REMOTE_FAILED', message: expect.stringMatching(/stop it before/) });
    expect(await rt.moveDataAside('job-7')).toEqual({ movedTo: '/var/lib/etcd/member.medic-job-7' });
    expect(await rt.moveDataAside('job-7')).toEqual({ movedTo: '/var/lib/etcd/member.medic-job-7' });
    s.done();
    expect(s.commands.filter((c) => c.includes('mv -T'))).toHaveLength(2);
    if (RECORDING) {
      expect(existsSync(onNode(s, '/var/lib/etcd/member'))).toBe(false);
      expect(readFileSync(onNode(s, '/var/lib/etcd/member.medic-job-7/snap/db'), 'utf8')).toBe('bolt');
    }
  });

  it('moveDataAside refuses while the manifest is active, even with no process (kubelet restarts it)', async () => {
    const { rt, s } = open('kubeadm-move-data-active', { files: ACTIVE });
    await expect(rt.moveDataAside('job-7')).rejects.toMatchObject({ code: 'REMOTE_FAILED' });
    s.done();
    expect(s.commands).toHaveLength(1);
  });

  it('logs reads the newest pod log and strips the CRI prefix, joining partial lines', async () => {
    const old = '2024-05-01T12:00:00.000000001Z stderr F old pod line\n';
    const cur = [
      '2024-05-01T12:34:50.100000000Z stderr F {"level":"info","msg":"starting an etcd server"}',
      '2024-05-01T12:34:50.200000000Z stderr P {"level":"warn","msg":"a very',
      '2024-05-01T12:34:50.200000001Z stderr F  long line"}',
      '2024-05-01T12:34:51.000000000Z stderr F {"level":"info","msg":"ready to serve client requests"}',
      '',
    ].join('\n');
    const { rt, s } = open('kubeadm-logs', {
      files: {
        '/var/log/pods/kube-system_etcd-node1_0a1b/etcd/0.log': { content: old, mtimeMs: Date.parse('2024-05-01T12:00:00Z') },
        '/var/log/pods/kube-system_etcd-node1_9f8e/etcd/0.log': { content: cur, mtimeMs: Date.parse('2024-05-01T12:34:51Z') },
      },
    });
    expect(await rt.logs(3)).toEqual({
      source: '/var/log/pods/kube-system_etcd-node1_9f8e/etcd/0.log',
      lines: ['{"level":"warn","msg":"a very long line"}', '{"level":"info","msg":"ready to serve client requests"}'],
    });
    s.done();
    await expect(rt.logs(0)).rejects.toMatchObject({ code: 'BAD_INPUT' });
  });

  it('stripCri keeps unknown lines and the newest unfinished partial line', () => {
    expect(stripCri(['plain', '2024-05-01T00:00:00Z stdout P a', '2024-05-01T00:00:00Z stderr F b', '2024-05-01T00:00:01Z stdout P c']))
      .toEqual(['plain', 'b', 'ac']);
  });
});

describe('moveFile across file systems', () => {
  const devs = existsSync('/dev/shm') ? [statSync('/tmp').dev, statSync('/dev/shm').dev] : [0, 0];
  (devs[0] !== devs[1] ? it : it.skip)('copies, syncs, renames into place, then removes the source', () => {
    const a = mkdtempSync('/tmp/medic-mv-');
    const b = mkdtempSync('/dev/shm/medic-mv-');
    writeFileSync(join(a, 'etcd.yaml'), MANIFEST, { mode: 0o600 });
    execFileSync('sh', ['-c', moveFile(join(a, 'etcd.yaml'), join(b, 'stopped', 'etcd.yaml')).text]);
    expect(existsSync(join(a, 'etcd.yaml'))).toBe(false);
    expect(readFileSync(join(b, 'stopped', 'etcd.yaml'), 'utf8')).toBe(MANIFEST);
    expect(existsSync(join(b, 'stopped', '.etcd.yaml.medic-tmp'))).toBe(false);
    execFileSync('rm', ['-rf', '--', a, b]);
  });
});

describe('adaptPeerConfig', () => {
  // As kubeadm writes it: local listeners on 127.0.0.1 beside the node's address.
  const peerText = MANIFEST
    .replace('--listen-client-urls=https://127.10.0.11:2379', '--listen-client-urls=https://127.0.0.1:2379,https://127.10.0.11:2379')
    .replace('  name: etcd\n  namespace', '  name: etcd-node1\n  namespace');
  const peer = { name: 'node1', clientUrl: 'https://127.10.0.11:2379', peerUrl: 'https://127.10.0.11:2380' };
  const target = { name: 'node4', clientUrl: 'https://127.10.0.14:2379', peerUrl: 'https://127.10.0.14:2380' };

  it('changes the name and the host part of the node\'s URLs, and nothing else', () => {
    const doc = EtcdManifest.parse(peerText);
    adaptPeerConfig(doc, peer, target);
    const before = peerText.split('\n');
    const after = doc.toString().split('\n');
    expect(after).toHaveLength(before.length);
    expect(after.filter((l, i) => l !== before[i])).toEqual([
      '    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://127.10.0.14:2379',
      '  name: etcd-node4',
      '    - --advertise-client-urls=https://127.10.0.14:2379',
      '    - --initial-advertise-peer-urls=https://127.10.0.14:2380',
      '    - --listen-client-urls=https://127.0.0.1:2379,https://127.10.0.14:2379',
      '    - --listen-metrics-urls=http://127.10.0.14:2381',
      '    - --listen-peer-urls=https://127.10.0.14:2380',
      '    - --name=node4',
      '        host: 127.10.0.14',
    ]);
    // The IP of node1 inside --initial-cluster is the caller's to set, never rewritten here.
    expect(doc.flag('--initial-cluster')).toBe('node1=https://127.10.0.11:2380,node2=https://127.10.0.12:2380,node3=https://127.10.0.13:2380');
  });

  it('refuses a config that is not the peer\'s, or whose advertised URLs are not on the peer\'s inventory host', () => {
    expect(() => adaptPeerConfig(EtcdManifest.parse(peerText), { ...peer, name: 'node2' }, target)).toThrow(/--name=node1, not node2/);
    const dns = EtcdManifest.parse(peerText).set('--initial-advertise-peer-urls', 'https://cp1.example:2380');
    expect(() => adaptPeerConfig(dns, peer, target)).toThrow(/no URL on node1's host/);
    expect(() => adaptPeerConfig(EtcdManifest.parse(peerText), { ...peer, clientUrl: 'https://127.0.0.1:2379' }, target)).toThrow(/loopback/);
  });

  it('retargetUrlList keeps scheme, port, path and other hosts as written', () => {
    expect(retargetUrlList('https://10.0.0.1:2379,http://10.0.0.10:2381/x,https://[fd00::1]:2379', '10.0.0.1', '10.0.0.4'))
      .toBe('https://10.0.0.4:2379,http://10.0.0.10:2381/x,https://[fd00::1]:2379');
    expect(retargetUrlList('https://[fd00::1]:2379', '[fd00::1]', '[fd00::4]')).toBe('https://[fd00::4]:2379');
  });
});

describe('the transcript replay itself', () => {
  it('fails on a command that is not the next recorded one, and on recorded commands never sent', async () => {
    const s = new TranscriptSession('self-test', new StepClock(), [
      { command: "pgrep -x etcd", code: 1, stdout: '', stderr: '' },
      { command: "test -d '/var/lib/etcd/member'", code: 0, stdout: '', stderr: '' },
    ]);
    await expect(s.exec(sh`pgrep -x ${'etcd; reboot'}`)).rejects.toThrow(/does not match the transcript/);
    expect(() => s.done()).toThrow(/does not match[\s\S]*1 recorded command\(s\) never sent/);
  });
});
