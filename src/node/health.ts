// The node service's health endpoint (`--health-address`): /healthz, and /readyz with the detail of the global
// ConfigMap as the last publish read it (its version, what of it is not applied, why a newer one was refused), as the
// webhook's /readyz gives it. Plain HTTP on the address given (loopback or the pod's own port for probes).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ConfigStatus } from '../k8s/config-report.js';

export interface NodeHealth {
  port: number;
  close(): Promise<void>;
}

export async function startNodeHealth(address: string, config: () => ConfigStatus | undefined): Promise<NodeHealth> {
  const m = /^(.*):([0-9]{1,5})$/.exec(address);
  if (!m) throw new Error(`--health-address "${address}" is not host:port`);
  const server: Server = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'GET') return send(405, { error: 'GET only' });
    if (req.url === '/healthz') return send(200, { status: 'ok' });
    if (req.url === '/readyz') return send(200, { status: 'ok', config: config() ?? null });
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
