#!/usr/bin/env node
// @ts-check
/*
 * kubelet-lite: the lab's stand-in for kubelet, for ONE static pod (etcd).
 *
 * Runs inside a lab node's mount namespace (see lab/node-init.sh), where
 * /etc/kubernetes, /var/log/pods and /var/log/containers are the node's own.
 *
 * - Runs etcd from /etc/kubernetes/manifests/etcd.yaml while that file exists:
 *   argv = spec.containers[0].command (+ .args).
 * - Polls the manifest about every second (plus fs.watch); a content change
 *   restarts the pod (new pod UID, like kubelet), removal stops it.
 * - A container that exits is restarted with a crash-loop backoff (1 s, 2 s, 4 s,
 *   capped at 5 s; reset after 10 s of running).
 * - Container output goes to CRI-format logs:
 *     /var/log/pods/kube-system_etcd-<node>_<uid>/etcd/<restartCount>.log
 *     /var/log/containers/etcd-<node>_kube-system_etcd-<containerId>.log -> the above
 * - SIGTERM/SIGINT: stop etcd (SIGTERM, SIGKILL after 5 s), then exit.
 *
 * Plain CommonJS so it runs without a TypeScript build; only dependency: `yaml`.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { spawn } = require('child_process');
const YAML = require('yaml');

/** @param {string} name @param {string} def */
function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const NODE = arg('node', process.env.LAB_NODE || 'node');
const MANIFEST_DIR = arg('manifest-dir', '/etc/kubernetes/manifests');
const MANIFEST = path.join(MANIFEST_DIR, 'etcd.yaml');
const PODS_DIR = arg('pods-dir', '/var/log/pods');
const CONTAINERS_DIR = arg('containers-dir', '/var/log/containers');
const POLL_MS = Number(arg('poll-ms', '1000'));
const STOP_GRACE_MS = Number(arg('stop-grace-ms', '5000'));
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 5000;
/** A container that ran this long resets the crash-loop backoff. */
const BACKOFF_RESET_AFTER_MS = 10000;
/** Pod log directories kept (current one included). */
const KEEP_POD_DIRS = 3;
/** Log files kept per pod (current + previous, as kubelet). */
const KEEP_LOGS_PER_POD = 2;
/**
 * The etcd the "image" ships: Debian's by default; LAB_ETCD_BIN (an absolute path to another
 * build, e.g. etcd 3.5 unpacked from Debian's newer packages) stands in for a newer image.
 */
const ETCD_BIN = process.env.LAB_ETCD_BIN || '';
const CONTAINER_ENV = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
};

/** @param {...unknown} a */
function log(...a) {
  process.stdout.write(`${new Date().toISOString()} kubelet-lite[${NODE}] ${a.map(String).join(' ')}\n`);
}

/** RFC3339Nano, UTC. */
function rfc3339Nano() {
  const ms = Date.now();
  const subMs = Number(process.hrtime.bigint() % 1000000n);
  const frac = String(ms % 1000).padStart(3, '0') + String(subMs).padStart(6, '0');
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, `.${frac}Z`);
}

/**
 * @typedef {{ content: string, uid: string, argv: string[] }} Desired
 * @typedef {{
 *   content: string, uid: string, argv: string[], podDir: string,
 *   restartCount: number, proc: import('child_process').ChildProcess | null,
 *   exited: Promise<void> | null, startedAt: number, backoffMs: number,
 *   nextStartAt: number, timer: NodeJS.Timeout | null, containerId: string
 * }} Pod
 */

/** @type {Pod | null} */
let cur = null;
let syncing = false;
let again = false;
let shuttingDown = false;
/** @type {string | null} */
let lastProblem = null;

/** @param {string} msg */
function problem(msg) {
  if (msg !== lastProblem) log(msg);
  lastProblem = msg;
}

/** @returns {Desired | null} */
function readDesired() {
  let content;
  try {
    content = fs.readFileSync(MANIFEST, 'utf8');
  } catch (e) {
    if (/** @type {NodeJS.ErrnoException} */ (e).code !== 'ENOENT') problem(`cannot read ${MANIFEST}: ${/** @type {Error} */ (e).message}`);
    else lastProblem = null;
    return null;
  }
  let doc;
  try {
    doc = YAML.parse(content);
  } catch (e) {
    problem(`${MANIFEST}: invalid YAML, pod not run: ${/** @type {Error} */ (e).message.split('\n')[0]}`);
    return null;
  }
  const c = doc && doc.kind === 'Pod' && doc.spec && Array.isArray(doc.spec.containers) ? doc.spec.containers[0] : undefined;
  const command = c && Array.isArray(c.command) ? c.command : [];
  const args = c && Array.isArray(c.args) ? c.args : [];
  const argv = [...command, ...args];
  if (!argv.length || !argv.every((s) => typeof s === 'string' || typeof s === 'number' || typeof s === 'boolean')) {
    problem(`${MANIFEST}: not a Pod with spec.containers[0].command (list of strings), pod not run`);
    return null;
  }
  lastProblem = null;
  // kubelet: static pod UID = hash of the pod (here: its file) and the node name.
  const uid = crypto.createHash('md5').update(NODE).update(content).digest('hex');
  return { content, uid, argv: argv.map(String) };
}

