// The health and metrics endpoint of the node service (`--health-address`) and the controller (`--metrics-address`):
// /healthz, /readyz with a detail, and /metrics in Prometheus's text format. Plain HTTP on the address given
// (loopback, or the pod's own port for probes and scrapes).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HealthServer {
  port: number;
  close(): Promise<void>;
}

export interface HealthRoutes {
  /** The /readyz body's detail (e.g. the global ConfigMap's status). */
  ready?: () => Record<string, unknown>;
  /** /metrics: the registry's exposition. */
  metrics?: () => Promise<{ contentType: string; body: string }>;
}

/** `flag` names the address's option in the error a malformed one gets. */
export async function startHealthServer(
  address: string,
  routes: HealthRoutes,
  flag = '--health-address',
): Promise<HealthServer> {
  const m = /^(.*):([0-9]{1,5})$/.exec(address);
  if (!m) throw new Error(`${flag} "${address}" is not host:port`);
  const server: Server = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'GET') return send(405, { error: 'GET only' });
    const url = (req.url ?? '').split('?')[0];
    if (url === '/healthz') return send(200, { status: 'ok' });
    if (url === '/readyz') return send(200, { status: 'ok', ...(routes.ready?.() ?? {}) });
    if (url === '/metrics' && routes.metrics) {
      routes.metrics().then(
        ({ contentType, body }) => {
          res.writeHead(200, { 'content-type': contentType });
          res.end(body);
        },
        (err: unknown) => send(500, { error: `metrics: ${(err as Error).message}` }),
      );
      return;
    }
    return send(404, { error: 'not found' });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(m[2]), m[1].replace(/^\[|\]$/g, '') || '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
