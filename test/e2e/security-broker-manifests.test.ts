// The credential broker as manifests/ ship it (ADR 0010): no hand-made certificate. A real kube-apiserver, etcd and
// kube-controller-manager; the webhook and the controller run as the shipped ServiceAccounts with the shipped RBAC,
// the controller with `--credentials-broker` and no --credentials-cert-dir, the webhook with no --credentials-ca-file.
// The controller must make the broker's certificate Secret and publish its CA itself; the webhook must inject that
// CA; a fetch with a pod-bound token (TokenRequest with boundObjectRef, what the kubelet asks for a projected token)
// must succeed against the self-managed certificate; a namespace user with `edit` reads none of it.
import { CoreV1Api, KubeConfig, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { askBroker, BROKER_AUDIENCE } from '../env/broker.js';
import { pino } from 'pino';
import { serviceHosts, splitPem } from '../../src/certs/generate.js';
import { SecretCertSource } from '../../src/certs/manager.js';
import { applyObjects, CLI, readManifest } from '../../src/local/components.js';
import { freePort } from '../../src/local/control-plane.js';
import { startControllerStack } from '../../src/local/controller-stack.js';
import { startWebhookStack } from '../../src/local/webhook-stack.js';
import { apiMessage, eventually, namespaceUserObjects, startControlPlane } from '../env/harness.js';
import { makeVolume } from '../env/juicefs.js';

const NS = 'tenant';
const SYSTEM = 'juicefs-system';
const TLS_SECRET = 'jfs-sidecar-credentials-tls';
const CA_CONFIGMAP = 'jfs-sidecar-credentials-ca';

t.setTimeout(10 * 60 * 1000);

t.test('broker mode from the shipped manifests: self-managed certificate, published CA', async (t) => {
  const cp = await startControlPlane(t, { controllerManager: true });
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-broker-manifests-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const vol = makeVolume('brokermanifests');
  t.teardown(() => vol.remove());

  const port = await freePort();
  // The shipped URL names the Service; here the controller is a process on loopback, so the URL is its address and
  // the certificate gets that IP as an extra name. Everything else is as shipped.
  const url = `https://127.0.0.1:${port}`;
  const common = [`--credentials-url=${url}`, '--credentials-image=jfs-sidecar:e2e'];
  await applyObjects(admin, [
    ...readManifest('namespace.yaml'),
    ...readManifest('credentials-broker.yaml'),
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'juicefs.com/enable-injection': 'true' } } },
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'jfs-admin', namespace: SYSTEM },
      type: 'Opaque',
      stringData: { ...vol.secrets, 'secret-key': 'admin-secret-key' },
    } as KubernetesObject,
    ...namespaceUserObjects(NS),
  ]);
  const webhook = await startWebhookStack(cp, { dir, secretNamespaces: [SYSTEM], extraArgs: common });
  const controller = await startControllerStack(cp, {
    dir,
    secretNamespaces: [SYSTEM],
    extraArgs: [
      ...common,
      '--credentials-broker',
      '--credentials-host=127.0.0.1',
      `--credentials-port=${port}`,
      '--credentials-extra-host=127.0.0.1',
    ],
  });
  t.teardown(async () => {
    if (!t.passing()) {
      t.comment(`controller log:\n${controller.controller.log(60)}`);
      if (webhook.logFile)
        t.comment(`webhook log:\n${readFileSync(webhook.logFile, 'utf8').split('\n').slice(-40).join('\n')}`);
    }
    await controller.stop();
    await webhook.stop();
  });

  const secret = await eventually(
    () => core.readNamespacedSecret({ name: TLS_SECRET, namespace: SYSTEM }).catch(() => undefined),
    30_000,
    'the broker certificate Secret',
  );
  const published = await eventually(
    () => core.readNamespacedConfigMap({ name: CA_CONFIGMAP, namespace: SYSTEM }).catch(() => undefined),
    30_000,
    'the CA ConfigMap',
  );
  const dec = (k: string) => Buffer.from(secret.data?.[k] ?? '', 'base64').toString('utf8');
  const ca = published.data?.['ca.crt'] ?? '';

  await t.test('the controller made the certificate and published only the public CA', async (t) => {
    const cert = new X509Certificate(dec('tls.crt'));
    for (const host of [
      'jfs-sidecar-credentials.juicefs-system.svc',
      'jfs-sidecar-credentials.juicefs-system.svc.cluster.local',
    ])
      t.ok(cert.checkHost(host), `the certificate names ${host} (the shipped Service)`);
    t.ok(cert.checkIP('127.0.0.1'), 'and the extra host');
    t.ok(cert.verify(new X509Certificate(dec('ca.crt')).publicKey), 'signed by the CA in the Secret');
    t.equal(ca, dec('ca-bundle.crt'), 'the ConfigMap holds the bundle of the Secret');
    t.equal(splitPem(ca).length, 1, 'one CA, no rotation yet');
    t.same(Object.keys(published.data ?? {}), ['ca.crt'], 'and nothing else');
    t.notMatch(JSON.stringify(published), /PRIVATE KEY/, 'no key in the ConfigMap');
  });

  const pv = {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name: 'pv-data' },
    spec: {
      capacity: { storage: '1Gi' },
      accessModes: ['ReadWriteMany'],
      persistentVolumeReclaimPolicy: 'Retain',
      storageClassName: '',
      claimRef: { namespace: NS, name: 'data' },
      csi: {
        driver: 'csi.juicefs.com',
        volumeHandle: 'pv-data',
        nodePublishSecretRef: { name: 'jfs-admin', namespace: SYSTEM },
        volumeAttributes: { 'juicefs/credentials': 'broker' },
      },
    },
  } as KubernetesObject;
  await applyObjects(admin, [pv]);
  const userKc = new KubeConfig();
  userKc.loadFromFile(await cp.serviceAccountKubeconfig(NS, 'user'));
  const user = userKc.makeApiClient(CoreV1Api);
  await user.createNamespacedPersistentVolumeClaim({
    namespace: NS,
    body: {
      metadata: { name: 'data' },
      spec: {
        accessModes: ['ReadWriteMany'],
        storageClassName: '',
        volumeName: 'pv-data',
        resources: { requests: { storage: '1Gi' } },
      },
    },
  });
  await eventually(() => core.readNamespacedServiceAccount({ name: 'default', namespace: NS }), 30_000, 'SA default');
  const body: V1Pod = {
    metadata: { name: 'app' },
    spec: {
      containers: [{ name: 'app', image: 'busybox', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
    },
  };
  const pod = await eventually(
    () =>
      user.createNamespacedPod({ namespace: NS, body }).catch((err: unknown) => {
        // The PVC may not be in the webhook's cache yet; anything else is a failure to see.
        if (!/not found/.test(apiMessage(err))) throw err;
        return undefined;
      }),
    15_000,
    'the PVC in the webhook cache',
  );

  await t.test('the webhook injected the broker URL and the published CA, no --credentials-ca-file', async (t) => {
    const fetchStep = pod.spec?.initContainers?.find((c) => c.name === 'jfs-credentials');
    t.ok(fetchStep, 'a fetch step');
    t.ok(fetchStep?.args?.includes(`--url=${url}`), 'asking the broker URL');
    t.equal(fetchStep?.env?.find((e) => e.name === 'JFS_CREDENTIALS_CA')?.value, ca, 'trusting the published CA');
    t.notMatch(JSON.stringify(pod), /secretKeyRef/, 'no Secret reference');
  });

  const podToken = async (audience = BROKER_AUDIENCE, of: V1Pod = pod) => {
    const tr = await core.createNamespacedServiceAccountToken({
      name: 'default',
      namespace: NS,
      body: {
        spec: {
          audiences: [audience],
          expirationSeconds: 600,
          boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: of.metadata!.name!, uid: of.metadata!.uid! },
        },
      },
    });
    return tr.status!.token;
  };
  const fetchWith = async (name: string, of: V1Pod = pod) => {
    const tokenFile = path.join(dir, `${name}-token`);
    writeFileSync(tokenFile, await podToken(BROKER_AUDIENCE, of));
    const out = path.join(dir, `${name}-credentials`);
    const env = of.spec!.initContainers!.find((c) => c.name === 'jfs-credentials')!.env!;
    const run = spawnSync(
      process.execPath,
      [
        CLI,
        'credentials',
        'fetch',
        `--url=${url}`,
        '--pvc=data',
        '--volume=data',
        `--token-file=${tokenFile}`,
        `--out=${out}`,
      ],
      // The fetch step's env as injected: its CA is the one it trusts.
      { encoding: 'utf8', env: { ...process.env, ...Object.fromEntries(env.map((e) => [e.name, e.value ?? ''])) } },
    );
    return { run, out };
  };

  await t.test('the pod-bound token fetches the credentials over the self-managed certificate', async (t) => {
    const { run, out } = await fetchWith('first');
    t.equal(run.status, 0, `jfs-sidecar credentials fetch exits 0 (${run.stderr.trim()})`);
    t.ok(readdirSync(out).includes('JFS_METAURL'), 'the metaurl file is written');
    t.equal(readFileSync(path.join(out, 'JFS_METAURL'), 'utf8'), vol.metaurl, "the admin's metaurl");
    t.equal(readFileSync(path.join(out, 'SECRET_KEY'), 'utf8'), 'admin-secret-key');
    // The same TLS check with any other CA fails: the certificate really is the published CA's.
    const other = (await import('../../src/certs/generate.js')).generateBundle;
    const stranger = await other({ hosts: ['127.0.0.1'], validityDays: 1 });
    await t.rejects(askBroker(url, stranger.caCert, 'x', 'data'), /self.signed|unable to verify|certificate/i);
    t.same(
      await askBroker(url, ca, await podToken('other-audience'), 'data'),
      {
        status: 401,
        code: 'unauthenticated',
      },
      'a token of another audience is refused',
    );
  });

  await t.test('a restarted controller keeps the certificate: the injected pod still fetches', async (t) => {
    await controller.crashAndRestart();
    await eventually(() => askBroker(url, ca, 'x', 'data').catch(() => undefined), 30_000, 'the broker back');
    const again = await core.readNamespacedSecret({ name: TLS_SECRET, namespace: SYSTEM });
    t.equal(again.data?.['tls.crt'], secret.data?.['tls.crt'], 'the same certificate (the Secret is shared)');
    const { run } = await fetchWith('second');
    t.equal(run.status, 0, `the fetch still succeeds (${run.stderr.trim()})`);
  });

  await t.test('a rotation by one replica: new pods get the new bundle, old and new pods both fetch', async (t) => {
    // Another controller replica renewing (as the controller's ServiceAccount, so the shipped RBAC allows it): a
    // renew-before window longer than the validity makes the certificate due now.
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(await cp.serviceAccountKubeconfig(SYSTEM, 'jfs-sidecar-controller'));
    await new SecretCertSource({
      kubeConfig,
      namespace: SYSTEM,
      secretName: TLS_SECRET,
      caConfigMapName: CA_CONFIGMAP,
      hosts: serviceHosts('jfs-sidecar-credentials', SYSTEM, ['127.0.0.1']),
      validityDays: 365,
      renewBeforeDays: 400,
      checkIntervalMs: 60_000,
      log: pino({ level: 'silent' }),
    }).ensure();
    const rotated = await core.readNamespacedConfigMap({ name: CA_CONFIGMAP, namespace: SYSTEM });
    const bundle = rotated.data?.['ca.crt'] ?? '';
    t.equal(splitPem(bundle).length, 2, 'the published bundle holds the new and the old CA');
    t.equal(rotated.data?.['previous-ca.crt'], ca, 'and names the bundle before the rotation');
    const second = await eventually(
      async () => {
        await user.deleteNamespacedPod({ name: 'app2', namespace: NS }).catch(() => undefined);
        const p = await user.createNamespacedPod({ namespace: NS, body: { ...body, metadata: { name: 'app2' } } });
        const env = p.spec?.initContainers?.find((c) => c.name === 'jfs-credentials')?.env;
        return env?.find((e) => e.name === 'JFS_CREDENTIALS_CA')?.value === bundle ? p : undefined;
      },
      30_000,
      'the webhook injecting the new bundle',
    );
    // The running broker still serves its first certificate (its own check is every 10 minutes): signed by the old
    // CA, which the new bundle still holds.
    const { run } = await fetchWith('rotated-new', second);
    t.equal(run.status, 0, `a pod injected after the rotation fetches (${run.stderr.trim()})`);
    const { run: old } = await fetchWith('rotated-old');
    t.equal(old.status, 0, `a pod injected before it still fetches (${old.stderr.trim()})`);
  });

  await t.test('a namespace user with edit reads neither the TLS Secret nor anything new', async (t) => {
    const denied = async (what: string, p: Promise<unknown>) =>
      t.match(
        apiMessage(
          await p.then(
            () => 'allowed',
            (e: unknown) => e,
          ),
        ),
        /forbidden/,
        what,
      );
    await denied('no get of the TLS Secret', user.readNamespacedSecret({ name: TLS_SECRET, namespace: SYSTEM }));
    await denied('no list of the system Secrets', user.listNamespacedSecret({ namespace: SYSTEM }));
    await denied('no get of the CA ConfigMap', user.readNamespacedConfigMap({ name: CA_CONFIGMAP, namespace: SYSTEM }));
    await denied(
      'no replacing the published CA',
      user.replaceNamespacedConfigMap({ name: CA_CONFIGMAP, namespace: SYSTEM, body: published }),
    );
    const own = [
      ...(await user.listNamespacedSecret({ namespace: NS })).items,
      ...(await user.listNamespacedConfigMap({ namespace: NS })).items,
    ].map((o) => o.metadata?.name ?? '');
    t.same(
      own.filter((n) => n.startsWith('jfs-') || n.startsWith('juicefs-')),
      [],
      'nothing of the broker or a copy appears in the namespace',
    );
    const text = JSON.stringify(await user.readNamespacedPod({ name: 'app', namespace: NS }));
    for (const v of [vol.metaurl, 'admin-secret-key', 'PRIVATE KEY'])
      t.notOk(text.includes(v), `the pod holds no ${v}`);
  });
});
