// Issue 11, classes 6–8, through a real kube-apiserver as a namespace user (a
// ServiceAccount of the namespace bound to the built-in ClusterRole `edit`):
// what the user writes (a pod under hostNetwork that takes the metrics port, a
// PVC annotation a pathPattern puts into the subdirectory) and what the admin's
// Secret gives the privileged client (`envs`) end in a clear denial from the
// webhook, never in an API-server rejection or a sidecar that expands $(VAR).
import { CoreV1Api, KubeConfig, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { applyObjects, readManifest } from '../../src/local/components.js';
import { WEBHOOK_NAMESPACE } from '../../src/local/webhook-stack.js';
import { CONFIG_MAP_KEY, CONFIG_MAP_NAME } from '../../src/contract/keys.js';
import {
  eventually,
  namespaceUserObjects,
  startControlPlane,
  startLoneWebhook,
  staticJuicefsPv,
} from '../env/harness.js';

t.setTimeout(10 * 60 * 1000);

const NS = 'tenant';

function apiError(err: unknown): { code?: number; message: string } {
  const e = err as { code?: number; body?: unknown };
  let message = (err as Error).message;
  if (typeof e.body === 'string') {
    try {
      message = (JSON.parse(e.body) as { message?: string }).message ?? e.body;
    } catch {
      message = e.body;
    }
  }
  return { code: e.code, message };
}

t.test('values a namespace user or the data controls end in a clear denial', async (t) => {
  const cp = await startControlPlane(t, { controllerManager: true });
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  await applyObjects(admin, readManifest('csidriver.yaml'));
  const stack = await startLoneWebhook(t, cp);

  const secret = (name: string, envs: string) =>
    ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: WEBHOOK_NAMESPACE },
      stringData: { name: 'myjfs', metaurl: 'redis://:pass@redis.example:6379/1', envs },
    }) as KubernetesObject;
  const pv = (name: string, secretName: string) =>
    staticJuicefsPv({
      name,
      subPath: name,
      claim: { namespace: NS, name },
      secret: { name: secretName, namespace: WEBHOOK_NAMESPACE },
    });
  // The admin's objects: two static PVs (one whose Secret's envs sets the loader), a pathPattern class.
  await applyObjects(admin, [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'juicefs.com/enable-injection': 'true' } } },
    secret('plain-secret', '{TZ: UTC}'),
    secret('loader-secret', '{TZ: UTC, LD_PRELOAD: /var/jfsCache/x.so}'),
    pv('plain', 'plain-secret'),
    pv('loader', 'loader-secret'),
    {
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name: 'juicefs-pattern' },
      provisioner: 'csi.juicefs.com',
      volumeBindingMode: 'WaitForFirstConsumer',
      parameters: {
        'csi.storage.k8s.io/provisioner-secret-name': 'plain-secret',
        'csi.storage.k8s.io/provisioner-secret-namespace': WEBHOOK_NAMESPACE,
        'csi.storage.k8s.io/node-publish-secret-name': 'plain-secret',
        'csi.storage.k8s.io/node-publish-secret-namespace': WEBHOOK_NAMESPACE,
        pathPattern: '${.PVC.namespace}/${.PVC.annotations.example.com/dir}',
      },
    } as KubernetesObject,
    ...namespaceUserObjects(NS),
  ]);

  // From here on, everything is written by the namespace user.
  const userKc = new KubeConfig();
  userKc.loadFromFile(await cp.serviceAccountKubeconfig(NS, 'user'));
  const user = userKc.makeApiClient(CoreV1Api);

  const claim = (name: string, extra: Record<string, unknown> = {}) =>
    user.createNamespacedPersistentVolumeClaim({
      namespace: NS,
      body: {
        metadata: { name, ...extra },
        spec: {
          accessModes: ['ReadWriteMany'],
          storageClassName: name === 'patterned' ? 'juicefs-pattern' : '',
          ...(name === 'patterned' ? {} : { volumeName: name }),
          resources: { requests: { storage: '10Gi' } },
        },
      },
    });
  await claim('plain');
  await claim('loader');
  await claim('patterned', { annotations: { 'example.com/dir': '$(JFS_METAURL)' } });

  const podFor = (name: string, claimName: string, spec: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod => ({
    metadata: { name },
    spec: {
      containers: [
        {
          name: 'app',
          image: 'busybox',
          command: ['sleep', 'infinity'],
          volumeMounts: [{ name: 'data', mountPath: '/data' }],
        },
      ],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName } }],
      ...spec,
    },
  });

  /** The user's pod creation; retried while the webhook's caches have not seen the objects just made. */
  async function refusal(pod: V1Pod): Promise<{ code?: number; message: string } | undefined> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        await user.createNamespacedPod({ namespace: NS, body: pod });
        return undefined;
      } catch (err) {
        const e = apiError(err);
        if (!/not found/.test(e.message) || Date.now() > deadline) return e;
        await sleep(200);
      }
    }
  }

  await t.test('a plain pod of the user is injected (the setup works)', async (t) => {
    t.equal(await refusal(podFor('ok', 'plain')), undefined);
    const pod = await user.readNamespacedPod({ name: 'ok', namespace: NS });
    t.ok(pod.spec?.initContainers?.some((c) => c.name === 'jfs-mount'));
  });

  await t.test('a pod that takes the metrics port under hostNetwork is denied by the webhook', async (t) => {
    const pod = podFor('host-port', 'plain', { hostNetwork: true });
    pod.spec!.containers[0].ports = [{ containerPort: 9567 }];
    const e = await refusal(pod);
    t.ok(e, 'refused');
    t.match(e?.message, /admission webhook .* denied the request/, 'by the webhook, not by validation');
    t.match(e?.message, /container "app" declares port 9567/, 'saying which container and port');
    t.notMatch(e?.message, /Duplicate value/, 'not the API server’s duplicate host port');
  });

  await t.test('with classic placement too (where the API server would refuse the duplicate host port)', async (t) => {
    await applyObjects(admin, [
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: CONFIG_MAP_NAME, namespace: WEBHOOK_NAMESPACE },
        data: { [CONFIG_MAP_KEY]: 'enableNativeSidecar: false\n' },
      } as KubernetesObject,
    ]);
    const stored = await core.readNamespacedConfigMap({ name: CONFIG_MAP_NAME, namespace: WEBHOOK_NAMESPACE });
    await eventually(
      async () =>
        ((await stack.webhook.readyz()).body.config as { resourceVersion?: string } | undefined)?.resourceVersion ===
        stored.metadata!.resourceVersion,
      30_000,
      'the webhook to load the classic-placement config',
    );
    const pod = podFor('host-port-classic', 'plain', { hostNetwork: true });
    pod.spec!.containers[0].ports = [{ containerPort: 9567 }];
    const e = await refusal(pod);
    t.match(e?.message, /admission webhook .* denied the request/, 'by the webhook, not by validation');
    t.notMatch(e?.message, /Duplicate value/, 'not the API server’s duplicate host port');
  });

  await t.test('a Secret whose envs set the loader is denied, naming the key and the variable', async (t) => {
    const e = await refusal(podFor('loader', 'loader'));
    t.match(e?.message, /denied the request/);
    t.match(e?.message, /key "envs": variable "LD_PRELOAD" may not be set/);
  });

  await t.test('a PVC annotation that would expand $(JFS_METAURL) into the subdirectory is denied', async (t) => {
    const e = await refusal(podFor('pattern', 'patterned'));
    t.match(e?.message, /denied the request/);
    // Refused before the subdirectory rule sees it: a PVC value may not bring "$(" (or ",", "=", ":") into a template.
    t.match(e?.message, /"\$\(JFS_METAURL\)", which holds characters a PVC.s value may not bring/);
  });
});
