// Issue 11 class 5 (ADR 0010) on a real control plane: the controller and the webhook run as the shipped manifests
// run them, and the attacker is a namespace user (a ServiceAccount of the namespace bound to the built-in ClusterRole
// `edit`: Secrets, PVCs and pods of that namespace, nothing else). The per-PVC Secret copy is never one the user
// made, an edited copy is restored at once, and only JuiceFS Secrets of the listed namespaces are ever copied.
import {
  CoreV1Api,
  KubeConfig,
  type KubernetesObject,
  type V1PersistentVolume,
  type V1Pod,
  type V1Secret,
} from '@kubernetes/client-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { SECRET_COPY_LABEL, SECRET_COPY_SEAL_ANNOTATION } from '../../src/contract/keys.js';
import { applyObjects, readManifest } from '../../src/local/components.js';
import { startControllerStack } from '../../src/local/controller-stack.js';
import { startWebhookStack } from '../../src/local/webhook-stack.js';
import { apiMessage, eventually, namespaceUserObjects, startControlPlane } from '../env/harness.js';

const NS = 'tenant';
const SYSTEM = 'juicefs-system';
const ADMIN_METAURL = 'redis://:admin-password@redis.example:6379/1';
const USER_METAURL = 'redis://attacker.example:6379/1';

t.setTimeout(15 * 60 * 1000);

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString();

