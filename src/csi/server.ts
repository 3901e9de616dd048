// The CSI gRPC server on a Unix socket: loads the project's own csi.proto,
// adapts async handlers to grpc-js, maps CsiError to status codes, and logs
// each call without ever logging `secrets`.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { CsiMetrics } from './metrics.js';
import { PACKAGE_ROOT } from '../util/package-root.js';

/** The CSI spec's proto, shipped in the package (proto/ beside dist/ in the image). */
export const PROTO_FILE = path.join(PACKAGE_ROOT, 'proto/csi/v1/csi.proto');

export class CsiError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
    this.name = 'CsiError';
  }
}

export const Code = grpc.status;

/** A required string field of a request, or INVALID_ARGUMENT naming it. */
export function requiredString(request: Record<string, unknown>, field: string): string {
  const v = request[field];
  if (typeof v !== 'string' || v === '') throw new CsiError(grpc.status.INVALID_ARGUMENT, `${field} is required`);
  return v;
}

type Handler = (request: Record<string, unknown>) => Promise<unknown>;
export type ServiceImpl = Record<string, Handler>;

interface CsiPackage {
  csi: { v1: Record<'Identity' | 'Controller' | 'Node', grpc.ServiceClientConstructor> };
}

export function loadCsi(): CsiPackage {
  const def = protoLoader.loadSync(PROTO_FILE, {
    keepCase: true,
    // Capacities stay exact: int64 as decimal strings, converted where used.
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(def) as unknown as CsiPackage;
}

/** The fields a log line may show of a request: its ids and paths, never secrets. */
function describe(request: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of ['name', 'volume_id', 'snapshot_id', 'source_volume_id', 'target_path', 'node_id'])
    if (request[k]) out[k] = request[k];
  return out;
}

function adapt(
  service: string,
  impl: ServiceImpl,
  log: Logger,
  metrics: CsiMetrics | undefined,
): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  for (const [method, handler] of Object.entries(impl)) {
    out[method] = (
      call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      const started = Date.now();
      const fields = describe(call.request);
      handler(call.request).then(
        (response) => {
          log.info({ rpc: `${service}/${method}`, ...fields, ms: Date.now() - started }, 'ok');
          metrics?.observe(method, 'OK', (Date.now() - started) / 1000);
          callback(null, response);
        },
        (err: unknown) => {
          const code = err instanceof CsiError ? err.code : grpc.status.INTERNAL;
          const message = err instanceof Error ? err.message : String(err);
          log.warn(
            { rpc: `${service}/${method}`, ...fields, code: grpc.status[code], err: message, ms: Date.now() - started },
            'failed',
          );
          metrics?.observe(method, grpc.status[code], (Date.now() - started) / 1000);
          callback({ code, details: message, metadata: new grpc.Metadata() });
        },
      );
    };
  }
  return out;
}

export interface CsiServer {
  endpoint: string;
  close(): Promise<void>;
}

/** `unix:///abs/path/csi.sock` or a plain path. */
export function socketPath(endpoint: string): string {
  return endpoint.replace(/^unix:\/\//, '');
}

export async function startCsiServer(
  endpoint: string,
  services: Partial<Record<'Identity' | 'Controller' | 'Node', ServiceImpl>>,
  log: Logger,
  /** Every call counted and timed (the process's /metrics). */
  metrics?: CsiMetrics,
): Promise<CsiServer> {
  const csi = loadCsi();
  const server = new grpc.Server();
  for (const [name, impl] of Object.entries(services)) {
    if (!impl) continue;
    server.addService(csi.csi.v1[name as 'Identity'].service, adapt(name, impl, log, metrics));
  }
  const sock = socketPath(endpoint);
  mkdirSync(path.dirname(sock), { recursive: true });
  // A socket file left by a previous process would make bind fail.
  if (existsSync(sock)) rmSync(sock);
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    );
  });
  log.info({ endpoint: `unix://${sock}`, services: Object.keys(services) }, 'CSI server listening');
  return {
    endpoint: `unix://${sock}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 5000).unref();
      }),
  };
}
