// Issue 11, classes 1–3, as a namespace user would try them: a ServiceAccount
// of namespace "mallory" bound to the built-in ClusterRole `edit`, against the
// webhook and the controller run as the shipped manifests run them, on a real
// kube-apiserver (kube-controller-manager binds PVs; no kubelet, so pods stay
// Pending, and the API server still takes ephemeral container updates).
import {
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
  type V1EnvVar,
  type V1EphemeralContainer,
  type V1Pod,
} from '@kubernetes/client-node';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { POD_UID_ENV } from '../../src/contract/keys.js';
import { applyObjects, readManifest } from '../../src/local/components.js';
import { startControllerStack } from '../../src/local/controller-stack.js';
import { startWebhookStack } from '../../src/local/webhook-stack.js';
import { apiMessage, eventually, namespaceUserObjects, startControlPlane, staticJuicefsPv } from '../env/harness.js';

const SYSTEM = 'juicefs-system';
const VICTIM = 'victim';
const ATTACKER = 'mallory';

t.setTimeout(15 * 60 * 1000);

async function refusal(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (err: unknown) => apiMessage(err),
  );
}

const staticPv = (name: string, subPath: string, claim: { namespace: string; name: string }): KubernetesObject =>
  staticJuicefsPv({
    name,
    subPath,
    claim,
    fsType: 'juicefs',
    secret: { name: `${subPath}-secret`, namespace: SYSTEM },
  });

const pvc = (namespace: string, name: string, volumeName: string): KubernetesObject =>
  ({
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name, namespace },
    spec: {
      accessModes: ['ReadWriteMany'],
      storageClassName: '',
      volumeName,
      resources: { requests: { storage: '10Gi' } },
    },
  }) as KubernetesObject;

const source = (name: string, metaurl: string): KubernetesObject =>
  ({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: SYSTEM },
    stringData: { name: 'jfs', metaurl, storage: 'file', bucket: '/var/jfs' },
  }) as KubernetesObject;

const appPod = (name: string, claimName: string, env?: V1EnvVar[]) =>
  ({
    metadata: { name },
    spec: {
      containers: [
        {
          name: 'app',
          image: 'busybox',
          command: ['sleep', 'infinity'],
          env,
          volumeMounts: [{ name: 'data', mountPath: '/data' }],
        },
      ],
      volumes: [
        { name: 'data', persistentVolumeClaim: { claimName } },
        { name: 'scratch', emptyDir: {} },
      ],
    },
  }) as V1Pod;

