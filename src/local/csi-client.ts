// A CSI client on a Unix socket, one promise per unary call: how the harness
// plays kubelet and external sidecars against the project's CSI services.
import * as grpc from '@grpc/grpc-js';
import { loadCsi } from '../csi/server.js';

export type CsiCall = (method: string, request: Record<string, unknown>) => Promise<Record<string, unknown>>;

/** A client of one CSI service on a socket, one promise per unary call; close() when done. */
export function csiClient(
  endpoint: string,
  service: 'Identity' | 'Controller' | 'Node',
): { call: CsiCall; close: () => void } {
  const Client = loadCsi().csi.v1[service];
  const client = new Client(
    endpoint.startsWith('unix:') ? endpoint : `unix://${endpoint}`,
    grpc.credentials.createInsecure(),
  );
  const methods = client as unknown as Record<
    string,
    (req: unknown, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void
  >;
  const call: CsiCall = (method, request) =>
    new Promise((resolve, reject) => {
      const fn = methods[method];
      if (typeof fn !== 'function') return reject(new Error(`${service} has no method ${method}`));
      fn.call(client, request, (err, res) => (err ? reject(err) : resolve(res)));
    });
  return { call, close: () => client.close() };
}