/** @param {string} dir */
function logIndexes(dir) {
  try {
    return fs.readdirSync(dir).map((f) => /^(\d+)\.log$/.exec(f)).filter((m) => m).map((m) => Number(/** @type {RegExpExecArray} */ (m)[1])).sort((a, b) => a - b);
  } catch {
    return [];
  }
}

/** @param {Desired} d @returns {Pod} */
function newPod(d) {
  const podDir = path.join(PODS_DIR, `kube-system_etcd-${NODE}_${d.uid}`);
  const existing = logIndexes(path.join(podDir, 'etcd'));
  return {
    ...d,
    podDir,
    // The same manifest put back gives the same UID: continue the numbering, don't clobber old logs.
    restartCount: existing.length ? existing[existing.length - 1] + 1 : 0,
    proc: null,
    exited: null,
    startedAt: 0,
    backoffMs: BACKOFF_MIN_MS,
    nextStartAt: 0,
    timer: null,
    containerId: '',
  };
}

/** Remove old logs: keep KEEP_LOGS_PER_POD files in the pod, KEEP_POD_DIRS pod dirs, and only links to kept files. */
function gcLogs() {
  try {
    if (cur) {
      const dir = path.join(cur.podDir, 'etcd');
      const idx = logIndexes(dir);
      for (const i of idx.slice(0, Math.max(0, idx.length - KEEP_LOGS_PER_POD))) fs.rmSync(path.join(dir, `${i}.log`), { force: true });
    }
    const pods = fs.readdirSync(PODS_DIR)
      .filter((f) => f.startsWith(`kube-system_etcd-${NODE}_`))
      .map((f) => ({ f, t: fs.statSync(path.join(PODS_DIR, f)).mtimeMs }))
      .sort((a, b) => b.t - a.t);
    for (const p of pods.slice(KEEP_POD_DIRS)) {
      if (cur && path.join(PODS_DIR, p.f) === cur.podDir) continue;
      fs.rmSync(path.join(PODS_DIR, p.f), { recursive: true, force: true });
    }
    for (const l of fs.readdirSync(CONTAINERS_DIR)) {
      const full = path.join(CONTAINERS_DIR, l);
      let target;
      try { target = fs.readlinkSync(full); } catch { continue; }
      if (!fs.existsSync(target)) fs.rmSync(full, { force: true });
    }
  } catch (e) {
    log(`log cleanup: ${/** @type {Error} */ (e).message}`);
  }
}

/**
 * Line-splitting CRI writer for one stream.
 * @param {fs.WriteStream} out @param {'stdout' | 'stderr'} stream
 */
function criWriter(out, stream) {
  let buf = '';
  const MAX = 16 * 1024;
  return {
    /** @param {Buffer} chunk */
    data(chunk) {
      buf += chunk.toString('utf8');
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        out.write(`${rfc3339Nano()} ${stream} F ${buf.slice(0, nl)}\n`);
        buf = buf.slice(nl + 1);
      }
      while (buf.length > MAX) {
        out.write(`${rfc3339Nano()} ${stream} P ${buf.slice(0, MAX)}\n`);
        buf = buf.slice(MAX);
      }
    },
    end() {
      if (buf.length) out.write(`${rfc3339Nano()} ${stream} F ${buf}\n`);
      buf = '';
    },
  };
}

