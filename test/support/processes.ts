/** Bot processes (dist/src/main.js) for tests that run roles apart or kill workers. */
import { ChildProcess, spawn } from 'node:child_process';
import { basename, join } from 'node:path';

// From test/support under ts-jest, or from dist/test/support when a benchmark runs compiled.
const ROOT = join(__dirname, '..', '..');
export const MAIN = basename(ROOT) === 'dist' ? join(ROOT, 'src', 'main.js') : join(ROOT, 'dist', 'src', 'main.js');

/** A `MEDIC_ROLE=<role>` process; its output is collected for failure messages. */
export function startBot(env: Record<string, string>, role = 'worker'): { child: ChildProcess; log: () => string } {
  let log = '';
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', MEDIC_ROLE: role, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d) => { log += d; });
  child.stderr!.on('data', (d) => { log += d; });
  return { child, log: () => log };
}

/** Stops a process by its pid (`signal`, then SIGKILL after 15 s) and waits for it to exit. */
export function stopProcess(p: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) { resolve(); return; }
    const t = setTimeout(() => p.kill('SIGKILL'), 15000);
    p.on('exit', () => { clearTimeout(t); resolve(); });
    p.kill(signal);
  });
}
