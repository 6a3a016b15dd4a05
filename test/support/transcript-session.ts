/**
 * An SshSession that replays a recorded transcript (test/fixtures/transcripts/<name>.json):
 * every command the code under test sends must be the next recorded one, byte for byte
 * (quoting included), with the same stdin; `done()` then checks that all were consumed.
 *
 * Recording (MEDIC_RECORD=1) runs the same tests against this machine instead: each
 * command is executed by `sh -c` in a throwaway tree under /tmp/etcd-medic-rec/<name>,
 * where the node's paths (/etc/kubernetes, /var/lib/etcd, ...) are mapped by prefix, and
 * the outputs are saved with the tree's root mapped back, so transcripts show exactly what
 * a node would be sent. Commands about processes and services (pgrep, systemctl,
 * journalctl) must never reach this machine's real ones: a test answers them from a script.
 *
 *   MEDIC_RECORD=1 npx jest -c <config without global setup> test/runtime-
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { MedicError } from '../../src/engine/errors';
import { isRemoteCommand, RemoteCommand, sh } from '../../src/exec/shell';
import type { ExecOptions, ExecResult, RemoteStat, SshSession, SshTarget, SshTunnel } from '../../src/exec/ssh';

export interface Exchange {
  /** The command text as the runtime rendered it (before ssh.ts wraps it in `timeout`). */
  command: string;
  stdin?: string;
  code: number;
  stdout: string;
  stderr: string;
}

export interface Transcript {
  note: string;
  exchanges: Exchange[];
}

export type Answer = Pick<Exchange, 'code' | 'stdout' | 'stderr'>;
/** Answers a command from a script instead of running it; undefined: run it. */
export type Responder = (command: string) => Answer | undefined;

export interface RecordSetup {
  /** Saved into the fixture: how it was recorded, what is hand-written. */
  note: string;
  /** Files of the node's tree, by node path; mtime in ms since epoch when it matters. */
  files?: Record<string, string | { content: string; mtimeMs: number }>;
  dirs?: string[];
  answer?: Responder;
}

export const RECORDING = process.env.MEDIC_RECORD === '1';
/** How long every command "takes" on the test clock. */
export const EXEC_MS = 100;
const FIXTURES = join(__dirname, '..', 'fixtures', 'transcripts');
const REC_ROOT = '/tmp/etcd-medic-rec';
/** Node paths that live inside the recording tree. */
const MAPPED = /\/etc\/kubernetes\/|\/etc\/default\/|\/var\/lib\/etcd|\/var\/log\/pods\//g;
/** Never run for real on the recording machine: it has its own (or a lab's) etcd and services. */
const MUST_ANSWER = /^\s*(pgrep|pkill|kill|systemctl|journalctl|crictl)\b/;

/** A clock that moves only when the session runs a command: waits poll the same number of times on every run. */
export class StepClock {
  private t: number;
  constructor(iso = '2024-05-01T12:34:56.000Z') { this.t = Date.parse(iso); }
  readonly now = (): Date => new Date(this.t);
  advance(ms: number): void { this.t += ms; }
}

export class TranscriptSession implements SshSession {
  readonly target: SshTarget = { node: 'node1', host: '192.0.2.11', port: 22, user: 'root', hostKey: 'SHA256:transcript' };
  /** Every command text sent, in order. */
  readonly commands: string[] = [];
  readonly root: string;
  private readonly recorded: Exchange[] = [];
  private readonly problems: string[] = [];
  private next = 0;
  isOpen(): boolean { return true; }

  constructor(readonly name: string, private readonly clock: StepClock, private readonly replay: Exchange[] | undefined, private readonly setup?: RecordSetup) {
    this.root = join(REC_ROOT, name);
    if (!replay) prepareTree(this.root, setup ?? { note: '' });
  }

  async exec(cmd: RemoteCommand, o: ExecOptions = {}): Promise<ExecResult> {
    if (!isRemoteCommand(cmd)) throw new Error('exec got something not built by sh`...`');
    const stdin = o.stdin === undefined ? undefined : o.stdin.toString();
    const a = this.exchange(cmd.text, stdin);
    return { code: a.code, signal: null, stdout: a.stdout, stderr: a.stderr, truncated: false, durationMs: EXEC_MS };
  }

  /** As ssh.ts does it: `cat -- <path>`, REMOTE_FAILED on a non-zero exit. */
  async readFile(path: string): Promise<Buffer> {
    const a = this.exchange(sh`cat -- ${path}`.text, undefined);
    if (a.code !== 0) throw new MedicError('REMOTE_FAILED', `${this.target.node}: cannot read ${path}: ${a.stderr.trim()}`);
    return Buffer.from(a.stdout, 'utf8');
  }

