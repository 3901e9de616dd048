// The kubelet's plugin-registration API (pluginregistration v1), served by the
// node service itself, so the DaemonSet needs no node-driver-registrar.
//
// How the kubelet uses it (pkg/kubelet/pluginmanager, v1.34): it watches
// <kubelet root>/plugins_registry/ with fsnotify (files starting with "." and
// non-sockets are ignored). A new socket there makes it call GetInfo (1 s
// timeout), then, for a "CSIPlugin", NodeGetInfo on the endpoint we name, and
// then NotifyRegistrationStatus with the outcome. It does not retry a
// registration that failed after GetInfo answered: only a new socket (a new
// create event) makes it try again, so after a failure this re-creates the
// socket, with backoff. Removing the socket makes the kubelet deregister the
// driver, which is what stop does.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { lstatSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { CSI_DRIVER_NAME } from '../contract/keys.js';
import { socketPath } from '../csi/server.js';
import { PACKAGE_ROOT } from '../util/package-root.js';

export const REGISTRATION_PROTO_FILE = path.join(PACKAGE_ROOT, 'proto/pluginregistration/v1/api.proto');
/** The CSI spec version the node service implements (proto/csi/v1). */
export const CSI_SUPPORTED_VERSIONS = ['1.0.0'];
const FIRST_RETRY_MS = 5_000;
const MAX_RETRY_MS = 5 * 60_000;

export interface RegistrationOptions {
  /** <kubelet root>/plugins_registry as this process sees it (a hostPath mount in the DaemonSet). */
  dir: string;
  /** The CSI socket as the kubelet sees it: a path on the host, or unix:// plus that path. */
  kubeletEndpoint: string;
  driverName?: string;
  /** First delay before re-creating the socket after a failed registration; doubles up to 5 min. */
  retryMs?: number;
  log: Logger;
}

export interface RegistrationServer {
  /** The registration socket this process serves. */
  socket: string;
  /** True once the kubelet said the driver is registered (until it says otherwise). */
  registered(): boolean;
  /** Stops serving and removes the socket: the kubelet then deregisters the driver. */
  close(): Promise<void>;
}

interface RegistrationPackage {
  pluginregistration: { Registration: grpc.ServiceClientConstructor };
}

export function loadRegistration(): RegistrationPackage {
  const def = protoLoader.loadSync(REGISTRATION_PROTO_FILE, { keepCase: true, defaults: true });
  return grpc.loadPackageDefinition(def) as unknown as RegistrationPackage;
}

/** The socket's file name, as node-driver-registrar names it: one per driver in the shared folder. */
export function registrationSocket(dir: string, driverName = CSI_DRIVER_NAME): string {
  return path.join(dir, `${driverName}-reg.sock`);
}

/** Removes a socket file left at `file`; anything else there is an error, never deleted. */
function removeSocket(file: string): void {
  let st;
  try {
    st = lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new Error(`${file} exists and is not a socket: not removing it`);
  rmSync(file, { force: true });
}

function bind(server: grpc.Server, file: string): Promise<void> {
  return new Promise((resolve, reject) =>
    server.bindAsync(`unix://${file}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
}

function shutdown(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 2000);
    force.unref();
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

export async function startRegistration(opts: RegistrationOptions): Promise<RegistrationServer> {
  const { log } = opts;
  const driverName = opts.driverName ?? CSI_DRIVER_NAME;
  const endpoint = socketPath(opts.kubeletEndpoint);
  if (!path.isAbsolute(endpoint)) throw new Error(`--kubelet-plugin-endpoint must be an absolute path: ${endpoint}`);
  const socket = registrationSocket(opts.dir, driverName);
  const firstRetry = opts.retryMs ?? FIRST_RETRY_MS;
  const { Registration } = loadRegistration().pluginregistration;

  let registered = false;
  let closed = false;
  let retryMs = firstRetry;
  let retryTimer: NodeJS.Timeout | undefined;
  let server: grpc.Server | undefined;
  let restarting: Promise<void> = Promise.resolve();

  const info = { type: 'CSIPlugin', name: driverName, endpoint, supported_versions: CSI_SUPPORTED_VERSIONS };
  const impl: grpc.UntypedServiceImplementation = {
    GetInfo: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      log.info({ socket, endpoint }, 'kubelet asked for the plugin info (GetInfo)');
      cb(null, info);
    },
    NotifyRegistrationStatus: (
      call: grpc.ServerUnaryCall<{ plugin_registered: boolean; error: string }, unknown>,
      cb: grpc.sendUnaryData<unknown>,
    ) => {
      cb(null, {});
      const { plugin_registered: ok, error } = call.request;
      registered = ok;
      if (ok) {
        retryMs = firstRetry;
        log.info({ driver: driverName, endpoint }, 'registered with the kubelet');
        return;
      }
      log.error(
        { driver: driverName, endpoint, socket, kubeletError: error, retryInMs: retryMs },
        'the kubelet did NOT register the driver; check that --kubelet-plugin-endpoint is the CSI socket as the ' +
          'kubelet sees it (host path) and that the CSI server is up; re-creating the registration socket to retry',
      );
      scheduleRetry();
    },
  };

  const serve = async () => {
    const s = new grpc.Server();
    s.addService(Registration.service, impl);
    removeSocket(socket);
    await bind(s, socket);
    server = s;
  };

  // A new socket is a new fsnotify create event: the only thing that makes the kubelet try again.
  function scheduleRetry() {
    if (closed || retryTimer) return;
    const delay = retryMs;
    retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      restarting = restarting.then(async () => {
        if (closed) return;
        if (server) await shutdown(server);
        server = undefined;
        if (closed) return;
        await serve().catch((err: unknown) => {
          log.error({ socket, err: (err as Error).message }, 'cannot re-create the registration socket');
          scheduleRetry();
        });
      });
    }, delay);
    retryTimer.unref();
  }

  mkdirSync(opts.dir, { recursive: true });
  await serve();
  log.info({ socket, driver: driverName, endpoint }, 'serving plugin registration for the kubelet');

  return {
    socket,
    registered: () => registered,
    close: async () => {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      await restarting;
      if (server) await shutdown(server);
      server = undefined;
      removeSocket(socket);
      registered = false;
    },
  };
}
