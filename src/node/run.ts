// The node process: CSI Identity + Node on a Unix socket.
import { KubeConfig } from '@kubernetes/client-node';
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
  log: Logger;
}

export async function runNode(opts: NodeRunOptions): Promise<CsiServer> {
  let mountPods: MountPodManager | undefined;
  if (opts.kubeconfig || process.env.KUBERNETES_SERVICE_HOST) {
    const kc = new KubeConfig();
    if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromCluster();
    mountPods = new MountPodManager({ kubeConfig: kc, nodeName: opts.nodeId, namespace: opts.namespace, defaultMountImage: opts.mountImage, log: opts.log });
    mountPods.startSweeping();
  }
  return startCsiServer(
    opts.endpoint,
    { Identity: identityService(PACKAGE_VERSION, false), Node: nodeService({ nodeId: opts.nodeId, log: opts.log, mountPods }) },
    opts.log,
  );
}
