// The real node as `npm start` and the node suites run it: the local images
// (built from files) served by a loopback registry and imported into
// containerd, the kubelet with the standard root /var/lib/kubelet (so the
// shipped manifests run unchanged), and the node plugin as the real DaemonSet
// of manifests/node/: a real pod that registers itself with the kubelet
// through the plugin-registration socket.
import {
  AppsV1Api,
  CoreV1Api,
  StorageV1Api,
  type KubernetesObject,
  type V1DaemonSet,
  type V1EnvVar,
} from '@kubernetes/client-node';
import { mkdirSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { CSI_DRIVER_NAME, FD_HOLDER_ROOT, SYSTEM_NAMESPACE } from '../contract/keys.js';
import { applyObjects, readManifest } from './components.js';
import type { ControlPlane } from './control-plane.js';
import { registriesOf, startImageRegistry, writeHostsToml, type ImageRegistry } from './image-registry.js';
import { ensureImages } from './images.js';
import { assertRealNodePrerequisites, startRealNode, type RealNode } from './real-node.js';

/** The kubelet root the shipped manifests name. */
export const KUBELET_ROOT = '/var/lib/kubelet';
export const NODE_PLUGIN_NAME = 'jfs-sidecar-node';

export interface RealNodeStackOptions {
  /** Registry config and the node's run folder go here. */
  dir: string;
  log: Logger;
  /** Run the node plugin DaemonSet (default true); off for tests that run the node service themselves. */
  nodePlugin?: boolean;
}

export interface RealNodeStack {
  node: RealNode;
  registry: ImageRegistry;
  /** Creation of the node plugin's pod to the kubelet's registration of the driver (ms); 0 without it. */
  nodePluginReadyMs: number;
  stop(): Promise<void>;
}

/**
 * The local cluster has no Service network (no kube-proxy, the pod bridge has no route): the node
 * plugin reaches the API server on the host's loopback, so its pod uses the host network and the
 * in-cluster address points there. Only the local run needs this; the shipped DaemonSet is unchanged.
 */
export function nodePluginForLocalNode(ds: V1DaemonSet, apiserverPort: number): V1DaemonSet {
  const out = structuredClone(ds);
  const spec = out.spec!.template.spec!;
  spec.hostNetwork = true;
  spec.dnsPolicy = 'ClusterFirstWithHostNet';
  const apiEnv: V1EnvVar[] = [
    { name: 'KUBERNETES_SERVICE_HOST', value: '127.0.0.1' },
    { name: 'KUBERNETES_SERVICE_PORT', value: String(apiserverPort) },
  ];
  for (const c of spec.containers) {
    const names = new Set(apiEnv.map((e) => e.name));
    c.env = [...(c.env ?? []).filter((e) => !names.has(e.name)), ...apiEnv];
  }
  return out;
}

export async function startRealNodeStack(cp: ControlPlane, opts: RealNodeStackOptions): Promise<RealNodeStack> {
  assertRealNodePrerequisites();
  const log = opts.log;
  const started = Date.now();
  const images = await ensureImages({ log: (msg) => log.info(msg) });
  log.info({ ms: Date.now() - started, images: images.refs.length }, 'images ready');
  const registry = await startImageRegistry(images.images);
  let node: RealNode | undefined;
  const stop = async () => {
    await node?.stop();
    await registry.close();
    // The node plugin's fd-holder folders (its hostPath makes them): each goes with its Mount Pod; the parents here.
    for (const dir of [FD_HOLDER_ROOT, path.dirname(FD_HOLDER_ROOT)]) {
      try {
        rmdirSync(dir);
      } catch {
        // absent, or not empty: a folder still in use is not ours to remove
      }
    }
  };
  try {
    const hostsDir = path.join(opts.dir, 'registry-hosts');
    mkdirSync(hostsDir, { recursive: true });
    await writeHostsToml(hostsDir, registry.host, registriesOf(images.refs));
    node = await startRealNode(cp, {
      parentDir: opts.dir,
      registryConfigDir: hostsDir,
      importArchives: images.archives,
      kubeletRootDir: KUBELET_ROOT,
      // App pods first (the node plugin unpublishes their volumes), then Mount Pods.
      systemNamespaces: ['kube-system', SYSTEM_NAMESPACE],
      log: (msg) => log.info(msg),
    });
    log.info({ node: node.nodeName, ...node.timings }, 'real node Ready');
    let nodePluginReadyMs = 0;
    if (opts.nodePlugin ?? true) nodePluginReadyMs = await deployNodePlugin(cp, node.nodeName);
    return { node, registry, nodePluginReadyMs, stop };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

/** Applies manifests/node/ (its DaemonSet adapted by nodePluginForLocalNode); waits for the registration. */
async function deployNodePlugin(cp: ControlPlane, nodeName: string): Promise<number> {
  const admin = cp.adminKubeConfig();
  const objects = [...readManifest('namespace.yaml'), ...readManifest('node/node.yaml')].map((o: KubernetesObject) =>
    o.kind === 'DaemonSet' ? nodePluginForLocalNode(o as V1DaemonSet, cp.apiserverPort) : o,
  );
  const start = Date.now();
  await applyObjects(admin, objects);
  const storage = admin.makeApiClient(StorageV1Api);
  const apps = admin.makeApiClient(AppsV1Api);
  const core = admin.makeApiClient(CoreV1Api);
  const deadline = Date.now() + 180_000;
  for (;;) {
    const csiNode = await storage.readCSINode({ name: nodeName }).catch(() => undefined);
    if ((csiNode?.spec.drivers ?? []).some((d) => d.name === CSI_DRIVER_NAME)) return Date.now() - start;
    if (Date.now() > deadline) {
      const ds = await apps.readNamespacedDaemonSet({ name: NODE_PLUGIN_NAME, namespace: SYSTEM_NAMESPACE });
      const pods = await core.listNamespacedPod({
        namespace: SYSTEM_NAMESPACE,
        labelSelector: `app.kubernetes.io/name=${NODE_PLUGIN_NAME}`,
      });
      const states = pods.items.map((p) => JSON.stringify(p.status?.containerStatuses?.map((s) => s.state)));
      throw new Error(
        `the node plugin did not register with the kubelet within 180 s (DaemonSet ready ${ds.status?.numberReady ?? 0}; pods: ${states.join(' ') || 'none'})`,
      );
    }
    await sleep(250);
  }
}
