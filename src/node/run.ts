// The node process: CSI Identity + Node on a Unix socket. The Node service can
// also join the controller's server (`controller --node-id`), so one socket
// serves all three services, as a combined driver does.
import { CoreV1Api } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { identityService } from '../csi/identity-service.js';
import { CsiMetrics } from '../csi/metrics.js';
import { startCsiServer, type CsiServer, type ServiceImpl } from '../csi/server.js';
import { kubeConfigIfAvailable } from '../k8s/kubeconfig.js';
import { PACKAGE_VERSION } from '../util/package-root.js';
import { MountPodManager } from './mount-pod-manager.js';
import { nodeService } from './node-service.js';
import { NodePodReader } from './node-pod-reader.js';
import { startNodeHealth } from './health.js';
import { startRegistration } from './registration.js';

export interface NodeServiceOptions {
  nodeId: string;
  /** Mount Pod mode needs the API: a kubeconfig file, or in-cluster. */
  kubeconfig?: string;
  namespace: string;
  mountImage?: string;
  /** How often the background check and the delete-delay sweep run. */
  checkIntervalMs?: number;
  /** The process's metrics (the node's Mount Pods are registered in it). */
  metrics?: CsiMetrics;
  log: Logger;
}

export interface NodeRunOptions extends NodeServiceOptions {
  endpoint: string;
  /**
   * Serve the kubelet's plugin registration (src/node/registration.ts): the kubelet's plugins_registry folder as
   * this process sees it, and the CSI socket as the kubelet sees it. Without it, something else registers the driver.
   */
  registration?: { dir: string; kubeletEndpoint: string };
  /** host:port of /healthz, /readyz (the ConfigMap's detail) and /metrics; unset: none. */
  healthAddress?: string;
}

/** The Node service and, with API access, its Mount Pod manager (started). */
export async function startNodeService(
  opts: NodeServiceOptions,
): Promise<{ service: ServiceImpl; mountPods?: MountPodManager; close(): Promise<void> }> {
  let mountPods: MountPodManager | undefined;
  const kc = kubeConfigIfAvailable(opts.kubeconfig);
  if (kc) {
    const ownPod = new NodePodReader(kc.makeApiClient(CoreV1Api), {
      nodeName: opts.nodeId,
      podName: process.env.POD_NAME,
      podNamespace: process.env.POD_NAMESPACE,
      env: process.env,
      log: opts.log,
    });
    mountPods = new MountPodManager({
      kubeConfig: kc,
      nodeName: opts.nodeId,
      namespace: opts.namespace,
      defaultMountImage: opts.mountImage,
      log: opts.log,
      metrics: opts.metrics,
      // The reference's older switch; the ConfigMap's enableNodeSelector, when set, wins.
      configDefaults: process.env.ENABLE_NODE_SELECTOR === '1' ? { enableNodeSelector: true } : {},
      inheritance: () => ownPod.current(),
    });
    await mountPods.start(opts.checkIntervalMs);
  }
  return {
    service: nodeService({ nodeId: opts.nodeId, log: opts.log, mountPods }),
    mountPods,
    close: async () => mountPods?.stop(),
  };
}

export async function runNode(opts: NodeRunOptions): Promise<CsiServer & { healthPort?: number }> {
  const metrics = opts.metrics ?? new CsiMetrics({ role: 'node' });
  const node = await startNodeService({ ...opts, metrics });
  // A port taken (a host-network node, another process) costs the endpoint, not the node's mounts: logged, not fatal.
  const health = opts.healthAddress
    ? await startNodeHealth(
        opts.healthAddress,
        () => node.mountPods?.configStatus,
        () => metrics.render(),
      ).catch(async (err: unknown) => {
        if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' || (err as NodeJS.ErrnoException).code === 'EACCES') {
          opts.log.error({ address: opts.healthAddress, err: (err as Error).message }, 'health and metrics not served');
          return undefined;
        }
        await node.close();
        throw err;
      })
    : undefined;
  const server = await startCsiServer(
    opts.endpoint,
    { Identity: identityService(PACKAGE_VERSION, false), Node: node.service },
    opts.log,
    metrics,
  );
  // After the CSI server listens: the kubelet calls NodeGetInfo on it while registering.
  const registration = opts.registration
    ? await startRegistration({ ...opts.registration, log: opts.log }).catch(async (err: unknown) => {
        await server.close();
        await health?.close();
        await node.close();
        throw err;
      })
    : undefined;
  return {
    endpoint: server.endpoint,
    ...(health && { healthPort: health.port }),
    close: async () => {
      await health?.close();
      // First: removing the registration socket makes the kubelet deregister the driver before its socket goes.
      await registration?.close();
      await server.close();
      await node.close();
    },
  };
}
