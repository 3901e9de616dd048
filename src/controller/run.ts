// The controller process: CSI Identity + Controller on a Unix socket.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { startCsiServer, type CsiServer } from '../csi/server.js';
import { JuicefsCli } from '../juicefs/cli.js';
import { JuicefsVolumes } from '../juicefs/volume.js';
import { PACKAGE_VERSION } from '../local/project-root.js';
import { controllerService, identityService } from './controller-service.js';

export interface ControllerRunOptions {
  endpoint: string;
  juicefsBinary: string;
  stateDir: string;
  kubeconfig?: string;
  log: Logger;
}

function kubeConfigIfAny(file?: string): KubeConfig | undefined {
  if (!file && !process.env.KUBERNETES_SERVICE_HOST) return undefined;
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromCluster();
  return kc;
}

export async function runController(opts: ControllerRunOptions): Promise<{ server: CsiServer; close(): Promise<void> }> {
  const volumes = new JuicefsVolumes(new JuicefsCli(opts.juicefsBinary, opts.log), opts.stateDir, opts.log);
  await volumes.cleanupStale();
  const kc = kubeConfigIfAny(opts.kubeconfig);
  const core = kc?.makeApiClient(CoreV1Api);
  const getPvc = core
    ? async (namespace: string, name: string) =>
        core.readNamespacedPersistentVolumeClaim({ namespace, name }).catch((err: { code?: number }) => {
          if (err.code === 404) return undefined;
          throw err;
        })
    : undefined;
  const server = await startCsiServer(
    opts.endpoint,
    {
      Identity: identityService(PACKAGE_VERSION, true),
      Controller: controllerService({ volumes, version: PACKAGE_VERSION, log: opts.log, getPvc }),
    },
    opts.log,
  );
  return {
    server,
    close: async () => {
      await server.close();
      await volumes.close();
    },
  };
}
