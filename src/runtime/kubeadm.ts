/**
 * etcd as kubeadm's static pod: kubelet runs whatever manifest is in its manifests
 * directory, so stopping etcd means moving the manifest out (to workDir/stopped/, where
 * kubelet doesn't look and where it survives a reboot) and starting means moving it back.
 */
import { posix } from 'node:path';
import { MedicError } from '../engine/errors';
import { RemoteCommand, sh } from '../exec/shell';
import { EtcdManifest } from './manifest';
import {
  backupFile, backupPath, checkLines, checkTag, moveDataAside, moveFile, Remote, waitFor, writeFile,
} from './remote';
import type { EtcdConfigDoc, NodeRuntime, RuntimeDeps, RuntimeState, WaitOptions } from './types';

/**
 * Whether this member's etcd runs on the node: a process named etcd whose command line
 * carries the member's --data-dir (as `--data-dir=DIR` or `--data-dir DIR`). Not any process
 * called etcd: a node may run another etcd (an events cluster, a CNI's kvstore), which stop,
 * start and data moves must leave alone. Seen from the host, a container's processes are
 * ordinary processes, so this finds kubelet's etcd container too. Prints the pids; exit 1
 * means none.
 */
export function etcdProcessCheck(dataDir: string): RemoteCommand {
  const dir = dataDir.replace(/\/+$/, '') || '/';
  return sh`found=1; for p in $(pgrep -x etcd); do if tr '\\000' '\\n' 2>/dev/null < /proc/$p/cmdline | awk -v d=${dir} 'prev == "--data-dir" && ($0 == d || $0 == d "/") { f = 1 } $0 == "--data-dir=" d || $0 == "--data-dir=" d "/" { f = 1 } { prev = $0 } END { exit !f }'; then echo "$p"; found=0; fi; done; exit $found`;
}

/** kubelet's CRI log line: <RFC3339Nano time> <stream> <F(ull)|P(artial)> <message>. */
const CRI_LINE = /^\S+ (stdout|stderr) ([FP]) ?(.*)$/;

interface Where {
  active: boolean;
  stopped: boolean;
  data: boolean;
}

export class KubeadmRuntime implements NodeRuntime {
  readonly kind = 'kubeadm-static-pod' as const;
  private readonly remote: Remote;
  private readonly now: () => Date;
  private readonly manifest: string;
  private readonly stoppedAt: string;

  constructor(private readonly deps: RuntimeDeps) {
    this.remote = new Remote(deps.session, deps.node);
    this.now = deps.now ?? (() => new Date());
    this.manifest = deps.paths.manifest;
    this.stoppedAt = posix.join(deps.paths.workDir, 'stopped', posix.basename(deps.paths.manifest));
  }

  async state(): Promise<RuntimeState> {
    const w = await this.where();
    const running = await this.running();
    return { config: w.active ? 'active' : w.stopped ? 'stopped' : 'absent', running, hasData: w.data };
  }

  async stop(o: WaitOptions): Promise<'stopped' | 'already-stopped'> {
    const w = await this.where();
    if (!w.active && !(await this.running())) return 'already-stopped';
    if (w.active) {
      // A stale copy in the stopped place (someone put a manifest back by hand) is about to be replaced: keep it.
      if (w.stopped) await this.backup(this.stoppedAt, 'replaced-by-stop');
      await this.remote.run(moveFile(this.manifest, this.stoppedAt), `moving ${this.manifest} to ${this.stoppedAt}`);
    }
    await waitFor(`${this.deps.node}: etcd to exit after its manifest left ${posix.dirname(this.manifest)} (is kubelet running?)`,
      o, this.now, async () => !(await this.running()));
    return 'stopped';
  }

  async start(o: WaitOptions): Promise<'started' | 'already-running'> {
    const w = await this.where();
    if (w.active) {
      if (await this.running()) return 'already-running';
    } else if (w.stopped) {
      await this.remote.run(moveFile(this.stoppedAt, this.manifest), `moving ${this.stoppedAt} back to ${this.manifest}`);
    } else {
      throw new MedicError('REMOTE_FAILED', `${this.deps.node}: no etcd manifest (neither ${this.manifest} nor ${this.stoppedAt}): write one first`);
    }
    await waitFor(`${this.deps.node}: kubelet to start etcd from ${this.manifest} (is kubelet running? see the etcd logs)`,
      o, this.now, () => this.running());
    return 'started';
  }

