// Admission through a real kube-apiserver: the webhook runs as its own process
// with the TLS it manages itself and the shipped RBAC (a ServiceAccount
// token), registered through the shipped MutatingWebhookConfiguration pointed
// at 127.0.0.1. kube-controller-manager plays its real part (ReplicaSets,
// ServiceAccounts, PVC protection); no kubelet runs, so pods stay Pending.
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  RbacAuthorizationV1Api,
  StorageV1Api,
  type KubernetesObject,
  type V1ConfigMap,
  type V1Pod,
  type V1Role,
} from '@kubernetes/client-node';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { CONFIG_MAP_NAME } from '../../src/contract/keys.js';
import { applyObjects, readManifest } from '../../src/local/components.js';
import { startWebhookStack } from '../../src/local/webhook-stack.js';
import { parseManifests } from '../../src/offline/inject-manifests.js';
import { findMismatch, withoutServiceAccountToken } from '../env/compare.js';
import { apiMessage, eventually, startControlPlane } from '../env/harness.js';
import { GOLDEN_BROKER, listCases, TESTDATA } from '../golden/golden.js';
import { setTimeout as sleep } from 'node:timers/promises';

const WEBHOOK_NS = 'juicefs-system';

t.setTimeout(20 * 60 * 1000);

t.test('admission through a real API server', async (t) => {
  const cp = await startControlPlane(t, { controllerManager: true });
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  const apps = admin.makeApiClient(AppsV1Api);
  const objects = KubernetesObjectApi.makeApiClient(admin);

  // The shipped manifests, as an admin would apply them (the Deployment and Service aside: the webhook runs here
  // as a process, started by startWebhookStack below with the namespace, RBAC, ConfigMap and registration).
  await applyObjects(admin, readManifest('csidriver.yaml'));
  // As README says for a further --secret-namespace: the read rule of the shipped Role, in kube-system.
  const [shippedRole] = readManifest('rbac.yaml').filter((o) => o.kind === 'Role') as V1Role[];
  await applyObjects(admin, [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'jfs-sidecar-webhook-secrets', namespace: 'kube-system' },
      rules: [shippedRole.rules![0]],
    } as KubernetesObject,
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'jfs-sidecar-webhook-secrets', namespace: 'kube-system' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'jfs-sidecar-webhook-secrets' },
      subjects: [{ kind: 'ServiceAccount', name: 'jfs-sidecar-webhook', namespace: WEBHOOK_NS }],
    } as KubernetesObject,
  ]);
  // The golden cases' credential broker (broker-mode cases), as flags.
  const brokerCa = path.join(cp.dir, 'golden-broker-ca.crt');
  writeFileSync(brokerCa, GOLDEN_BROKER.caPem);
  const stack = await startWebhookStack(cp, {
    dir: cp.dir,
    secretNamespaces: [WEBHOOK_NS, 'kube-system'],
    withoutController: true,
    extraArgs: [
      `--credentials-ca-file=${brokerCa}`,
      `--credentials-url=${GOLDEN_BROKER.url}`,
      `--credentials-image=${GOLDEN_BROKER.image}`,
    ],
  });
  const { webhook, kubeconfig: webhookKubeconfig } = stack;
  t.teardown(() => stack.stop());
  t.teardown(() => {
    if (!t.passing())
      t.comment(
        `webhook log:\n${readFileSync(path.join(cp.dir, 'webhook.log'), 'utf8').split('\n').slice(-60).join('\n')}`,
      );
  });

  const podOf = (objs: KubernetesObject[]) => objs.find((o): o is V1Pod => o.kind === 'Pod');

  /**
   * Creates a pod, retrying while `retry` says the refusal is only the webhook's
   * caches not having seen objects just created (they are eventually consistent).
   */
  async function createPod(
    namespace: string,
    pod: V1Pod,
    retry: (err: unknown) => boolean,
    dryRun?: string,
  ): Promise<V1Pod> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        return await core.createNamespacedPod({ namespace, body: pod, dryRun });
      } catch (err) {
        if (!retry(err) || Date.now() > deadline) throw err;
        await sleep(200);
      }
    }
  }

  async function waitForConfig(version: string): Promise<void> {
    let last: unknown;
    await eventually(
      async () => {
        const r = await webhook.readyz();
        last = r.body;
        return (r.body.config as { resourceVersion?: string } | undefined)?.resourceVersion === version;
      },
      30_000,
      `webhook to load ConfigMap version ${version}`,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; /readyz said ${JSON.stringify(last)}`);
    });
  }

  async function setGlobalConfig(cm: V1ConfigMap | undefined): Promise<void> {
    const data = cm?.data ?? (readManifest('config.yaml')[0] as V1ConfigMap).data;
    await applyObjects(admin, [
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: CONFIG_MAP_NAME, namespace: WEBHOOK_NS },
        data,
      } as V1ConfigMap,
    ]);
    const stored = await core.readNamespacedConfigMap({ name: CONFIG_MAP_NAME, namespace: WEBHOOK_NS });
    await waitForConfig(stored.metadata!.resourceVersion!);
  }

  /**
   * Objects a case shares with the others (cluster-scoped ones, whose specs are
   * immutable, and those in kube-system) are removed before the next case.
   */
  async function removeShared(objs: KubernetesObject[], caseNamespace: string): Promise<void> {
    const shared = objs.filter(
      (x) =>
        ['PersistentVolume', 'StorageClass'].includes(x.kind!) ||
        (x.kind === 'Secret' && x.metadata?.namespace !== caseNamespace),
    );
    for (const o of shared) {
      const ref = {
        apiVersion: o.apiVersion!,
        kind: o.kind!,
        metadata: { name: o.metadata!.name!, namespace: o.metadata?.namespace },
      };
      try {
        // Delete first: the protection controllers re-add finalizers to objects not being deleted.
        await objects.delete(ref);
        await objects.patch(
          { ...ref, metadata: { ...ref.metadata, finalizers: null } } as unknown as KubernetesObject,
          undefined,
          undefined,
          undefined,
          undefined,
          PatchStrategy.MergePatch,
        );
      } catch (err) {
        if ((err as { code?: number }).code !== 404) throw err;
      }
      await eventually(
        async () => {
          try {
            await objects.read(ref);
            return false;
          } catch (err) {
            return (err as { code?: number }).code === 404;
          }
        },
        30_000,
        `${o.kind} ${o.metadata!.name} to be gone`,
      );
    }
  }

  await t.test('the webhook wrote its CA bundle into the shipped configuration', async (t) => {
    const mwc = await admin
      .makeApiClient(AdmissionregistrationV1Api)
      .readMutatingWebhookConfiguration({ name: 'jfs-sidecar-webhook' });
    const secret = await core.readNamespacedSecret({ name: 'jfs-sidecar-webhook-certs', namespace: WEBHOOK_NS });
    for (const w of mwc.webhooks ?? []) {
      t.equal(w.clientConfig.caBundle, secret.data!['ca-bundle.crt'], `${w.name} trusts the CA in the shared Secret`);
      t.equal(w.failurePolicy, 'Fail');
      t.equal(w.sideEffects, 'None');
    }
  });

  const cases = listCases();
  let previous: KubernetesObject[] = [];
  let previousNs = '';
  for (const [i, c] of cases.entries()) {
    await t.test(`golden case ${c.name} through the API server`, async (t) => {
      const ns = `e2e-${i}-${c.name}`.slice(0, 63).replace(/-+$/, '');
      const subst = (text: string) => text.replaceAll('team-a', ns);
      let input = subst(readFileSync(c.inputPath, 'utf8'));
      let golden = subst(readFileSync(c.goldenPath, 'utf8'));
      await removeShared(previous, previousNs);
      const objs = parseManifests(input, c.name);
      previous = objs;
      previousNs = ns;
      await setGlobalConfig(objs.find((o): o is V1ConfigMap => o.kind === 'ConfigMap'));

      const nsObj = objs.find((o) => o.kind === 'Namespace') ?? {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: ns },
      };
      await applyObjects(admin, [nsObj]);
      for (const o of objs) {
        if (['Namespace', 'Pod', 'ConfigMap', 'Deployment'].includes(o.kind!)) continue;
        const body = structuredClone(o);
        const fixedUid = body.metadata?.uid;
        delete body.metadata!.uid;
        await applyObjects(admin, [body]);
        if (fixedUid) {
          // The API server assigns its own uid; the golden subdirectory pvc-<uid> follows it.
          const stored = await core.readNamespacedPersistentVolumeClaim({
            name: o.metadata!.name!,
            namespace: o.metadata!.namespace!,
          });
          golden = golden.replaceAll(fixedUid, stored.metadata!.uid!);
          input = input.replaceAll(fixedUid, stored.metadata!.uid!);
        }
      }

      const denied = /^# denied \(([^)]+)\): \S+ [^:]+: (.*)$/m.exec(golden);
      const deployment = objs.find((o) => o.kind === 'Deployment');
      if (deployment) {
        await apps.createNamespacedDeployment({ namespace: ns, body: deployment });
        // kube-controller-manager creates the ReplicaSet and its pods; the webhook injects them.
        const pods = await eventually(
          async () => {
            const list = await core.listNamespacedPod({ namespace: ns });
            return list.items.length >= 2 ? list.items : undefined;
          },
          60_000,
          'the Deployment pods',
        );
        const expected = parseYaml(golden.replace(/^#.*\n/gm, '')) as {
          spec: { template: { metadata: unknown; spec: unknown } };
        };
        for (const pod of pods) {
          t.equal(
            findMismatch(expected.spec.template.spec, withoutServiceAccountToken(pod).spec),
            undefined,
            `${pod.metadata!.name} spec equals the golden template`,
          );
          t.equal(pod.metadata?.labels?.['done.sidecar.juicefs.com/inject'], 'true');
        }
        return;
      }
      const pod = podOf(objs)!;
      if (denied) {
        const err = await createPod(ns, pod, (e) => !apiMessage(e).includes(denied[2])).then(
          () => undefined,
          (e: unknown) => e,
        );
        t.ok(err, 'the API server refused the pod');
        t.match(apiMessage(err), denied[2], 'with the golden denial message');
        t.match(apiMessage(err), `[${denied[1]}]`, 'and its code');
        return;
      }
      const created = await createPod(ns, pod, (e) => /not-found/.test(apiMessage(e)));
      const readBack = await core.readNamespacedPod({ name: created.metadata!.name!, namespace: ns });
      const [expected] = parseAllDocuments(golden).map((d) => d.toJS() as V1Pod);
      t.equal(
        findMismatch(expected.spec, withoutServiceAccountToken(readBack).spec),
        undefined,
        'stored pod spec equals the golden output',
      );
      t.same(readBack.metadata?.labels ?? {}, expected.metadata?.labels ?? {}, 'labels equal the golden output');
      await core.deleteNamespacedPod({ name: readBack.metadata!.name!, namespace: ns, gracePeriodSeconds: 0 });
    });
  }
  await removeShared(previous, previousNs);
  await setGlobalConfig(undefined);

  // Objects for the remaining tests: the one-pvc case in a namespace of each kind.
  async function setupNamespace(name: string, labels: Record<string, string>): Promise<V1Pod> {
    const objs = parseManifests(
      readFileSync(path.join(TESTDATA, 'one-pvc.yaml'), 'utf8')
        .replaceAll('team-a', name)
        .replaceAll('data-pv', `${name}-pv`),
      name,
    );
    await applyObjects(admin, [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } }]);
    await applyObjects(
      admin,
      objs.filter((o) => !['Namespace', 'Pod'].includes(o.kind!)),
    );
    return podOf(objs)!;
  }
  const isInjected = (p: V1Pod) => (p.spec?.initContainers ?? []).some((c) => c.name === 'jfs-mount');

  await t.test('a namespace without the label is left alone', async (t) => {
    const pod = await setupNamespace('plain', {});
    const created = await core.createNamespacedPod({ namespace: 'plain', body: pod });
    t.notOk(isInjected(created), 'no sidecar');
    t.notOk(created.metadata?.labels?.['done.sidecar.juicefs.com/inject'], 'no done label');
    t.equal(
      created.spec?.volumes?.find((v) => v.name === 'data')?.persistentVolumeClaim?.claimName,
      'data',
      'the PVC volume is untouched',
    );
  });

  await t.test('server-side dry-run returns the injected pod and creates nothing', async (t) => {
    const pod = await setupNamespace('dry', { 'juicefs.com/enable-injection': 'true' });
    const secretsBefore = (await core.listSecretForAllNamespaces()).items.length;
    const answer = await createPod('dry', pod, (e) => /not-found/.test(apiMessage(e)), 'All');
    t.ok(isInjected(answer), 'the dry-run answer is injected');
    t.equal((await core.listNamespacedPod({ namespace: 'dry' })).items.length, 0, 'no pod stored');
    t.equal((await core.listSecretForAllNamespaces()).items.length, secretsBefore, 'no Secret created by admission');
  });

  await t.test('serverless label: emptyDir, no hostPath', async (t) => {
    const pod = await setupNamespace('sl', { 'juicefs.com/enable-serverless-injection': 'true' });
    const created = await createPod('sl', pod, (e) => /not-found/.test(apiMessage(e)));
    t.ok(isInjected(created));
    t.ok(
      created.spec?.volumes?.every((v) => !v.hostPath),
      'no hostPath volume',
    );
    t.ok(created.spec?.volumes?.find((v) => v.name === 'data')?.emptyDir, 'the PVC volume became an emptyDir');
  });

  await t.test('opt-out label: not sent to the webhook, not injected', async (t) => {
    const pod = await setupNamespace('optout', { 'juicefs.com/enable-injection': 'true' });
    pod.metadata!.labels = { 'disable.sidecar.juicefs.com/inject': 'true' };
    const created = await core.createNamespacedPod({ namespace: 'optout', body: pod });
    t.notOk(isInjected(created));
  });

  await t.test('webhook down with failurePolicy Fail: creation fails clearly, then works again', async (t) => {
    const pod = await setupNamespace('outage', { 'juicefs.com/enable-injection': 'true' });
    await webhook.stop();
    const err = await core.createNamespacedPod({ namespace: 'outage', body: pod }).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err, 'creation refused while the webhook is down');
    t.match(apiMessage(err), /failed calling webhook "sidecar\.inject\.juicefs\.com"/, 'the message names the webhook');
    t.equal((await core.listNamespacedPod({ namespace: 'outage' })).items.length, 0, 'nothing created');
    await webhook.spawn();
    const created = await createPod('outage', pod, (e) => /not-found|failed calling webhook/.test(apiMessage(e)));
    t.ok(isInjected(created), 'injected once the webhook is back');
  });

  await t.test('the shipped RBAC is enough and no more', async (t) => {
    const kc = new KubeConfig();
    kc.loadFromFile(webhookKubeconfig);
    const asWebhook = kc.makeApiClient(CoreV1Api);
    t.ok((await asWebhook.listPersistentVolumeClaimForAllNamespaces()).items, 'can list PVCs');
    t.ok((await asWebhook.listPersistentVolume()).items, 'can list PVs');
    t.ok((await kc.makeApiClient(StorageV1Api).listStorageClass()).items, 'can list StorageClasses');
    t.ok((await asWebhook.listNamespacedSecret({ namespace: WEBHOOK_NS })).items, 'can read Secrets of its namespace');
    await t.rejects(
      asWebhook.listNamespacedSecret({ namespace: 'dry' }),
      { code: 403 },
      'cannot read Secrets of an app namespace',
    );
    await t.rejects(asWebhook.listSecretForAllNamespaces(), { code: 403 }, 'cannot list Secrets cluster-wide');
    await t.rejects(
      asWebhook.readNamespacedSecret({ name: 'juicefs-secret', namespace: 'default' }),
      { code: 403 },
      'cannot get a Secret elsewhere',
    );
    await t.rejects(
      asWebhook.createNamespacedPod({
        namespace: 'dry',
        body: { metadata: { name: 'x' }, spec: { containers: [{ name: 'x', image: 'x' }] } },
      }),
      { code: 403 },
      'cannot create pods',
    );
    await t.rejects(
      asWebhook.replaceNamespacedSecret({
        name: 'juicefs-secret',
        namespace: WEBHOOK_NS,
        body: { metadata: { name: 'juicefs-secret' } },
      }),
      { code: 403 },
      'cannot overwrite another Secret in its namespace',
    );
    const other = {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name: 'someone-else' },
      webhooks: [],
    };
    await admin.makeApiClient(AdmissionregistrationV1Api).createMutatingWebhookConfiguration({ body: other });
    await t.rejects(
      kc.makeApiClient(AdmissionregistrationV1Api).readMutatingWebhookConfiguration({ name: 'someone-else' }),
      { code: 403 },
      'cannot touch another webhook configuration',
    );
    await t.rejects(kc.makeApiClient(RbacAuthorizationV1Api).listClusterRole(), { code: 403 }, 'cannot read RBAC');
  });
});
