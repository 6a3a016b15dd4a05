/**
 * The etcd tooling on the bot's own host: etcdutl (etcd >= 3.5) and etcdctl. Snapshots are
 * read and restores made here (control-plane nodes have neither tool), so which tools
 * exist, and their versions, decide what a restore can do: only etcdutl has
 * `--bump-revision`/`--mark-compacted`, and tooling older than the cluster's minor version
 * writes data the cluster's etcd did not write (restores made with older tooling are a
 * known way for removed members to come back on a later upgrade, etcd issue 20967).
 *
 * Tools run with execFile, never through a shell, each under a deadline, with nothing of
 * the bot's environment but PATH (and ETCDCTL_API=3, which etcdctl 3.4 needs for v3).
 */
import { execFile } from 'node:child_process';

export type EtcdTool = 'etcdutl' | 'etcdctl';

/** One tool found on the host: "etcdutl 3.5.30". */
export interface HostTool { tool: EtcdTool; version: string }

export interface ToolRun { missing: boolean; code?: number | string; killed?: boolean; stdout: string; stderr: string }

const PATH_DEFAULT = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Runs a program without a shell; never rejects. A string `code` is ours (spawn failed), a number the program's exit status. */
export function runTool(file: string, args: string[], timeoutMs: number): Promise<ToolRun> {
  return new Promise((done) => {
    execFile(file, args, {
      timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1 << 20, windowsHide: true,
      env: { PATH: process.env.PATH ?? PATH_DEFAULT, ETCDCTL_API: '3' },
    }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { killed?: boolean }) | null;
      done({ missing: e?.code === 'ENOENT', code: e?.code ?? undefined, killed: e?.killed, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** "3.5.30" from `etcdutl version` / `etcdctl version` output; undefined when it says none. */
export function parseToolVersion(output: string): string | undefined {
  return /\b(?:etcdutl|etcdctl) version:\s*v?(\d+\.\d+\.\d+)/.exec(output)?.[1];
}

/** [major, minor] of "3.5.30" or "3.5"; undefined when it is not a version. */
export function minorOf(version: string | undefined): [number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)(?:\.\d+)?/.exec(version ?? '');
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** version's minor is at least min's ("3.5.30" vs "3.5": yes; "3.4.23" vs "3.5": no). Unknown versions are not. */
export function atLeastMinor(version: string, min: string): boolean {
  const [a, b] = [minorOf(version), minorOf(min)];
  if (!a || !b) return false;
  return a[0] !== b[0] ? a[0] > b[0] : a[1] >= b[1];
}

/** The highest minor of these versions, as "3.5"; undefined when none is a version. */
export function highestMinor(versions: Array<string | undefined>): string | undefined {
  let best: [number, number] | undefined;
  for (const v of versions) {
    const m = minorOf(v);
    if (m && (!best || m[0] > best[0] || (m[0] === best[0] && m[1] > best[1]))) best = m;
  }
  return best ? `${best[0]}.${best[1]}` : undefined;
}

const CACHE_MS = 30_000;
let cached: { at: number; tools: Promise<HostTool[]> } | undefined;

/**
 * The etcd tools installed on this host, etcdutl first, with their versions. Cached for
 * 30 s (a plan asks on every computation); `fresh` asks again.
 */
export function hostTools(o: { fresh?: boolean; timeoutMs?: number } = {}): Promise<HostTool[]> {
  if (!o.fresh && cached && Date.now() - cached.at < CACHE_MS) return cached.tools;
  const tools = (async () => {
    const out: HostTool[] = [];
    for (const tool of ['etcdutl', 'etcdctl'] as const) {
      const r = await runTool(tool, ['version'], o.timeoutMs ?? 5_000);
      if (r.missing || r.code !== undefined) continue;
      const version = parseToolVersion(r.stdout);
      if (version) out.push({ tool, version });
    }
    return out;
  })();
  cached = { at: Date.now(), tools };
  return tools;
}

/** "etcdutl 3.5.30, etcdctl 3.5.30" or "neither etcdutl nor etcdctl". */
export function describeTools(tools: HostTool[]): string {
  return tools.length ? tools.map((t) => `${t.tool} ${t.version}`).join(', ') : 'neither etcdutl nor etcdctl';
}

/**
 * The tool a restore of a cluster at `clusterMinor` uses: the first of etcdutl, etcdctl that
 * is at least that minor version. Otherwise the refusal, naming the binary the host needs.
 */
export function restoreToolFor(tools: HostTool[], clusterMinor: string | undefined): { tool: HostTool } | { refusal: string } {
  const usable = tools.filter((t) => !clusterMinor || atLeastMinor(t.version, clusterMinor));
  const pick = usable.find((t) => t.tool === 'etcdutl') ?? usable[0];
  if (pick) return { tool: pick };
  const need = `${clusterMinor && atLeastMinor(clusterMinor, '3.5') ? 'etcdutl' : 'etcdctl'} ${clusterMinor} or newer`;
  return {
    refusal: `restoring this etcd ${clusterMinor} cluster needs ${need} on the bot's host, and it has ${describeTools(tools)}: `
      + 'a restore made with tooling older than the cluster\'s etcd can bring removed members back on a later upgrade (etcd issue 20967). '
      + `Install ${need} (Debian: etcd-server ${clusterMinor} from a newer release) first in the worker's PATH, then request the restore again`,
  };
}
