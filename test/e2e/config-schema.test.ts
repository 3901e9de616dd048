// A global ConfigMap with one bad mountPodPatch entry on a real control plane (issue 14's must-show): that entry is
// refused with a message naming it, the other entries apply, in the webhook (the admitted pod) and in the node
// service (the Mount Pod it creates, through its shipped RBAC); a Warning Event on the ConfigMap and the /readyz
// detail of both say so. A malformed document then leaves the last good config in force. No kubelet runs: the Mount
// Pod stays Pending, which is enough to read its spec.
import { CoreV1Api, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { CONFIG_MAP_KEY, CONFIG_MAP_NAME, MOUNT_POD_APP_VALUE, MOUNT_POD_LABEL_APP } from '../../src/contract/keys.js';
import { loadKubeConfig } from '../../src/k8s/kubeconfig.js';
import { applyObjects, readManifest } from '../../src/local/components.js';
import { WEBHOOK_NAMESPACE as NS } from '../../src/local/webhook-stack.js';
import { startNodeHealth } from '../../src/node/health.js';
import { MountPodManager } from '../../src/node/mount-pod-manager.js';
import { checkCommand } from '../../src/cli/check-command.js';
import { REFERENCE_WEBHOOK_NAME } from '../../src/offline/check.js';
import { apiMessage, eventually, startControlPlane, startLoneWebhook, staticJuicefsPv } from '../env/harness.js';

t.setTimeout(10 * 60 * 1000);

const APP_NS = 'schema-e2e';
const GOOD_IMAGE = 'registry.example/juicefs/mount:ce-good';

/** Entry 1 is bad (a typo deep in a probe, and an env the admin meant); entries 0 and 2 must still apply. */
const CONFIG_WITH_ONE_BAD_ENTRY = `
mountPodPatch:
  - ceMountImage: ${GOOD_IMAGE}
  - env: [{name: FROM_BAD_ENTRY, value: "1"}]
    livenessProbe:
      exec:
        commnd: [stat, /]
  - env: [{name: FROM_GOOD_ENTRY, value: "1"}]
    labels: {tier: gold}
`;

function getJson(port: number, p: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: p }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(JSON.parse(body) as Record<string, unknown>));
    })
      .on('error', reject)
      .end();
  });
}

