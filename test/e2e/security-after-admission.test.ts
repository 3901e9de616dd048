// Issue 11 class 4, after admission: the webhook sees pod CREATE only, so a
// namespace user (a ServiceAccount bound to the built-in ClusterRole `edit`)
// tries, through a real kube-apiserver, to take over the injected sidecar
// afterwards: set its image, patch its command or env, drop a volume, remove
// the injection label, exec or attach into it. The shipped
// manifests/after-admission.yaml must refuse each; the upgrader identity may
// change the sidecar's image and nothing else. No kubelet runs: an exec the
// API server admits fails afterwards for want of a node, with another message.
import {
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
  type V1Pod,
} from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import t from 'tap';
import { applyObjects } from '../../src/local/components.js';
import { WEBHOOK_NAMESPACE } from '../../src/local/webhook-stack.js';
import { parseManifests } from '../../src/offline/inject-manifests.js';
import { apiMessage, eventually, namespaceUserObjects, startControlPlane, startLoneWebhook } from '../env/harness.js';
import { TESTDATA } from '../golden/golden.js';

t.setTimeout(10 * 60 * 1000);

const NS = 'tenant';
const UPGRADER = 'jfs-sidecar-controller';

function kubeConfigFrom(file: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  return kc;
}

/** A CONNECT as kubectl sends it, minus the stream upgrade: admission first, then the API server looks for the node. */
async function connect(
  kc: KubeConfig,
  pod: string,
  sub: 'exec' | 'attach',
  container?: string,
): Promise<{ status: number; message: string }> {
  const cluster = kc.getCurrentCluster()!;
  const url = new URL(`${cluster.server}/api/v1/namespaces/${NS}/pods/${pod}/${sub}`);
  if (container) url.searchParams.set('container', container);
  url.searchParams.set('stdout', 'true');
  if (sub === 'exec') url.searchParams.set('command', 'true');
  const opts: https.RequestOptions = { method: 'POST', headers: {} };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = https.request(url, opts, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        let message = text;
        try {
          message = (JSON.parse(text) as { message?: string }).message ?? text;
        } catch {
          // not a Status
        }
        resolve({ status: res.statusCode ?? 0, message });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('after admission, the injected sidecar is not the namespace user’s', async (t) => {
  // kube-controller-manager aggregates the built-in `edit` ClusterRole (and makes the default ServiceAccounts).
  const cp = await startControlPlane(t, { controllerManager: true });
  const admin = cp.adminKubeConfig();
  await startLoneWebhook(t, cp);

  // The one-pvc case, its Secret in the webhook's own namespace.
  const objs = parseManifests(
    readFileSync(path.join(TESTDATA, 'one-pvc.yaml'), 'utf8')
      .replaceAll('kube-system', WEBHOOK_NAMESPACE)
      .replaceAll('team-a', NS),
    'one-pvc',
  );
  await applyObjects(
    admin,
    objs.filter((o) => o.kind === 'Namespace'),
  );
  await applyObjects(
    admin,
    objs.filter((o) => !['Namespace', 'Pod'].includes(o.kind!)),
  );
  const namespaceUser = 'user';
  await applyObjects(admin, [
    ...namespaceUserObjects(NS, namespaceUser),
    // The upgrader: the controller's ServiceAccount, given here the pod rights the in-place upgrade will need.
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: UPGRADER, namespace: WEBHOOK_NAMESPACE } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'test-upgrader' },
      rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'patch', 'update'] }],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'test-upgrader' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'test-upgrader' },
      subjects: [{ kind: 'ServiceAccount', name: UPGRADER, namespace: WEBHOOK_NAMESPACE }],
    },
  ] as KubernetesObject[]);
  const userKc = kubeConfigFrom(await cp.serviceAccountKubeconfig(NS, namespaceUser));
  const upgraderKc = kubeConfigFrom(await cp.serviceAccountKubeconfig(WEBHOOK_NAMESPACE, UPGRADER));
  const user = userKc.makeApiClient(CoreV1Api);
  const upgrader = upgraderKc.makeApiClient(CoreV1Api);
  const core = admin.makeApiClient(CoreV1Api);

  /** The user creates the pod; the webhook injects it (its caches may lag the objects just applied). */
  async function createInjected(name: string): Promise<V1Pod> {
    const pod = structuredClone(objs.find((o): o is V1Pod => o.kind === 'Pod')!);
    pod.metadata!.name = name;
    let last = '';
    const created = await eventually(
      () =>
        user.createNamespacedPod({ namespace: NS, body: pod }).catch((err: unknown) => {
          last = apiMessage(err);
          return undefined;
        }),
      20_000,
      `pod ${name} to be admitted`,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last refusal: ${last}`);
    });
    if (created.metadata?.labels?.['done.sidecar.juicefs.com/inject'] !== 'true')
      throw new Error(`${name}: not injected`);
    return created;
  }

  const jsonPatch = (api: CoreV1Api, name: string, ops: object[]) =>
    api.patchNamespacedPod(
      { name, namespace: NS, body: ops },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );

  const pod = await createInjected('app');
  t.equal(pod.metadata?.annotations?.['kubectl.kubernetes.io/default-container'], 'app', 'kubectl defaults to the app');
  const inits = pod.spec!.initContainers!;
  const sidecarAt = inits.findIndex((c) => c.name === 'jfs-mount');
  t.ok(sidecarAt >= 0, 'the sidecar is a native sidecar (init container)');
  const sidecar = `/spec/initContainers/${sidecarAt}`;

  // Every refusal below comes either from the policy or, for fields Kubernetes keeps immutable on any pod, from
  // the API server's own validation (which runs before validating admission); neither lets the change through.
  const refusedBy = /jfs-sidecar \[after-admission\]|pod updates may not change fields/;

  await t.test('a namespace user cannot change the injected containers', async (t) => {
    const attempts: [string, object[]][] = [
      ['set the sidecar image', [{ op: 'replace', path: `${sidecar}/image`, value: 'attacker/image:latest' }]],
      ['patch the sidecar command', [{ op: 'replace', path: `${sidecar}/command`, value: ['sh', '-c', 'id'] }]],
      ['add sidecar env', [{ op: 'add', path: `${sidecar}/env/-`, value: { name: 'LD_PRELOAD', value: '/x.so' } }]],
      ['remove an injected volume', [{ op: 'remove', path: `/spec/volumes/${pod.spec!.volumes!.length - 1}` }]],
      ['remove the injection label', [{ op: 'remove', path: '/metadata/labels/done.sidecar.juicefs.com~1inject' }]],
      [
        'remove the label and set the image at once',
        [
          { op: 'remove', path: '/metadata/labels/done.sidecar.juicefs.com~1inject' },
          { op: 'replace', path: `${sidecar}/image`, value: 'attacker/image:latest' },
        ],
      ],
    ];
    for (const [what, ops] of attempts) {
      const err = await jsonPatch(user, 'app', ops).then(
        () => undefined,
        (e: unknown) => e,
      );
      t.ok(err, `${what}: refused`);
      if (err) t.match(apiMessage(err), refusedBy, `${what}: ${apiMessage(err)}`);
    }
    const stored = await core.readNamespacedPod({ name: 'app', namespace: NS });
    t.same(stored.spec!.initContainers, pod.spec!.initContainers, 'the injected containers are as admitted');
    t.equal(stored.metadata?.labels?.['done.sidecar.juicefs.com/inject'], 'true');
  });

  await t.test('the set-image refusal is the policy’s own', async (t) => {
    const err = await jsonPatch(user, 'app', [
      { op: 'replace', path: `${sidecar}/image`, value: 'attacker/image:latest' },
    ]).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.match(apiMessage(err), /jfs-sidecar \[after-admission\].*jfs-mount/);
  });

  await t.test('the namespace user may still change the app container’s image and metadata', async (t) => {
    const appAt = pod.spec!.containers.findIndex((c) => c.name === 'app');
    const updated = await jsonPatch(user, 'app', [
      { op: 'replace', path: `/spec/containers/${appAt}/image`, value: 'busybox:1.37' },
      { op: 'add', path: '/metadata/labels/tier', value: 'web' },
    ]);
    t.equal(updated.spec!.containers[appAt].image, 'busybox:1.37');
  });

  await t.test('the upgrader may change the sidecar image, and nothing else', async (t) => {
    const upgraded = await jsonPatch(upgrader, 'app', [
      { op: 'replace', path: `${sidecar}/image`, value: 'juicedata/mount:ce-v1.3.2' },
    ]);
    t.equal(upgraded.spec!.initContainers![sidecarAt].image, 'juicedata/mount:ce-v1.3.2', 'image upgraded');
    const appAt = pod.spec!.containers.findIndex((c) => c.name === 'app');
    for (const [what, ops] of [
      ['the sidecar command', [{ op: 'replace', path: `${sidecar}/command`, value: ['sh', '-c', 'id'] }]],
      ['the app image', [{ op: 'replace', path: `/spec/containers/${appAt}/image`, value: 'attacker/image' }]],
      ['the tolerations', [{ op: 'add', path: '/spec/tolerations/-', value: { key: 'x', operator: 'Exists' } }]],
    ] as [string, object[]][]) {
      const err = await jsonPatch(upgrader, 'app', ops).then(
        () => undefined,
        (e: unknown) => e,
      );
      t.ok(err, `the upgrader changing ${what}: refused`);
      if (err) t.match(apiMessage(err), refusedBy, apiMessage(err));
    }
  });

  await t.test(
    'in-place resize (pods/resize) of the sidecar is refused, to the upgrader and the admin too',
    async (t) => {
      const resize = (api: CoreV1Api, list: 'containers' | 'initContainers', name: string, cpu: string) =>
        api.patchNamespacedPodResize(
          {
            name: 'app',
            namespace: NS,
            body: { spec: { [list]: [{ name, resources: { limits: { cpu } } }] } },
          },
          setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
        );
      for (const [who, api] of [
        ['the namespace user', user],
        ['the upgrader', upgrader],
        ['the admin', core],
      ] as [string, CoreV1Api][]) {
        const err = await resize(api, 'initContainers', 'jfs-mount', '3').then(
          () => undefined,
          (e: unknown) => e,
        );
        t.ok(err, `${who} resizing jfs-mount: refused`);
        if (err) t.match(apiMessage(err), /forbidden|Forbidden/, `${who}: ${apiMessage(err)}`);
      }
      const err = await resize(core, 'initContainers', 'jfs-mount', '3').catch((e: unknown) => e);
      t.match(apiMessage(err), /jfs-sidecar \[after-admission\]/, 'the admin is refused by the policy itself');
      // The app's own container stays resizable.
      const resized = await resize(core, 'containers', 'app', '500m');
      t.equal(resized.spec!.containers.find((c) => c.name === 'app')!.resources?.limits?.cpu, '500m');
    },
  );

  await t.test('exec and attach into the injected containers are refused', async (t) => {
    for (const sub of ['exec', 'attach'] as const) {
      const r = await connect(userKc, 'app', sub, 'jfs-mount');
      t.equal(r.status, 403, `${sub} into jfs-mount: 403 (${r.message})`);
      t.match(r.message, /jfs-sidecar \[after-admission\]/);
    }
    // Into the app container the API server admits it, then finds no node to dial: a different error.
    const app = await connect(userKc, 'app', 'exec', 'app');
    t.not(app.status, 403, `exec into app is admitted (${app.status} ${app.message})`);
    t.notMatch(app.message, /after-admission/);
    t.match(app.message, /host|node|connect/i, 'and fails only for want of a node');
  });

  await t.test('classic placement: the default container is the app, the sidecar refused', async (t) => {
    // The classic-placement case's global config, in the webhook's namespace.
    const classicConfig = parseManifests(
      readFileSync(path.join(TESTDATA, 'classic-placement.yaml'), 'utf8').replaceAll('kube-system', WEBHOOK_NAMESPACE),
      'classic',
    ).filter((o) => o.kind === 'ConfigMap');
    await applyObjects(admin, classicConfig);
    // The webhook's ConfigMap cache lags: retry until a pod comes out with classic placement.
    let n = 0;
    const classic = await eventually(
      async () => {
        const p = await createInjected(`classic-${n++}`);
        if (p.spec!.containers.some((c) => c.name === 'jfs-mount')) return p;
        await core.deleteNamespacedPod({ name: p.metadata!.name!, namespace: NS, gracePeriodSeconds: 0 });
        return undefined;
      },
      30_000,
      'a pod injected with classic placement',
    );
    const name = classic.metadata!.name!;
    t.equal(classic.spec!.containers[0].name, 'jfs-mount', 'the sidecar comes first');
    t.equal(classic.metadata?.annotations?.['kubectl.kubernetes.io/default-container'], 'app');
    const r = await connect(userKc, name, 'exec', 'jfs-mount');
    t.equal(r.status, 403, r.message);
    // With no container named the API server itself picks none among several (kubectl sends a name).
    const unnamed = await connect(userKc, name, 'exec');
    t.not(unnamed.status, 403, `${unnamed.status} ${unnamed.message}`);
    t.match(unnamed.message, /container name must be specified/);
  });
  await t.test('without the upgraders ConfigMap, updates of injected pods fail closed', async (t) => {
    await core.deleteNamespacedConfigMap({ name: 'jfs-sidecar-upgraders', namespace: WEBHOOK_NAMESPACE });
    const appAt = pod.spec!.containers.findIndex((c) => c.name === 'app');
    // The API server's parameter informer sees the deletion shortly.
    const message = await eventually(
      () =>
        jsonPatch(user, 'app', [
          { op: 'replace', path: `/spec/containers/${appAt}/image`, value: 'busybox:1.36' },
        ]).then(
          () => undefined,
          (e: unknown) => apiMessage(e),
        ),
      20_000,
      'an update to be refused',
    );
    t.match(message, /jfs-sidecar-injected-pods/, message);
  });
});