  async readConfig(): Promise<{ doc: EtcdConfigDoc; place: 'active' | 'stopped' } | undefined> {
    const w = await this.where();
    if (!w.active && !w.stopped) return undefined;
    const path = w.active ? this.manifest : this.stoppedAt;
    return { doc: this.parseConfig(await this.remote.readText(path), `${this.deps.node}:${path}`), place: w.active ? 'active' : 'stopped' };
  }

  parseConfig(text: string, source: string): EtcdManifest {
    return EtcdManifest.parse(text, source);
  }

  async writeConfig(doc: EtcdConfigDoc, tag: string): Promise<{ backup?: string; path: string }> {
    checkTag(tag);
    // Re-parsed so that nothing but a valid etcd Pod manifest lands where kubelet runs it.
    const text = this.parseConfig(doc.toString(), 'the new etcd manifest').toString();
    const w = await this.where();
    const path = w.active ? this.manifest : this.stoppedAt;
    const backup = w.active || w.stopped ? await this.backup(path, tag) : undefined;
    await this.remote.run(writeFile(path), `writing ${path}`, { stdin: text });
    return { backup, path };
  }

  async moveDataAside(tag: string): Promise<{ movedTo?: string }> {
    checkTag(tag);
    // An active manifest with no process is kubelet between restarts: it would start etcd on an empty data dir.
    const w = await this.where();
    if (w.active || (await this.running())) {
      throw new MedicError('REMOTE_FAILED', `${this.deps.node}: etcd is running or its manifest is active: stop it before moving its data aside`);
    }
    return moveDataAside(this.remote, this.deps.paths.dataDir, tag);
  }

  async logs(lines: number): Promise<{ source: string; lines: string[] }> {
    checkLines(lines);
    const r = await this.remote.run(
      // kubeadm names the static pod etcd-<node name> (the hostname): another etcd pod on the
      // node (etcd-events-…) is not this member's. Any etcd pod only when none is named so.
      sh`f=$(ls -1t -- /var/log/pods/kube-system_etcd-"$(hostname)"_*/etcd/*.log 2>/dev/null | head -n 1); [ -n "$f" ] || f=$(ls -1t -- /var/log/pods/kube-system_etcd-*/etcd/*.log 2>/dev/null | head -n 1); [ -n "$f" ] || { echo 'no etcd container log under /var/log/pods' >&2; exit 1; }; printf '%s\n' "$f" && tail -n ${lines} -- "$f"`,
      'reading the etcd container log');
    const [source, ...rest] = r.stdout.replace(/\n$/, '').split('\n');
    return { source, lines: stripCri(rest).slice(-lines) };
  }

  private async where(): Promise<Where> {
    const member = posix.join(this.deps.paths.dataDir, 'member');
    const r = await this.remote.run(
      sh`test -f ${this.manifest} && echo active; test -f ${this.stoppedAt} && echo stopped; test -d ${member} && echo data; true`,
      'looking for the etcd manifest and data');
    const words = new Set(r.stdout.split(/\s+/));
    return { active: words.has('active'), stopped: words.has('stopped'), data: words.has('data') };
  }

  private async running(): Promise<boolean> {
    const r = await this.remote.run(etcdProcessCheck(this.deps.paths.dataDir), `looking for the etcd process of ${this.deps.paths.dataDir}`, { ok: [0, 1] });
    return r.code === 0;
  }

  private async backup(path: string, tag: string): Promise<string> {
    const to = backupPath(this.deps.paths.workDir, path, this.now(), tag);
    await this.remote.run(backupFile(path, to), `backing up ${path} to ${to}`);
    return to;
  }
}

/** Message lines from CRI log lines; a P(artial) line continues on the stream's next line. */
export function stripCri(raw: string[]): string[] {
  const out: string[] = [];
  const pending = new Map<string, string>();
  for (const line of raw) {
    const m = CRI_LINE.exec(line);
    if (!m) { out.push(line); continue; }
    const [, stream, tag, msg] = m;
    const text = (pending.get(stream) ?? '') + msg;
    if (tag === 'P') pending.set(stream, text);
    else { pending.delete(stream); out.push(text); }
  }
  // The newest partial line, still being written.
  return [...out, ...pending.values()];
}