/** @param {Pod} pod */
function startContainer(pod) {
  const ctrDir = path.join(pod.podDir, 'etcd');
  fs.mkdirSync(ctrDir, { recursive: true });
  fs.mkdirSync(CONTAINERS_DIR, { recursive: true });
  const logFile = path.join(ctrDir, `${pod.restartCount}.log`);
  pod.containerId = crypto.randomBytes(32).toString('hex');
  // Opened synchronously: the file must exist before gcLogs() looks at the link.
  const out = fs.createWriteStream(logFile, { fd: fs.openSync(logFile, 'a') });
  const link = path.join(CONTAINERS_DIR, `etcd-${NODE}_kube-system_etcd-${pod.containerId}.log`);
  try { fs.symlinkSync(logFile, link); } catch (e) { log(`symlink ${link}: ${/** @type {Error} */ (e).message}`); }
  const so = criWriter(out, 'stdout');
  const se = criWriter(out, 'stderr');
  log(`starting container etcd ${pod.containerId.slice(0, 13)} (pod uid ${pod.uid}, restartCount ${pod.restartCount}): ${pod.argv.join(' ')}`);
  pod.startedAt = Date.now();
  const bin = pod.argv[0] === 'etcd' && ETCD_BIN ? ETCD_BIN : pod.argv[0];
  const proc = spawn(bin, pod.argv.slice(1), { cwd: '/', env: CONTAINER_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  pod.proc = proc;
  /** @type {(v: void) => void} */
  let resolveExit = () => {};
  pod.exited = new Promise((r) => { resolveExit = r; });
  let done = false;
  let open = 2;
  /** @param {string} how */
  const finish = (how) => {
    if (done) return;
    done = true;
    const finishStreams = () => {
      so.end();
      se.end();
      out.end(() => {
        log(`container etcd ${pod.containerId.slice(0, 13)} ${how}`);
        onExit(pod, proc);
        resolveExit();
      });
    };
    // Let the pipes drain (bounded), then close the log.
    const t0 = Date.now();
    const waitPipes = () => (open <= 0 || Date.now() - t0 > 1000 ? finishStreams() : setTimeout(waitPipes, 20));
    waitPipes();
  };
  if (proc.stdout) { proc.stdout.on('data', (c) => so.data(c)); proc.stdout.on('close', () => { open--; }); } else open--;
  if (proc.stderr) { proc.stderr.on('data', (c) => se.data(c)); proc.stderr.on('close', () => { open--; }); } else open--;
  proc.on('error', (e) => {
    // e.g. ENOENT: the runtime could not start the container.
    out.write(`${rfc3339Nano()} stderr F exec ${pod.argv[0]}: ${e.message}\n`);
    open = 0;
    finish(`failed to start: ${e.message}`);
  });
  proc.on('exit', (code, sig) => finish(`exited (${sig ? `signal ${sig}` : `code ${code}`})`));
  gcLogs();
}

/** @param {Pod} pod @param {import('child_process').ChildProcess} proc */
function onExit(pod, proc) {
  if (pod.proc !== proc) return;
  pod.proc = null;
  if (cur !== pod || shuttingDown) return;
  // Unexpected exit (not stopped by us): crash-loop backoff, same pod, next restartCount.
  const ran = Date.now() - pod.startedAt;
  if (ran >= BACKOFF_RESET_AFTER_MS) pod.backoffMs = BACKOFF_MIN_MS;
  const delay = pod.backoffMs;
  pod.backoffMs = Math.min(pod.backoffMs * 2, BACKOFF_MAX_MS);
  pod.restartCount += 1;
  pod.nextStartAt = Date.now() + delay;
  log(`back-off ${delay} ms restarting failed container etcd (restartCount ${pod.restartCount})`);
  pod.timer = setTimeout(() => { pod.timer = null; void sync(); }, delay);
}

/** @param {Pod} pod @param {string} reason */
async function stopPod(pod, reason) {
  if (pod.timer) { clearTimeout(pod.timer); pod.timer = null; }
  const proc = pod.proc;
  if (!proc || !pod.exited) return;
  log(`killing container etcd ${pod.containerId.slice(0, 13)}: ${reason}`);
  const exited = pod.exited;
  pod.proc = null; // an exit from now on is expected
  proc.kill('SIGTERM');
  const killer = setTimeout(() => {
    log(`container etcd ${pod.containerId.slice(0, 13)} still running after ${STOP_GRACE_MS} ms: SIGKILL`);
    try { proc.kill('SIGKILL'); } catch { /* gone */ }
  }, STOP_GRACE_MS);
  await exited;
  clearTimeout(killer);
}

async function syncOnce() {
  const desired = shuttingDown ? null : readDesired();
  if (cur && (!desired || desired.content !== cur.content)) {
    const pod = cur;
    await stopPod(pod, desired ? 'manifest changed' : 'manifest removed');
    if (cur === pod) cur = null;
    if (!desired) log(`pod kube-system/etcd-${NODE} removed`);
  }
  if (!desired || shuttingDown) return;
  if (!cur) {
    cur = newPod(desired);
    log(`pod kube-system/etcd-${NODE} (uid ${cur.uid}) added from ${MANIFEST}`);
  }
  if (!cur.proc && !cur.timer && Date.now() >= cur.nextStartAt) startContainer(cur);
}

async function sync() {
  if (syncing) { again = true; return; }
  syncing = true;
  try {
    do {
      again = false;
      await syncOnce();
    } while (again && !shuttingDown);
  } catch (e) {
    log(`sync error: ${/** @type {Error} */ (e).stack || e}`);
  } finally {
    syncing = false;
  }
}

/** @type {fs.FSWatcher | null} */
let watcher = null;
function ensureWatch() {
  if (watcher) return;
  try {
    watcher = fs.watch(MANIFEST_DIR, () => { void sync(); });
    watcher.on('error', () => { try { watcher && watcher.close(); } catch { /* ignore */ } watcher = null; });
  } catch {
    watcher = null; // dir missing: polling still works
  }
}

/** @param {string} sig */
async function shutdown(sig) {
  if (shuttingDown) return;
  shuttingDown = true;
  log(`${sig}: stopping`);
  clearInterval(poller);
  if (watcher) watcher.close();
  const t0 = Date.now();
  while (syncing && Date.now() - t0 < STOP_GRACE_MS + 2000) await new Promise((r) => setTimeout(r, 50));
  if (cur) await stopPod(cur, 'kubelet stopping');
  log('stopped');
  process.exit(0);
}

process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

fs.mkdirSync(PODS_DIR, { recursive: true });
fs.mkdirSync(CONTAINERS_DIR, { recursive: true });
log(`started: watching ${MANIFEST} (poll ${POLL_MS} ms)`);
const poller = setInterval(() => { ensureWatch(); void sync(); }, POLL_MS);
ensureWatch();
void sync();
