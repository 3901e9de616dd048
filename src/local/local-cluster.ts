// `jfs-sidecar local` (npm start): a throwaway control plane on loopback with
// the project's components registered through its own manifests. It never
// touches a cluster of the user's own.
import type { KubernetesObject } from '@kubernetes/client-node';
import path from 'node:path';
import type { Logger } from 'pino';
import { applyObjects, loopbackWebhookConfiguration, readManifest, WebhookProcess } from './components.js';
import { ControlPlane, freePort } from './control-plane.js';
import { PROJECT_ROOT } from './project-root.js';

export const WEBHOOK_NAMESPACE = 'juicefs-system';

export interface LocalCluster {
  kubeconfig: string;
  stop(): Promise<void>;
}

export async function startLocalCluster(log: Logger): Promise<LocalCluster> {
  log.info('starting etcd, kube-apiserver and kube-controller-manager on loopback (the first run builds them: minutes)');
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
    '  kubectl -n demo get pod app -o yaml   # jfs-mount sidecar injected, PVC volume replaced',
    '',
    'Ctrl-C stops and removes everything.',
  ].join('\n');
}