  writeFile(): Promise<void> { throw new Error('not part of a runtime transcript'); }
  stat(): Promise<RemoteStat> { throw new Error('not part of a runtime transcript'); }
  openTunnel(): Promise<SshTunnel> { throw new Error('not part of a runtime transcript'); }
  close(): Promise<void> { throw new Error('not part of a runtime transcript'); }

  /** Replay: every recorded command was sent, nothing else. Record: writes the fixture. */
  done(): void {
    if (!this.replay) {
      writeFileSync(join(FIXTURES, `${this.name}.json`), JSON.stringify({ note: this.setup?.note ?? '', exchanges: this.recorded }, null, 2) + '\n');
      return;
    }
    if (this.next < this.replay.length) this.problems.push(`${this.replay.length - this.next} recorded command(s) never sent, first: ${this.replay[this.next].command}`);
    if (this.problems.length) throw new Error(`transcript ${this.name}:\n${this.problems.join('\n')}`);
  }

  private exchange(command: string, stdin: string | undefined): Answer {
    this.commands.push(command);
    this.clock.advance(EXEC_MS);
    return this.replay ? this.replayOne(command, stdin) : this.recordOne(command, stdin);
  }

  private replayOne(command: string, stdin: string | undefined): Answer {
    const want = (this.replay as Exchange[])[this.next];
    const at = this.next++;
    const problem = !want ? 'nothing more was recorded'
      : want.command !== command ? `recorded:\n    ${want.command}`
      : want.stdin !== stdin ? `same command, different stdin:\n    recorded ${JSON.stringify(want.stdin)}\n    sent     ${JSON.stringify(stdin)}`
      : undefined;
    if (problem) {
      this.problems.push(`command #${at + 1} does not match the transcript:\n    sent:\n    ${command}\n    ${problem}`);
      throw new Error(this.problems[this.problems.length - 1]);
    }
    return want;
  }

  private recordOne(command: string, stdin: string | undefined): Answer {
    const scripted = this.setup?.answer?.(command);
    if (!scripted && MUST_ANSWER.test(command)) throw new Error(`recording ${this.name}: no scripted answer for ${command}`);
    const a = scripted ?? this.runHere(command, stdin);
    this.recorded.push({ command, ...(stdin === undefined ? {} : { stdin }), ...a });
    return a;
  }

  private runHere(command: string, stdin: string | undefined): Answer {
    const r = spawnSync('sh', ['-c', command.replace(MAPPED, (p) => this.root + p)], { cwd: this.root, input: stdin ?? '', encoding: 'utf8', timeout: 10_000 });
    const unmap = (s: string) => s.split(this.root).join('');
    return { code: r.status ?? -1, stdout: unmap(r.stdout), stderr: unmap(r.stderr) };
  }
}

/** Replays test/fixtures/transcripts/<name>.json, or records it when MEDIC_RECORD=1. */
export function transcriptSession(name: string, clock: StepClock, setup: RecordSetup): TranscriptSession {
  if (RECORDING) return new TranscriptSession(name, clock, undefined, setup);
  const t = JSON.parse(readFileSync(join(FIXTURES, `${name}.json`), 'utf8')) as Transcript;
  return new TranscriptSession(name, clock, t.exchanges);
}

/** A session that expects no command at all (input refused before anything runs). */
export function silentSession(clock = new StepClock()): TranscriptSession {
  return new TranscriptSession('silent', clock, []);
}

function prepareTree(root: string, setup: RecordSetup): void {
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  for (const d of setup.dirs ?? []) mkdirSync(join(root, d), { recursive: true });
  for (const [path, f] of Object.entries(setup.files ?? {})) {
    const file = join(root, path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, typeof f === 'string' ? f : f.content, { mode: 0o600 });
    if (typeof f !== 'string') utimesSync(file, f.mtimeMs / 1000, f.mtimeMs / 1000);
  }
}

/** Answers `pgrep -x etcd` from a script, one answer per call, as pgrep prints them. */
export function pgrepScript(command: string, answers: ('running' | 'none')[]): Responder {
  let i = 0;
  return (cmd) => {
    if (cmd !== command) return undefined;
    const a = answers[Math.min(i++, answers.length - 1)];
    return a === 'running' ? { code: 0, stdout: '48213\n', stderr: '' } : { code: 1, stdout: '', stderr: '' };
  };
}
