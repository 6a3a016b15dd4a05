/**
 * How etcd runs on a node, behind one interface: kubeadm's static pod (manifest under
 * /etc/kubernetes/manifests, kubelet runs it) or a systemd unit with an environment file.
 * The engine's steps call these; each method checks before it acts, so a step repeated
 * after a crash does nothing twice.
 */
import type { SshSession } from '../exec/ssh';

/**
 * etcd's configuration as flags, whatever the file: the Pod's `command` list
 * (--name=value) or an environment file (ETCD_NAME=value). Names are always given
 * as flags ("--initial-cluster"); an env-file implementation maps them.
 */
export interface EtcdConfigDoc {
  /** The value of --name=value; 'true' for a bare --flag; undefined when absent. */
  flag(name: string): string | undefined;
  /** Sets --name=value (bare --name when value is undefined), in place or appended. */
  set(name: string, value?: string): this;
  /** Removes every occurrence of the flag. */
  remove(name: string): this;
  toString(): string;
}

/** Where the node's etcd configuration is now. */
export type ConfigPlace =
  /** Active: kubelet / systemd runs it (static pod manifest in the manifests directory; unit enabled). */
  | 'active'
  /** Set aside by the bot's stop (manifest moved to workDir; unit stopped). */
  | 'stopped'
  /** No configuration on the node at all (a new node). */
  | 'absent';

export interface RuntimeState {
  config: ConfigPlace;
  /** An etcd process runs on the node. */
  running: boolean;
  /** dataDir/member exists. */
  hasData: boolean;
}

export interface WaitOptions {
  /** Deadline of the wait; REMOTE_TIMEOUT after it. */
  timeoutMs: number;
  /** Poll interval. @defaultValue 500 */
  pollMs?: number;
  /** Called on every poll that has not yet succeeded (progress in the thread). */
  onWait?: (elapsedMs: number) => void;
}

export interface NodeRuntime {
  readonly kind: 'kubeadm-static-pod' | 'systemd';
  state(): Promise<RuntimeState>;
  /**
   * Stops etcd and keeps it stopped across reboots: kubeadm moves the manifest to
   * workDir/stopped/ (outside the manifests directory, or kubelet would run it) and waits
   * until no etcd process is left; systemd: `systemctl stop` + wait for inactive.
   * 'already-stopped' when nothing ran and the config was not active.
   */
  stop(o: WaitOptions): Promise<'stopped' | 'already-stopped'>;
  /**
   * Puts the config back in place (kubeadm: manifest back into the manifests directory;
   * systemd: `systemctl start`) and waits until an etcd process runs. Health is the
   * caller's business (through the etcd API). 'already-running' when it was active and running.
   */
  start(o: WaitOptions): Promise<'started' | 'already-running'>;
  /** The config wherever it is now (active or stopped); undefined when absent. */
  readConfig(): Promise<{ doc: EtcdConfigDoc; place: Exclude<ConfigPlace, 'absent'> } | undefined>;
  /** Parses config text of this runtime's format (e.g. a healthy peer's manifest). */
  parseConfig(text: string, source: string): EtcdConfigDoc;
  /**
   * Writes the config where it currently lives (or, when absent, in the stopped place so
   * that `start` activates it). Atomic (temp file + mv in the same directory); the previous
   * file is first copied to workDir/backup/<name>.<UTC stamp>.<tag>. Returns that backup path.
   */
  writeConfig(doc: EtcdConfigDoc, tag: string): Promise<{ backup?: string; path: string }>;
  /**
   * Moves dataDir/member aside to dataDir/member.medic-<tag> (never deletes; dataDir itself
   * may be a mount point). Refuses (REMOTE_FAILED) while etcd runs. Undefined when there was no data.
   */
  moveDataAside(tag: string): Promise<{ movedTo?: string }>;
  /** The last `lines` lines of etcd's log, oldest first, as text lines without CRI/journal prefixes. */
  logs(lines: number): Promise<{ source: string; lines: string[] }>;
}

/** What a runtime needs: the node's session and the cluster's paths. */
export interface RuntimeDeps {
  session: SshSession;
  node: string;
  paths: { manifest: string; dataDir: string; pki: string; workDir: string };
  systemd: { unit: string; envFile: string };
  /** @defaultValue () => new Date() */
  now?: () => Date;
}
