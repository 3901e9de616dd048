// `jfs-sidecar local` (npm start): a throwaway control plane on loopback with
// the project's components registered through its own manifests. It never
// touches a cluster of the user's own.
import type { KubernetesObject } from '@kubernetes/client-node';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { SYSTEM_NAMESPACE } from '../contract/keys.js';
import { applyObjects, loopbackWebhookConfiguration, readManifest, WebhookProcess } from './components.js';
import { ControlPlane, ensureBinaries, freePort } from './control-plane.js';
import { startNodeStack } from './node-stack.js';
import { startControllerStack } from './controller-stack.js';
import { PROJECT_ROOT } from './project-root.js';

export const WEBHOOK_NAMESPACE = SYSTEM_NAMESPACE;
/** The one node of the local cluster, played by the kubelet stand-in. */
export const LOCAL_NODE = 'jfs-local-node';

export interface LocalCluster {
  kubeconfig: string;
  stop(): Promise<void>;
}

export async function startLocalCluster(log: Logger): Promise<LocalCluster> {
  log.info(
    'starting etcd, kube-apiserver and kube-controller-manager on loopback (the first run builds them: minutes)',
  );
  const cp = await ControlPlane.start({ controllerManager: true });
  const stops: (() => Promise<void>)[] = [() => cp.stop()];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch((err) => log.warn({ err: (err as Error).message }, 'stop failed'));
  };
  try {
    const admin = cp.adminKubeConfig();
    await applyObjects(admin, [
      ...readManifest('namespace.yaml'),
      ...readManifest('rbac.yaml'),
      ...readManifest('config.yaml'),
      ...readManifest('csidriver.yaml'),
      ...readManifest('storageclass-example.yaml'),
    ]);
    const port = await freePort();
    await applyObjects(admin, [loopbackWebhookConfiguration(port) as KubernetesObject]);
    const webhook = await WebhookProcess.start({
      kubeconfig: await cp.serviceAccountKubeconfig(WEBHOOK_NAMESPACE, 'jfs-sidecar-webhook'),
      namespace: WEBHOOK_NAMESPACE,
      secretNamespaces: [WEBHOOK_NAMESPACE],
      port,
      logFile: path.join(cp.dir, 'webhook.log'),
    });
    stops.push(() => webhook.stop());
    log.info({ webhookPort: port, logs: cp.dir }, 'webhook registered');
    // A demo JuiceFS volume (SQLite metadata, local file storage) in the cluster's folder; the
    // controller formats it on first use. Its Secret is what the example StorageClass names.
    const vol = path.join(cp.dir, 'demo-volume');
    mkdirSync(vol, { recursive: true });
    await applyObjects(admin, [
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'juicefs-secret', namespace: WEBHOOK_NAMESPACE },
        stringData: {
          name: 'demo',
          metaurl: `sqlite3://${vol}/meta.db`,
          storage: 'file',
          bucket: `${vol}/data/`,
          'format-options': 'trash-days=0',
        },
      } as KubernetesObject,
    ]);
    const controller = await startControllerStack(cp, { dir: cp.dir, secretNamespaces: [WEBHOOK_NAMESPACE] });
    stops.push(() => controller.stop());
    log.info({ socket: controller.socket }, 'controller and csi-provisioner running');
    if (process.getuid?.() === 0) {
      const node = await startNodeStack(cp, {
        nodeName: LOCAL_NODE,
        dir: cp.dir,
        juicefsBinary: ensureBinaries(['juicefs']).juicefs,
        playAppPods: true,
        log: log.child({ component: 'kubelet-stand-in' }),
      });
      stops.push(() => node.stop());
      log.info(
        { node: LOCAL_NODE, socket: node.socket, kubeletRoot: node.standIn.kubeletRoot },
        'node service running; a KUBELET STAND-IN plays kubelet for this node (Mount Pods run as local processes, app containers are not run)',
      );
    } else {
      log.warn(
        'not root: Mount Pod mode (node service + kubelet stand-in) is left out, FUSE and bind mounts need root',
      );
    }
    return { kubeconfig: cp.adminKubeconfigPath, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

export function tryThisHint(kubeconfig: string): string {
  const examples = path.relative(process.cwd(), path.join(PROJECT_ROOT, 'examples')) || 'examples';
  return [
    `KUBECONFIG=${kubeconfig}`,
    '',
    'Try this in another shell:',
    `  export KUBECONFIG=${kubeconfig}`,
    `  kubectl apply -f ${examples}/`,
    '  kubectl -n demo get pvc data          # Bound: the controller made its directory in the demo volume',
    '  kubectl -n demo get pod app -o yaml   # jfs-mount sidecar injected, PVC volume replaced',
    '',
    'Mount Pod mode (node service + kubelet stand-in for node jfs-local-node; needs root):',
    `  kubectl apply -f ${examples}/mount-pod-mode/`,
    '  kubectl -n juicefs-system get pods -l app.kubernetes.io/name=juicefs-mount   # one Mount Pod, a reference per app pod',
    '  kubectl -n demo-mp get pods           # Ready: the stand-in published their volumes (containers are not run)',
    '',
    'Ctrl-C stops and removes everything.',
  ].join('\n');
}