t.test('a namespace user against other tenants', async (t) => {
  const cp = await startControlPlane(t, { controllerManager: true });
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-sec-tenant-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  // The admin's side: two opted-in namespaces, each with its volume's Secret and a static PV pre-bound to its PVC.
  await applyObjects(admin, [
    ...readManifest('namespace.yaml'),
    ...[VICTIM, ATTACKER].map((name) => ({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name, labels: { 'juicefs.com/enable-injection': 'true' } },
    })),
    source('victim-data-secret', 'redis://victim-only:6379/1'),
    source('mallory-data-secret', 'redis://mallory:6379/2'),
    staticPv('victim-pv', 'victim-data', { namespace: VICTIM, name: 'data' }),
    staticPv('mallory-pv', 'mallory-data', { namespace: ATTACKER, name: 'mine' }),
    pvc(VICTIM, 'data', 'victim-pv'),
    // The namespace user: a ServiceAccount of their namespace with the built-in `edit` role there.
    ...namespaceUserObjects(ATTACKER),
    // `edit` does not grant pods/ephemeralcontainers (checked below); clusters that allow kubectl debug add it.
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'debugger', namespace: ATTACKER },
      rules: [{ apiGroups: [''], resources: ['pods/ephemeralcontainers'], verbs: ['get', 'patch', 'update'] }],
    } as KubernetesObject,
  ]);
  const userKc = new KubeConfig();
  userKc.loadFromFile(await cp.serviceAccountKubeconfig(ATTACKER, 'user'));
  const user = userKc.makeApiClient(CoreV1Api);

  const controller = await startControllerStack(cp, { dir, secretNamespaces: [SYSTEM] });
  t.teardown(async () => {
    if (!t.passing()) t.comment(`controller log:\n${controller.controller.log(40)}`);
    await controller.stop();
  });
  const webhook = await startWebhookStack(cp, { dir, secretNamespaces: [SYSTEM] });
  t.teardown(async () => {
    if (!t.passing())
      t.comment(
        `webhook log:\n${readFileSync(path.join(dir, 'webhook.log'), 'utf8').split('\n').slice(-40).join('\n')}`,
      );
    await webhook.stop();
  });

  const bound = (namespace: string, name: string) =>
    eventually(
      async () =>
        (await core.readNamespacedPersistentVolumeClaim({ name, namespace })).status?.phase === 'Bound' || undefined,
      60_000,
      `PVC ${namespace}/${name} Bound`,
    );
  const copyOf = (namespace: string, claim: string) =>
    core.readNamespacedSecret({ name: `juicefs-${claim}-secret`, namespace }).then(
      (s) => s,
      () => undefined,
    );
  await bound(VICTIM, 'data');
  await eventually(() => copyOf(VICTIM, 'data'), 30_000, "the victim's Secret copy");

  /** Creates a pod as the user, retrying while the webhook's caches have not seen objects just created. */
  async function createAsUser(pod: V1Pod): Promise<V1Pod> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        return await user.createNamespacedPod({ namespace: ATTACKER, body: pod });
      } catch (err) {
        if (!/not-found/.test(apiMessage(err)) || Date.now() > deadline) throw err;
        await sleep(200);
      }
    }
  }

  await t.test("class 1: a PVC naming another namespace's PV gets neither its data nor its Secret", async (t) => {
    await user.createNamespacedPersistentVolumeClaim({
      namespace: ATTACKER,
      body: pvc(ATTACKER, 'stolen', 'victim-pv'),
    });
    // A PVC of the user's own, after the hostile one: once its copy exists, the controller has had the hostile one.
    await applyObjects(admin, [pvc(ATTACKER, 'mine', 'mallory-pv')]);
    await bound(ATTACKER, 'mine');
    await eventually(() => copyOf(ATTACKER, 'mine'), 30_000, "the user's own Secret copy");
    await sleep(1000);
    t.notOk(await copyOf(ATTACKER, 'stolen'), "no copy of the victim's Secret in the user's namespace");
    const read = await refusal(user.readNamespacedSecret({ name: 'juicefs-stolen-secret', namespace: ATTACKER }));
    t.match(read, /not found/, 'the user cannot read one either');

    const denied = await refusal(createAsUser(appPod('thief', 'stolen')));
    t.match(denied, /\[pv-not-bound\]/, 'the pod is denied');
    t.match(
      denied,
      /PersistentVolume victim-pv is bound to another claim, not to PersistentVolumeClaim mallory\/stolen/,
    );
    const pvcNow = await core.readNamespacedPersistentVolumeClaim({ name: 'stolen', namespace: ATTACKER });
    t.not(pvcNow.status?.phase, 'Bound', 'and Kubernetes never binds that PVC');
  });

  let injected: V1Pod | undefined;
  await t.test('class 2: the user cannot define the pod UID variable behind subPathExpr', async (t) => {
    const victimUid = '11111111-2222-4333-8444-555555555555';
    injected = await createAsUser(
      appPod('app', 'mine', [
        { name: POD_UID_ENV, value: victimUid },
        { name: 'OTHER', value: 'kept' },
        { name: POD_UID_ENV, value: victimUid },
      ]),
    );
    const stored = await user.readNamespacedPod({ name: 'app', namespace: ATTACKER });
    const app = stored.spec!.containers.find((c) => c.name === 'app')!;
    t.same(
      app.env?.filter((e) => e.name === POD_UID_ENV),
      [{ name: POD_UID_ENV, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.uid' } } }],
      "one definition of the variable, the pod's own uid",
    );
    t.same(
      app.env?.map((e) => e.name),
      [POD_UID_ENV, 'OTHER'],
      'the rest of the env stays',
    );
    t.equal(app.volumeMounts?.find((m) => m.name === 'data')?.subPathExpr, `$(${POD_UID_ENV})/data`);
  });

  await t.test('class 3: an ephemeral container may not mount what the injector added', async (t) => {
    t.ok(injected, 'the injected pod of class 2');
    const pod = await user.readNamespacedPod({ name: 'app', namespace: ATTACKER });
    // As kubectl debug does it: a strategic-merge PATCH of the pods/ephemeralcontainers subresource.
    const addEphemeral = (ec: V1EphemeralContainer) =>
      user.patchNamespacedPodEphemeralcontainers(
        { name: 'app', namespace: ATTACKER, body: { spec: { ephemeralContainers: [ec] } } },
        setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
      );
    const debug = (name: string, extra: Partial<V1EphemeralContainer>): V1EphemeralContainer => ({
      name,
      image: 'busybox',
      command: ['sh'],
      stdin: true,
      tty: true,
      ...extra,
    });
    const hostPaths = new Set((pod.spec!.volumes ?? []).filter((v) => v.hostPath).map((v) => v.name));
    const injectedVolumes = (pod.spec!.initContainers ?? [])
      .filter((c) => c.name === 'jfs-mount')
      .flatMap((c) => (c.volumeMounts ?? []).map((m) => m.name))
      .filter((name) => hostPaths.has(name));
    t.same(injectedVolumes, ['data', 'jfs-cache-0'], "the sidecar's host paths: the mount root and the cache");
    const withEditOnly = await refusal(
      addEphemeral(debug('edit-only', { volumeMounts: [{ name: 'data', mountPath: '/all' }] })),
    );
    t.match(withEditOnly, /cannot patch resource "pods\/ephemeralcontainers"/, '`edit` alone cannot add one');
    await applyObjects(admin, [
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'user-debugger', namespace: ATTACKER },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'debugger' },
        subjects: [{ kind: 'ServiceAccount', name: 'user', namespace: ATTACKER }],
      } as KubernetesObject,
    ]);
    // kubectl debug as such still works: a container of the user's own (once the API server has seen the binding).
    await eventually(
      async () => (await refusal(addEphemeral(debug('shell', { targetContainerName: 'app' })))) === undefined,
      20_000,
      'a plain debug container to be accepted',
    );
    for (const volume of injectedVolumes) {
      const denied = await refusal(
        addEphemeral(debug(`peek-${volume}`, { volumeMounts: [{ name: volume, mountPath: '/all' }] })),
      );
      t.match(denied, /\[ephemeral-container\]/, `mounting "${volume}" is denied`);
      t.match(denied, new RegExp(`may not mount volume "${volume}"`));
    }
    const targeted = await refusal(addEphemeral(debug('ptrace', { targetContainerName: 'jfs-mount' })));
    t.match(
      targeted,
      /\[ephemeral-container\].*may not target jfs-mount/,
      "targeting the client's processes is denied",
    );
    // Why there is no per-pod subPathExpr rule for them: the API server forbids subPath in ephemeral containers.
    const subPath = await refusal(
      addEphemeral(debug('sub', { volumeMounts: [{ name: 'scratch', mountPath: '/s', subPath: 'x' }] })),
    );
    t.match(subPath, /subPath.*cannot be set for an Ephemeral Container/, 'the API server refuses subPath there');
    // And one mounting a volume of the user's own.
    t.equal(
      await refusal(addEphemeral(debug('scratch', { volumeMounts: [{ name: 'scratch', mountPath: '/s' }] }))),
      undefined,
      "mounting the pod's own volume allowed",
    );
    const after = await core.readNamespacedPod({ name: 'app', namespace: ATTACKER });
    t.same(
      (after.spec!.ephemeralContainers ?? []).map((c) => c.name).sort(),
      ['scratch', 'shell'],
      'only the allowed ones were added',
    );
  });
});
