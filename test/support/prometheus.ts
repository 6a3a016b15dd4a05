/**
 * A real Prometheus (Debian's `prometheus`) on loopback scraping the given targets every
 * second, with its HTTP query API for the tests to ask what it stored.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopProcess } from './processes';

export interface Prometheus {
  url: string;
  /** The instant vector of a PromQL query: one { metric labels, value } per series. */
  query(promql: string): Promise<Array<{ metric: Record<string, string>; value: number }>>;
  /** The last lines it logged (for a failing test's message). */
  log(): string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** `targets` as host:port; scraped at /metrics under job "etcd-medic". */
export async function startPrometheus(targets: string[]): Promise<Prometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'medic-prometheus-'));
  writeFileSync(join(dir, 'prometheus.yml'), [
    'global:', '  scrape_interval: 1s', '  scrape_timeout: 900ms',
    'scrape_configs:', '  - job_name: etcd-medic', '    static_configs:', `      - targets: [${targets.map((t) => `'${t}'`).join(', ')}]`, '',
  ].join('\n'));
  const port = await freePort();
  let out = '';
  const child: ChildProcess = spawn('prometheus', [
    `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (d: Buffer) => { out = (out + d.toString()).slice(-20_000); };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => { await stopProcess(child); rmSync(dir, { recursive: true, force: true }); };
  const end = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) { await stop(); throw new Error(`prometheus exited (${child.exitCode}):\n${out}`); }
    const ready = await fetch(`${url}/-/ready`).then((r) => r.ok, () => false);
    if (ready) break;
    if (Date.now() > end) { await stop(); throw new Error(`prometheus was not ready within 30 s:\n${out}`); }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    async query(promql) {
      const r = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
      const body = await r.json() as { status: string; error?: string; data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
      if (body.status !== 'success') throw new Error(`prometheus query ${promql}: ${body.error ?? r.status}`);
      return (body.data?.result ?? []).map((x) => ({ metric: x.metric, value: Number(x.value[1]) }));
    },
    log: () => out,
    stop,
  };
}
