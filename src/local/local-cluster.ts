// `jfs-sidecar local` (npm start): a throwaway control plane on loopback with
// the project's components registered through its own manifests. It never
// touches a cluster of the user's own.
import type { KubernetesObject } from '@kubernetes/client-node';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { applyObjects, readManifest } from './components.js';
import { ControlPlane, ensureBinaries } from './control-plane.js';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { REAL_NODE_NAME, realNodePrerequisiteProblem } from './real-node.js';
import { startRealNodeStack } from './real-node-stack.js';
import { startControllerStack } from './controller-stack.js';
import { startWebhookStack, WEBHOOK_NAMESPACE } from './webhook-stack.js';
import { PACKAGE_ROOT } from '../util/package-root.js';
import { ATTR } from '../contract/keys.js';

/** The one node of the local cluster: a real kubelet with containerd (src/local/real-node.ts). */
export const LOCAL_NODE = REAL_NODE_NAME;

/**
 * The demo volume's files live under the cache host path (/var/jfsCache), the one host folder the
 * sidecar and the Mount Pod mount at the same path, so their clients open the same SQLite file as
 * the controller on the host. A real volume's metadata engine is a network service instead.
 */
const DEMO_VOLUME_PARENT = '/var/jfsCache';

export interface LocalCluster {
  kubeconfig: string;
  stop(): Promise<void>;
}

export async function startLocalCluster(log: Logger): Promise<LocalCluster> {
  log.info(
    'starting etcd, kube-apiserver and kube-controller-manager on loopback (the first run builds them: minutes)',
  );
  const cp = await ControlPlane.start({ controllerManager: true, scheduler: true });
  const stops: (() => Promise<void>)[] = [() => cp.stop()];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch((err) => log.warn({ err: (err as Error).message }, 'stop failed'));
  };
  try {
    const admin = cp.adminKubeConfig();
    const missing = realNodePrerequisiteProblem();
    const realNode = missing === undefined;
    await applyObjects(admin, [
      ...readManifest('csidriver.yaml'),
      ...readManifest('storageclass-example.yaml').map((o) => (realNode ? storageClassForLocalNode(o) : o)),
    ]);
    const webhook = await startWebhookStack(cp, { dir: cp.dir, secretNamespaces: [WEBHOOK_NAMESPACE] });
    stops.push(() => webhook.stop());
    log.info({ webhookPort: webhook.port, logs: cp.dir }, 'webhook registered');
    const volumeSecret: Record<string, string> = realNode
      ? formatDemoVolume(path.join(DEMO_VOLUME_PARENT, `jfs-local-demo-${path.basename(cp.dir)}`), stops)
      : demoVolumeForController(path.join(cp.dir, 'demo-volume'));
    await applyObjects(admin, [
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'juicefs-secret', namespace: WEBHOOK_NAMESPACE },
        stringData: volumeSecret,
      } as KubernetesObject,
    ]);
    const controller = await startControllerStack(cp, { dir: cp.dir, secretNamespaces: [WEBHOOK_NAMESPACE] });
    stops.push(() => controller.stop());
    log.info({ socket: controller.socket }, 'controller and csi-provisioner running');
    if (realNode) {
      log.info(
        'starting the real node: containerd, the kubelet and the node plugin DaemonSet (the first run builds images)',
      );
      const node = await startRealNodeStack(cp, { dir: cp.dir, log: log.child({ component: 'real-node' }) });
      stops.push(() => node.stop());
      log.info(
        { node: node.node.nodeName, kubeletRoot: node.node.kubeletRoot, nodePluginReadyMs: node.nodePluginReadyMs },
        'real node Ready (kubelet + containerd); node plugin registered with the kubelet',
      );
    } else {
      log.warn(`no real node: pods are admitted and injected, but nothing runs them. ${missing}`);
    }
    return { kubeconfig: cp.adminKubeconfigPath, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The local node has this machine's 2 CPUs: with the default client requests (1 CPU, 1 GiB each) the
 * sidecar and a Mount Pod of the examples would not fit beside each other, and the kubelet would
 * preempt the app for the (node-critical) Mount Pod. The demo class asks for less.
 */
function storageClassForLocalNode(o: KubernetesObject): KubernetesObject {
  if (o.kind !== 'StorageClass') return o;
  const sc = structuredClone(o) as KubernetesObject & { parameters?: Record<string, string> };
  sc.parameters = { ...sc.parameters, [ATTR.cpuRequest]: '100m', [ATTR.memoryRequest]: '128Mi' };
  return sc;
}

/**
 * A volume formatted here with the host's client. Its Secret names only the volume and its metadata:
 * the sidecar's format step has no host mounts, so it could not reach a SQLite file.
 */
function formatDemoVolume(dir: string, stops: (() => Promise<void>)[]): Record<string, string> {
  // The first folder this made (/var/jfsCache itself on a fresh machine) is the one removed on stop.
  const made = mkdirSync(dir, { recursive: true }) ?? dir;
  stops.push(() => Promise.resolve(rmSync(made, { recursive: true, force: true })));
  const metaurl = `sqlite3://${dir}/meta.db`;
  const res = spawnSync(
    ensureBinaries(['juicefs']).juicefs,
    ['format', '--storage=file', `--bucket=${dir}/data/`, '--trash-days=0', metaurl, 'demo'],
    { encoding: 'utf8' },
  );
  if (res.status !== 0)
    throw new Error(`juicefs format of the demo volume failed: ${res.stderr.trim().split('\n').pop()}`);
  return { name: 'demo', metaurl };
}

/** Without a node, the controller formats the volume on first use. */
function demoVolumeForController(dir: string): Record<string, string> {
  mkdirSync(dir, { recursive: true });
  return {
    name: 'demo',
    metaurl: `sqlite3://${dir}/meta.db`,
    storage: 'file',
    bucket: `${dir}/data/`,
    'format-options': 'trash-days=0',
  };
}

export function tryThisHint(kubeconfig: string): string {
  const examples = path.relative(process.cwd(), path.join(PACKAGE_ROOT, 'examples')) || 'examples';
  return [
    `KUBECONFIG=${kubeconfig}`,
    '',
    'Try this in another shell:',
    `  export KUBECONFIG=${kubeconfig}`,
    `  kubectl apply -f ${examples}/`,
    '  kubectl -n demo get pvc data          # Bound: the controller made its directory in the demo volume',
    '  kubectl -n demo get pod app -o yaml   # jfs-mount sidecar injected, PVC volume replaced',
    '',
    '  kubectl -n demo exec app -- sh -c "grep /data /proc/mounts; cat /data/hello.txt"   # fuse.juicefs, its line',
    '  kubectl -n demo logs app -c jfs-mount # the JuiceFS client',
    '',
    `Mount Pod mode (the node plugin DaemonSet on node ${LOCAL_NODE}: a real kubelet with containerd; needs root):`,
    `  kubectl apply -f ${examples}/mount-pod-mode/`,
    '  kubectl -n juicefs-system get pods -l app.kubernetes.io/name=juicefs-mount   # one Mount Pod, a reference per app pod',
    '  kubectl -n demo-mp exec reader -- cat /data/hello.txt   # what the writer wrote, through the shared Mount Pod',
    '',
    'Ctrl-C stops and removes everything.',
  ].join('\n');
}
