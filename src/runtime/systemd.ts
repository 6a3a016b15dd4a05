/**
 * etcd as a systemd unit configured by an environment file of ETCD_* variables (Debian's
 * etcd-server: etcd.service with EnvironmentFile=-/etc/default/etcd).
 *
 * stop also disables the unit, and start enables it again: the kubeadm runtime's stop
 * survives a reboot (the manifest stays out of kubelet's directory), and a member being
 * replaced must not come back with its old data because the node rebooted mid-repair.
 * `--no-block` everywhere: `systemctl start` of a Type=notify etcd blocks until etcd
 * reports ready, which needs quorum; we poll instead, under the caller's deadline, and
 * report progress.
 */
import { posix } from 'node:path';
import { MedicError } from '../engine/errors';
import { sh } from '../exec/shell';
import { EnvFileConfig } from './env-file';
import {
  backupFile, backupPath, checkLines, checkTag, moveDataAside, Remote, waitFor, writeFile,
} from './remote';
import type { ConfigPlace, EtcdConfigDoc, NodeRuntime, RuntimeDeps, RuntimeState, WaitOptions } from './types';

/** What `systemctl show` tells about the unit. */
export interface UnitState {
  /** loaded | not-found | masked | ... */
  load: string;
  /** active | activating | deactivating | reloading | inactive | failed */
  active: string;
  sub: string;
  /** enabled | disabled | static | masked | ... ('' for an unknown unit) */
  unitFile: string;
  /** 0 when no main process runs. */
  mainPid: number;
  /** Why the last run ended: success | exit-code | signal | timeout | ... */
  result: string;
}

const RUNNING_STATES = new Set(['active', 'activating', 'reloading']);

export class SystemdRuntime implements NodeRuntime {
  readonly kind = 'systemd' as const;
  private readonly remote: Remote;
  private readonly now: () => Date;
  private readonly unit: string;
  private readonly envFile: string;

  constructor(private readonly deps: RuntimeDeps) {
    this.remote = new Remote(deps.session, deps.node);
    this.now = deps.now ?? (() => new Date());
    this.unit = deps.systemd.unit;
    this.envFile = deps.systemd.envFile;
  }

  async state(): Promise<RuntimeState> {
    const u = await this.show();
    const f = await this.files();
    return { config: this.place(u, f.env), running: u.mainPid !== 0, hasData: f.data };
  }

  async stop(o: WaitOptions): Promise<'stopped' | 'already-stopped'> {
    const u = await this.show();
    if (!isActive(u) && !isEnabled(u) && u.mainPid === 0) return 'already-stopped';
    if (isEnabled(u)) await this.remote.run(sh`systemctl disable --quiet -- ${this.unit}`, `disabling ${this.unit}`);
    await this.remote.run(sh`systemctl stop --no-block -- ${this.unit}`, `stopping ${this.unit}`);
    await waitFor(`${this.deps.node}: ${this.unit} to stop`, o, this.now, async () => {
      const s = await this.show();
      return !isActive(s) && s.mainPid === 0;
    });
    return 'stopped';
  }

  async start(o: WaitOptions): Promise<'started' | 'already-running'> {
    const u = await this.show();
    if (u.load !== 'loaded') {
      throw new MedicError('REMOTE_FAILED', `${this.deps.node}: ${this.unit} is ${u.load}: install or unmask it first`);
    }
    if (u.unitFile === 'disabled') await this.remote.run(sh`systemctl enable --quiet -- ${this.unit}`, `enabling ${this.unit}`);
    if (RUNNING_STATES.has(u.active) && u.mainPid !== 0) return 'already-running';
    // Otherwise the first poll could see the old failure and give up before the new start.
    if (u.active === 'failed') await this.remote.run(sh`systemctl reset-failed -- ${this.unit}`, `resetting ${this.unit}'s failed state`);
    await this.remote.run(sh`systemctl start --no-block -- ${this.unit}`, `starting ${this.unit}`);
    await waitFor(`${this.deps.node}: ${this.unit} to start etcd`, o, this.now, async () => {
      const s = await this.show();
      if (s.active === 'failed') {
        throw new MedicError('REMOTE_FAILED', `${this.deps.node}: ${this.unit} failed to start (${s.result}): see its logs`);
      }
      return s.mainPid !== 0 && RUNNING_STATES.has(s.active);
    });
    return 'started';
  }