t.test('one bad mountPodPatch entry: refused alone, in the webhook and in the node service', async (t) => {
  const cp = await startControlPlane(t, { controllerManager: true });
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  const stack = await startLoneWebhook(t, cp);

  // The volume: a Secret where the webhook reads them, a static PV pre-bound to its claim, a namespace opted in.
  await applyObjects(admin, [
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: APP_NS, labels: { 'juicefs.com/enable-injection': 'true' } },
    },
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'jfs-secret', namespace: NS },
      type: 'Opaque',
      stringData: { name: 'myjfs', metaurl: 'redis://redis.example:6379/1' },
    } as KubernetesObject,
    staticJuicefsPv({
      name: 'schema-pv',
      subPath: 'schema-pv',
      secret: { name: 'jfs-secret', namespace: NS },
      claim: { namespace: APP_NS, name: 'data' },
    }),
    {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: 'data', namespace: APP_NS },
      spec: {
        accessModes: ['ReadWriteMany'],
        storageClassName: '',
        volumeName: 'schema-pv',
        resources: { requests: { storage: '10Gi' } },
      },
    } as KubernetesObject,
  ]);
  const cm = await core.replaceNamespacedConfigMap({
    name: CONFIG_MAP_NAME,
    namespace: NS,
    body: { metadata: { name: CONFIG_MAP_NAME, namespace: NS }, data: { [CONFIG_MAP_KEY]: CONFIG_WITH_ONE_BAD_ENTRY } },
  });
  const version = cm.metadata!.resourceVersion!;

  await t.test("the webhook's /readyz names the entry and field; the rest is in force", async (t) => {
    const body = await eventually(
      async () => {
        const r = await stack.webhook.readyz();
        const config = r.body.config as { resourceVersion?: string; issues?: string[] } | undefined;
        return config?.resourceVersion === version ? config : undefined;
      },
      30_000,
      `the webhook to load ConfigMap version ${version}`,
    );
    t.equal(body.issues?.length, 1, 'one issue');
    t.match(
      body.issues?.[0],
      /^mountPodPatch\[1\]\.livenessProbe\.exec\.commnd: unknown field; mountPodPatch\[1\] is not applied$/,
    );
  });

  await t.test('the admitted pod has entries 0 and 2, not entry 1', async (t) => {
    const pod: V1Pod = {
      metadata: { name: 'app', namespace: APP_NS },
      spec: {
        containers: [
          {
            name: 'app',
            image: 'busybox',
            command: ['sleep', 'infinity'],
            volumeMounts: [{ name: 'data', mountPath: '/data' }],
          },
        ],
        volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
      },
    };
    // The webhook's caches see the PVC and PV a moment after they are created.
    const created = await eventually(
      () =>
        core.createNamespacedPod({ namespace: APP_NS, body: pod }).catch((err: unknown) => {
          if (/not found|unbound|not bound/i.test(apiMessage(err))) return undefined;
          throw err;
        }),
      30_000,
      'the pod to be admitted',
    );
    const sidecar = [...(created.spec!.initContainers ?? []), ...created.spec!.containers].find(
      (c) => c.name === 'jfs-mount',
    );
    t.ok(sidecar, 'injected');
    t.equal(sidecar?.image, GOOD_IMAGE, 'entry 0 applies');
    const env = (sidecar?.env ?? []).map((e) => e.name);
    t.ok(env.includes('FROM_GOOD_ENTRY'), 'entry 2 applies');
    t.notOk(env.includes('FROM_BAD_ENTRY'), 'entry 1 does not');
    t.notOk(sidecar?.livenessProbe, 'nor its probe');
  });

  await t.test('a Warning Event on the ConfigMap names the entry', async (t) => {
    const events = await eventually(
      async () => {
        const list = await core.listNamespacedEvent({
          namespace: NS,
          fieldSelector: `involvedObject.kind=ConfigMap,involvedObject.name=${CONFIG_MAP_NAME},reason=ConfigEntryRefused`,
        });
        return list.items.length ? list.items : undefined;
      },
      30_000,
      'the ConfigEntryRefused event',
    );
    t.match(events[0], {
      type: 'Warning',
      message: /^mountPodPatch\[1\]\.livenessProbe\.exec\.commnd: unknown field/,
      source: { component: 'jfs-sidecar-webhook' },
      involvedObject: { uid: cm.metadata!.uid },
    });
  });

  await t.test('the node service: the Mount Pod has entries 0 and 2; Event and /readyz too', async (t) => {
    // The node's shipped RBAC (ServiceAccount, ClusterRole, Role and bindings; its DaemonSet runs here in-process).
    await applyObjects(
      admin,
      readManifest('node/node.yaml').filter((o) => o.kind !== 'DaemonSet'),
    );
    const nodeKc = loadKubeConfig(await cp.serviceAccountKubeconfig(NS, 'jfs-sidecar-node'));
    const manager = new MountPodManager({
      kubeConfig: nodeKc,
      nodeName: 'node-e2e',
      namespace: NS,
      // No kubelet: the Mount Pod never gets Ready; the publish gives up quickly once the pod exists.
      readyTimeoutMs: 1500,
      log: pino({ level: 'silent' }),
    });
    await manager.start(3_600_000);
    t.teardown(() => manager.stop());
    const health = await startNodeHealth('127.0.0.1:0', () => manager.configStatus);
    t.teardown(() => health.close());

    await t.rejects(
      manager.publish({
        volumeId: 'schema-pv',
        targetPath: path.join(tmpdir(), 'schema-e2e-target'),
        readOnly: false,
        volumeContext: { subPath: 'schema-pv' },
        mountFlags: [],
        secrets: { name: 'myjfs', metaurl: 'redis://redis.example:6379/1' },
      }),
      /not ready/,
      'the publish waits for a kubelet that is not there',
    );
    const pods = await core.listNamespacedPod({
      namespace: NS,
      labelSelector: `${MOUNT_POD_LABEL_APP}=${MOUNT_POD_APP_VALUE}`,
    });
    t.equal(pods.items.length, 1, 'one Mount Pod');
    const mountPod = pods.items[0];
    const client = mountPod.spec!.containers[0];
    t.equal(client.image, GOOD_IMAGE, 'entry 0 applies');
    t.equal(mountPod.metadata!.labels!.tier, 'gold', 'entry 2 applies');
    t.ok(client.env!.some((e) => e.name === 'FROM_GOOD_ENTRY'));
    t.notOk(
      client.env!.some((e) => e.name === 'FROM_BAD_ENTRY'),
      'entry 1 does not',
    );
    t.notOk(client.livenessProbe);

    const ready = await getJson(health.port, '/readyz');
    t.match(ready, {
      status: 'ok',
      config: { resourceVersion: version, issues: [/^mountPodPatch\[1\]\.livenessProbe/] },
    });
    const nodeEvents = await eventually(
      async () => {
        const list = await core.listNamespacedEvent({
          namespace: NS,
          fieldSelector: `involvedObject.name=${CONFIG_MAP_NAME}`,
        });
        const mine = list.items.filter((e) => e.source?.component === 'jfs-sidecar-node/node-e2e');
        return mine.length ? mine : undefined;
      },
      30_000,
      "the node service's event",
    );
    t.match(nodeEvents[0], { reason: 'ConfigEntryRefused', message: /^mountPodPatch\[1\]/ });
  });

  await t.test(
    "check --kubeconfig: the cluster's objects, the bad entry and a left-behind reference webhook",
    async (t) => {
      await applyObjects(admin, [
        {
          apiVersion: 'admissionregistration.k8s.io/v1',
          kind: 'MutatingWebhookConfiguration',
          metadata: { name: REFERENCE_WEBHOOK_NAME },
          webhooks: [],
        } as KubernetesObject,
      ]);
      let out = '';
      const code = await checkCommand(
        { files: [], kubeconfig: cp.adminKubeconfigPath, output: 'json' },
        { readStdin: () => '', stdout: (s) => void (out += s), stderr: () => undefined },
      );
      t.equal(code, 1, 'something is refused');
      const { rows } = JSON.parse(out) as { rows: { object: string; field: string; status: string; note: string }[] };
      const row = (field: string) => rows.find((r) => r.field === field);
      t.match(row('webhooks'), { object: `MutatingWebhookConfiguration ${REFERENCE_WEBHOOK_NAME}`, status: 'refused' });
      t.match(row('mountPodPatch[1].livenessProbe'), { status: 'refused', note: /exec\.commnd: unknown field/ });
      t.match(row('mountPodPatch[1].env'), { status: 'refused', note: /the entry is refused/ });
      t.match(row('mountPodPatch[0].ceMountImage'), { status: 'honoured' });
      t.match(row('spec.csi.volumeAttributes.subPath'), { object: 'PersistentVolume schema-pv', status: 'honoured' });
      t.match(row('data.metaurl'), { object: `Secret ${NS}/jfs-secret`, status: 'honoured' });
    },
  );

  await t.test('a malformed document: the last good config stays in force, and readyz says why', async (t) => {
    const bad = await core.replaceNamespacedConfigMap({
      name: CONFIG_MAP_NAME,
      namespace: NS,
      body: { metadata: { name: CONFIG_MAP_NAME, namespace: NS }, data: { [CONFIG_MAP_KEY]: '- just\n- a list\n' } },
    });
    const status = await eventually(
      async () => {
        const config = (await stack.webhook.readyz()).body.config as { resourceVersion?: string; error?: string };
        return config.error?.includes(bad.metadata!.resourceVersion!) ? config : undefined;
      },
      30_000,
      'the webhook to refuse the malformed version',
    );
    t.equal(status.resourceVersion, version, 'the previous version is still the one in force');
    t.match(status.error, /expected a map at the top level/);
    const pod = await core.createNamespacedPod({
      namespace: APP_NS,
      body: {
        metadata: { name: 'app-2', namespace: APP_NS },
        spec: {
          containers: [{ name: 'app', image: 'busybox', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
          volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
        },
      },
    });
    const sidecar = [...(pod.spec!.initContainers ?? []), ...pod.spec!.containers].find((c) => c.name === 'jfs-mount');
    t.equal(sidecar?.image, GOOD_IMAGE, 'the last good config still applies');
  });
});
