// The node process: CSI Identity + Node on a Unix socket.
import { kubeConfigIfAvailable } from '../k8s/kubeconfig.js';
import type { Logger } from 'pino';
import { MountPodManager } from './mount-pods.js';
import { identityService } from '../controller/controller-service.js';
import { startCsiServer, type CsiServer } from '../csi/server.js';
import { PACKAGE_VERSION } from '../local/project-root.js';
import { nodeService } from './node-service.js';

export interface NodeRunOptions {
  endpoint: string;
  nodeId: string;
  /** Mount Pod mode needs the API: a kubeconfig file, or in-cluster. */
  kubeconfig?: string;
  namespace: string;
  mountImage?: string;
  /** How often the background check and the delete-delay sweep run. */
  checkIntervalMs?: number;
  log: Logger;
}

export async function runNode(opts: NodeRunOptions): Promise<CsiServer> {
  let mountPods: MountPodManager | undefined;
  const kc = kubeConfigIfAvailable(opts.kubeconfig);
  if (kc) {
    mountPods = new MountPodManager({ kubeConfig: kc, nodeName: opts.nodeId, namespace: opts.namespace, defaultMountImage: opts.mountImage, log: opts.log });
    await mountPods.start(opts.checkIntervalMs);
  }
  const server = await startCsiServer(
    opts.endpoint,
    { Identity: identityService(PACKAGE_VERSION, false), Node: nodeService({ nodeId: opts.nodeId, log: opts.log, mountPods }) },
    opts.log,
  );
  return {
    endpoint: server.endpoint,
    close: async () => {
      await server.close();
      await mountPods?.stop();
    },
  };
}