  async readConfig(): Promise<{ doc: EtcdConfigDoc; place: 'active' | 'stopped' } | undefined> {
    const f = await this.files();
    if (!f.env) return undefined;
    const u = await this.show();
    const doc = this.parseConfig(await this.remote.readText(this.envFile), `${this.deps.node}:${this.envFile}`);
    return { doc, place: this.place(u, true) === 'active' ? 'active' : 'stopped' };
  }

  parseConfig(text: string, source: string): EnvFileConfig {
    return EnvFileConfig.parse(text, source);
  }

  /** systemd reads the file at the next start: a running etcd keeps its old config until then. */
  async writeConfig(doc: EtcdConfigDoc, tag: string): Promise<{ backup?: string; path: string }> {
    checkTag(tag);
    const text = this.parseConfig(doc.toString(), 'the new environment file').toString();
    const f = await this.files();
    let backup: string | undefined;
    if (f.env) {
      backup = backupPath(this.deps.paths.workDir, this.envFile, this.now(), tag);
      await this.remote.run(backupFile(this.envFile, backup), `backing up ${this.envFile} to ${backup}`);
    }
    await this.remote.run(writeFile(this.envFile), `writing ${this.envFile}`, { stdin: text });
    return { backup, path: this.envFile };
  }

  async moveDataAside(tag: string): Promise<{ movedTo?: string }> {
    checkTag(tag);
    const u = await this.show();
    // An enabled unit with Restart= may be between restarts: it would come back on an empty data dir.
    if (isActive(u) || u.mainPid !== 0) {
      throw new MedicError('REMOTE_FAILED', `${this.deps.node}: ${this.unit} is ${u.active}: stop it before moving its data aside`);
    }
    return moveDataAside(this.remote, this.deps.paths.dataDir, tag);
  }

  async logs(lines: number): Promise<{ source: string; lines: string[] }> {
    checkLines(lines);
    const r = await this.remote.run(sh`journalctl --quiet -u ${this.unit} -n ${lines} --no-pager -o cat`, `reading ${this.unit}'s journal`);
    const out = r.stdout.replace(/\n$/, '');
    return { source: `journalctl -u ${this.unit}`, lines: out === '' ? [] : out.split('\n') };
  }

  private place(u: UnitState, envFile: boolean): ConfigPlace {
    if (isActive(u) || isEnabled(u)) return 'active';
    return u.load === 'not-found' && !envFile ? 'absent' : 'stopped';
  }

  private async show(): Promise<UnitState> {
    const r = await this.remote.run(
      sh`systemctl show -p LoadState -p ActiveState -p SubState -p UnitFileState -p MainPID -p Result -- ${this.unit}`,
      `asking systemd about ${this.unit}`);
    return parseShow(r.stdout);
  }

  private async files(): Promise<{ env: boolean; data: boolean }> {
    const member = posix.join(this.deps.paths.dataDir, 'member');
    const r = await this.remote.run(sh`test -f ${this.envFile} && echo env; test -d ${member} && echo data; true`,
      'looking for the environment file and data');
    const words = new Set(r.stdout.split(/\s+/));
    return { env: words.has('env'), data: words.has('data') };
  }
}

function isActive(u: UnitState): boolean {
  return u.active !== 'inactive' && u.active !== 'failed';
}

/** enabled, enabled-runtime: started at boot. */
function isEnabled(u: UnitState): boolean {
  return u.unitFile.startsWith('enabled');
}

/** `systemctl show -p A -p B` prints A=... lines in systemd's own order. */
export function parseShow(stdout: string): UnitState {
  const kv = new Map(stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  const get = (k: string) => kv.get(k) ?? '';
  return {
    load: get('LoadState'), active: get('ActiveState'), sub: get('SubState'), unitFile: get('UnitFileState'),
    mainPid: Number(get('MainPID')) || 0, result: get('Result'),
  };
}
