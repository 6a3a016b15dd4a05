/**
 * The operations endpoint every process serves beside its role (web, worker, all):
 * `/metrics` for Prometheus, `/healthz` (the process answers) and `/readyz` (it can do its
 * job: Redis answers, the config is loaded, the worker runs). Plain node:http, no Slack.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PromMetrics } from './metrics';

export interface ReadyCheck {
  name: string;
  /** Resolves with a reason when not ready, undefined when ready. Bounded by the server. */
  check(): Promise<string | undefined>;
}

export interface OpsServerOptions {
  metrics: PromMetrics;
  checks: readonly ReadyCheck[];
  /** @defaultValue 9464 */
  port: number;
  /** @defaultValue '127.0.0.1' */
  host?: string;
  /** Each readiness check's bound. @defaultValue 2000 */
  checkTimeoutMs?: number;
}

export interface OpsServer {
  url: string;
  close(): Promise<void>;
}

export async function startOpsServer(o: OpsServerOptions): Promise<OpsServer> {
  const bound = o.checkTimeoutMs ?? 2000;
  const ready = async () => Promise.all(o.checks.map(async (c) => {
    let timer: NodeJS.Timeout | undefined;
    const why = await Promise.race([
      c.check().catch((e: unknown) => `failed: ${e instanceof Error ? e.message : String(e)}`),
      new Promise<string>((r) => { timer = setTimeout(() => r(`no answer within ${bound} ms`), bound); }),
    ]);
    clearTimeout(timer);
    return { name: c.name, ok: why === undefined, why };
  }));
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      void ready().then((rs) => {
        const ok = rs.every((r) => r.ok);
        res.writeHead(ok ? 200 : 503, { 'Content-Type': 'text/plain' })
          .end(rs.map((r) => `${r.ok ? 'ok' : 'not ready'} ${r.name}${r.why ? `: ${r.why}` : ''}`).join('\n') + '\n');
      });
    } else if (path === '/metrics') {
      void o.metrics.text().then(
        (t) => res.writeHead(200, { 'Content-Type': o.metrics.registry.contentType }).end(t),
        (e: unknown) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`could not collect metrics: ${String(e)}\n`),
      );
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: try /metrics, /healthz or /readyz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host ?? '127.0.0.1', () => { server.off('error', reject); resolve(); });
  });
  const a = server.address() as AddressInfo;
  return {
    url: `http://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`,
    close: () => new Promise<void>((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
}