t.test('a namespace user cannot choose, keep or widen the per-PVC Secret copy', async (t) => {
  const cp = await startControlPlane(t, { controllerManager: true });
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-sec-creds-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  const secret = (namespace: string, name: string, data: Record<string, string>, type = 'Opaque') =>
    ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace }, type, stringData: data }) as KubernetesObject;
  await applyObjects(admin, [
    ...readManifest('namespace.yaml'),
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'juicefs.com/enable-injection': 'true' } } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' } },
    secret(SYSTEM, 'jfs-admin', { name: 'vol', metaurl: ADMIN_METAURL, storage: 'file', bucket: '/b/' }),
    secret(SYSTEM, 'not-jfs', { username: 'db', password: 'db-password' }),
    // A JuiceFS Secret, but in a namespace the admin did not list with --secret-namespace.
    secret('other', 'creds', { name: 'vol', metaurl: 'redis://:other-password@r/2' }),
    ...namespaceUserObjects(NS),
  ]);
  const webhook = await startWebhookStack(cp, { dir, secretNamespaces: [SYSTEM] });
  const controller = await startControllerStack(cp, { dir, secretNamespaces: [SYSTEM] });
  t.teardown(async () => {
    if (!t.passing()) t.comment(`controller log:\n${controller.controller.log(60)}`);
    await controller.stop();
    await webhook.stop();
  });
  const userKc = new KubeConfig();
  userKc.loadFromFile(await cp.serviceAccountKubeconfig(NS, 'user'));
  const user = userKc.makeApiClient(CoreV1Api);

  /** A static PV of the admin, reserved for claim `claim` of the tenant, with the Secret it names. */
  const pv = (claim: string, ref: { name: string; namespace: string }): V1PersistentVolume => ({
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name: `pv-${claim}` },
    spec: {
      capacity: { storage: '1Gi' },
      accessModes: ['ReadWriteMany'],
      persistentVolumeReclaimPolicy: 'Retain',
      storageClassName: '',
      claimRef: { namespace: NS, name: claim },
      csi: { driver: 'csi.juicefs.com', volumeHandle: `pv-${claim}`, nodePublishSecretRef: ref },
    },
  });
  const claim = (name: string, annotations?: Record<string, string>) =>
    user.createNamespacedPersistentVolumeClaim({
      namespace: NS,
      body: {
        metadata: { name, annotations },
        spec: {
          accessModes: ['ReadWriteMany'],
          storageClassName: '',
          volumeName: `pv-${name}`,
          resources: { requests: { storage: '1Gi' } },
        },
      },
    });
  const podFor = (name: string): V1Pod => ({
    metadata: { name: `app-${name}` },
    spec: {
      containers: [{ name: 'app', image: 'busybox', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName: name } }],
    },
  });
  /** The user's pod creation: the pod, or the webhook's refusal. */
  const tryPod = (name: string): Promise<{ pod?: V1Pod; denied?: string }> =>
    user.createNamespacedPod({ namespace: NS, body: podFor(name) }).then(
      (pod) => ({ pod }),
      (err: unknown) => ({ denied: apiMessage(err) }),
    );
  const copyRef = (pod: V1Pod) =>
    pod.spec?.initContainers?.find((c) => c.name === 'jfs-mount')?.env?.find((e) => e.name === 'JFS_METAURL')?.valueFrom
      ?.secretKeyRef;
  const readCopy = (name: string) =>
    core.readNamespacedSecret({ name: `juicefs-${name}-secret`, namespace: NS }).catch(() => undefined);
  const restored = (name: string, notUid?: string) =>
    eventually(
      async () => {
        const s = await readCopy(name);
        return s &&
          unb64(s.data?.metaurl) === ADMIN_METAURL &&
          s.metadata?.labels?.[SECRET_COPY_LABEL] !== undefined &&
          s.metadata.uid !== notUid
          ? s
          : undefined;
      },
      5_000,
      `copy juicefs-${name}-secret holding the admin's metaurl again`,
    );

  await applyObjects(admin, [
    pv('pre', { name: 'jfs-admin', namespace: SYSTEM }),
    pv('quick', { name: 'jfs-admin', namespace: SYSTEM }),
    pv('forged', { name: 'jfs-admin', namespace: SYSTEM }),
    pv('cert', { name: 'jfs-sidecar-webhook-certs', namespace: SYSTEM }),
    pv('notjfs', { name: 'not-jfs', namespace: SYSTEM }),
    pv('unlisted', { name: 'creds', namespace: 'other' }),
  ] as KubernetesObject[]);

  await t.test('a PVC and its pod created back to back: admission waits for the seal', async (t) => {
    await claim('quick');
    // Only the webhook's own PVC cache may lag (that denial is pvc-not-found); an unsealed PVC is waited for.
    const r = await eventually(
      async () => {
        const r = await tryPod('quick');
        return r.denied?.includes('not found') ? undefined : r;
      },
      10_000,
      'the PVC in the webhook cache',
    );
    t.ok(r.pod, `admitted without a retry by the user (${r.denied ?? 'ok'})`);
    t.same(r.pod && copyRef(r.pod), { name: 'juicefs-quick-secret', key: 'metaurl' });
  });

  await t.test('a copy the user created first is neither adopted nor given to a pod', async (t) => {
    const hostile: V1Secret = {
      metadata: { name: 'juicefs-pre-secret' },
      stringData: { name: 'vol', metaurl: USER_METAURL, 'envs.LD_PRELOAD': '/data/evil.so' },
    };
    const planted = await user.createNamespacedSecret({ namespace: NS, body: hostile });
    await claim('pre');
    const event = await eventually(
      async () =>
        (await core.listNamespacedEvent({ namespace: NS })).items.find(
          (e) => e.involvedObject.name === 'pre' && e.reason === 'SecretCopyConflict',
        ),
      20_000,
      'a Warning Event on the PVC',
    );
    t.equal(event.type, 'Warning');
    const r = await tryPod('pre');
    t.notOk(r.pod, 'the pod is not admitted while the name holds a Secret the controller did not make');
    t.match(r.denied, /has not sealed its copy juicefs-pre-secret/);
    const still = await core.readNamespacedSecret({ name: 'juicefs-pre-secret', namespace: NS });
    t.equal(still.metadata?.uid, planted.metadata?.uid, 'not replaced');
    t.equal(unb64(still.data?.metaurl), USER_METAURL, 'not overwritten');
    t.notOk(still.metadata?.labels?.[SECRET_COPY_LABEL], 'not adopted (no label)');
    t.notOk(still.metadata?.ownerReferences?.length, 'not adopted (no owner)');

    // The user gives up the name: the controller's own copy takes it, and only then is the pod admitted.
    await user.deleteNamespacedSecret({ name: 'juicefs-pre-secret', namespace: NS });
    const copy = await eventually(() => readCopy('pre'), 40_000, "the controller's copy");
    t.not(copy.metadata?.uid, planted.metadata?.uid);
    t.equal(unb64(copy.data?.metaurl), ADMIN_METAURL);
    t.notOk(copy.data?.['envs.LD_PRELOAD'], "none of the user's keys");
    const admitted = await eventually(async () => (await tryPod('pre')).pod, 10_000, 'the pod admitted once sealed');
    t.same(copyRef(admitted), { name: 'juicefs-pre-secret', key: 'metaurl' });
  });

  await t.test('a forged copy (label) and a forged seal are replaced, never used', async (t) => {
    const forged = await user.createNamespacedSecret({
      namespace: NS,
      body: {
        metadata: { name: 'juicefs-forged-secret', labels: { [SECRET_COPY_LABEL]: `${SYSTEM}.jfs-admin` } },
        stringData: { name: 'vol', metaurl: USER_METAURL },
      },
    });
    await claim('forged', {
      [SECRET_COPY_SEAL_ANNOTATION]: `${forged.metadata!.uid}.00112233445566778899aabbccddeeff`,
    });
    const copy = await restored('forged', forged.metadata!.uid);
    t.not(copy.metadata?.uid, forged.metadata?.uid, "a new object: the user's is gone, not adopted");
    const admitted = await eventually(async () => (await tryPod('forged')).pod, 10_000, 'the pod admitted');
    t.same(copyRef(admitted), { name: 'juicefs-forged-secret', key: 'metaurl' });
    const pvc = await core.readNamespacedPersistentVolumeClaim({ name: 'forged', namespace: NS });
    t.match(pvc.metadata?.annotations?.[SECRET_COPY_SEAL_ANNOTATION], new RegExp(`^${copy.metadata!.uid}\\.`));
  });

  await t.test('the copy cannot be edited, and a changed or replaced copy is restored within seconds', async (t) => {
    const copy = (await readCopy('pre'))!;
    t.equal(copy.immutable, true, 'the copy is immutable');
    const edit = async (mutate: (s: V1Secret) => void) => {
      const current = await user.readNamespacedSecret({ name: 'juicefs-pre-secret', namespace: NS });
      mutate(current);
      await user.replaceNamespacedSecret({ name: 'juicefs-pre-secret', namespace: NS, body: current });
    };
    await t.rejects(
      edit((s) => {
        s.data = { ...s.data, metaurl: b64(USER_METAURL), 'envs.LD_PRELOAD': b64('/data/evil.so') };
      }),
      { code: 422 },
      "the user's edit of the data is refused by the API server",
    );
    t.equal(unb64((await readCopy('pre'))?.data?.metaurl), ADMIN_METAURL, 'data unchanged');

    await edit((s) => {
      s.metadata!.labels = {};
      s.metadata!.ownerReferences = [];
    });
    const back = await restored('pre');
    t.equal(back.metadata?.ownerReferences?.[0]?.name, 'pre', 'label and owner stripped: restored');
    t.equal(back.metadata?.uid, copy.metadata?.uid, 'the same copy');

    await user.deleteNamespacedSecret({ name: 'juicefs-pre-secret', namespace: NS });
    await user
      .createNamespacedSecret({
        namespace: NS,
        body: { metadata: { name: 'juicefs-pre-secret' }, stringData: { metaurl: USER_METAURL } },
      })
      .catch(() => undefined); // the controller may already have put its copy back
    const replaced = await restored('pre', copy.metadata!.uid);
    t.equal(unb64(replaced.data?.metaurl), ADMIN_METAURL, "deleted and re-made by the user: the controller's again");
    t.notOk(replaced.data?.['envs.LD_PRELOAD']);
    const pvc = await core.readNamespacedPersistentVolumeClaim({ name: 'pre', namespace: NS });
    t.match(pvc.metadata?.annotations?.[SECRET_COPY_SEAL_ANNOTATION], new RegExp(`^${replaced.metadata!.uid}\\.`));
  });

  await t.test("the admin's new credentials make a new sealed copy", async (t) => {
    const before = (await readCopy('pre'))!;
    const rotated = 'redis://:rotated-password@redis.example:6379/1';
    await applyObjects(admin, [secret(SYSTEM, 'jfs-admin', { name: 'vol', metaurl: rotated })]);
    const copy = await eventually(
      async () => {
        const s = await readCopy('pre');
        return s && unb64(s.data?.metaurl) === rotated ? s : undefined;
      },
      10_000,
      'the renewed copy',
    );
    t.not(copy.metadata?.uid, before.metadata?.uid, 'a new object (the copy is immutable)');
    t.equal(copy.immutable, true);
    const sealed = await eventually(
      async () => {
        const pvc = await core.readNamespacedPersistentVolumeClaim({ name: 'pre', namespace: NS });
        return pvc.metadata?.annotations?.[SECRET_COPY_SEAL_ANNOTATION]?.startsWith(`${copy.metadata!.uid}.`);
      },
      10_000,
      'the seal of the renewed copy',
    );
    t.ok(sealed);
  });

  await t.test('only JuiceFS Secrets of listed namespaces are copied; never the webhook certificate', async (t) => {
    for (const name of ['cert', 'notjfs', 'unlisted']) await claim(name);
    // The copier is level-triggered and fast (the tests above): give it ample time, then look.
    await sleep(5_000);
    for (const name of ['cert', 'notjfs', 'unlisted']) {
      t.notOk(await readCopy(name), `no copy for PVC ${name}`);
      const r = await tryPod(name);
      t.notOk(r.pod, `the pod of PVC ${name} is denied`);
      t.match(r.denied, name === 'unlisted' ? /not found/ : /not a JuiceFS Secret|certificate Secret/, name);
    }
    const all = await core.listNamespacedSecret({ namespace: NS });
    t.notOk(
      all.items.some((s) => s.data?.['ca.key'] || s.data?.['tls.key'] || s.data?.password),
      "no key of the webhook's or the non-JuiceFS Secret in the tenant namespace",
    );
  });
});
