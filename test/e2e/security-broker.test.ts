// Issue 11 class 5, the goal (ADR 0010): with `juicefs/credentials: broker` a namespace user never obtains the admin's
// volume credentials. A real kube-apiserver, etcd and kube-controller-manager; the webhook and the controller as the
// shipped manifests run them (their ServiceAccounts and RBAC), the controller serving the broker on loopback HTTPS.
// The attacker is a ServiceAccount of the namespace bound to `edit`. No kubelet runs here: the token a kubelet would
// mount into the fetch step is requested with TokenRequest bound to the pod (boundObjectRef kind Pod), exactly what
// the kubelet asks for a projected serviceAccountToken volume; the fetch step is the real `jfs-sidecar credentials
// fetch`, and the pod's own format and mount commands run through busybox sh with the real juicefs client.
import {
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
  type V1Container,
  type V1Pod,
} from '@kubernetes/client-node';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { askBroker, BROKER_AUDIENCE } from '../env/broker.js';
import { generateBundle } from '../../src/certs/generate.js';
import { expandEnvReferences } from '../../src/mount/format.js';
import { applyObjects, CLI, readManifest } from '../../src/local/components.js';
import { freePort } from '../../src/local/control-plane.js';
import { startControllerStack } from '../../src/local/controller-stack.js';
import { startWebhookStack } from '../../src/local/webhook-stack.js';
import { apiMessage, eventually, namespaceUserObjects, startControlPlane } from '../env/harness.js';
import { makeVolume } from '../env/juicefs.js';

const NS = 'tenant';
const OTHER = 'other';
const SYSTEM = 'juicefs-system';

t.setTimeout(15 * 60 * 1000);

t.test('broker mode: the namespace user gets the volume credentials by no route', async (t) => {
  const cp = await startControlPlane(t, { controllerManager: true });
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-sec-broker-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // A real volume: the fetched credentials must format and mount it.
  const vol = makeVolume('brokervol');
  t.teardown(() => vol.remove());

  // The broker's serving certificate, as cert-manager or an admin would provide it.
  const bundle = await generateBundle({ hosts: ['127.0.0.1'], validityDays: 1 });
  const certDir = path.join(dir, 'broker-certs');
  mkdirSync(certDir);
  writeFileSync(path.join(certDir, 'tls.crt'), bundle.cert);
  writeFileSync(path.join(certDir, 'tls.key'), bundle.key);
  const caFile = path.join(dir, 'broker-ca.crt');
  writeFileSync(caFile, bundle.caCert);
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const brokerFlags = [
    `--credentials-url=${url}`,
    `--credentials-ca-file=${caFile}`,
    '--credentials-image=jfs-sidecar:e2e',
  ];

  const secret = (namespace: string, name: string, data: Record<string, string>) =>
    ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace },
      type: 'Opaque',
      stringData: data,
    }) as KubernetesObject;
  const injected = { 'juicefs.com/enable-injection': 'true' };
  await applyObjects(admin, [
    ...readManifest('namespace.yaml'),
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: injected } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: OTHER, labels: injected } },
    secret(SYSTEM, 'jfs-admin', {
      ...vol.secrets,
      'access-key': 'AKIA-ADMIN',
      'secret-key': 'admin-secret-key',
      envs: '{TZ: UTC}',
    }),
    secret(SYSTEM, 'jfs-other', { name: 'othervol', metaurl: 'redis://:other-password@r/2' }),
    ...namespaceUserObjects(NS),
  ]);
  const webhook = await startWebhookStack(cp, { dir, secretNamespaces: [SYSTEM], extraArgs: brokerFlags });
  const controller = await startControllerStack(cp, {
    dir,
    secretNamespaces: [SYSTEM],
    extraArgs: [
      ...brokerFlags,
      '--credentials-broker',
      '--credentials-host=127.0.0.1',
      `--credentials-port=${port}`,
      `--credentials-cert-dir=${certDir}`,
    ],
  });
  t.teardown(async () => {
    if (!t.passing()) t.comment(`controller log:\n${controller.controller.log(80)}`);
    await controller.stop();
    await webhook.stop();
  });
  const ca = bundle.caCert;
  const userKc = new KubeConfig();
  userKc.loadFromFile(await cp.serviceAccountKubeconfig(NS, 'user'));
  const user = userKc.makeApiClient(CoreV1Api);
  const userToken = userKc.getCurrentUser()!.token!;

  const pv = (name: string, claim: { namespace: string; name: string }, secretName: string, attrs = {}) => ({
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name },
    spec: {
      capacity: { storage: '1Gi' },
      accessModes: ['ReadWriteMany'],
      persistentVolumeReclaimPolicy: 'Retain',
      storageClassName: '',
      claimRef: claim,
      csi: {
        driver: 'csi.juicefs.com',
        volumeHandle: name,
        nodePublishSecretRef: { name: secretName, namespace: SYSTEM },
        volumeAttributes: { 'juicefs/credentials': 'broker', ...attrs },
      },
    },
  });
  await applyObjects(admin, [
    pv('pv-data', { namespace: NS, name: 'data' }, 'jfs-admin'),
    pv('pv-second', { namespace: NS, name: 'second' }, 'jfs-admin'),
    pv('pv-other', { namespace: OTHER, name: 'data' }, 'jfs-other'),
  ] as KubernetesObject[]);
  const claim = (api: CoreV1Api, namespace: string, name: string, volumeName: string) =>
    api.createNamespacedPersistentVolumeClaim({
      namespace,
      body: {
        metadata: { name },
        spec: {
          accessModes: ['ReadWriteMany'],
          storageClassName: '',
          volumeName,
          resources: { requests: { storage: '1Gi' } },
        },
      },
    });
  await claim(user, NS, 'data', 'pv-data');
  await claim(user, NS, 'second', 'pv-second');
  await claim(user, NS, 'stolen', 'pv-other'); // another namespace's PV, by name (class 1)
  await claim(core, OTHER, 'data', 'pv-other');

  const appPod = (name: string, claimName: string, extra: Partial<V1Pod['spec']> = {}): V1Pod => ({
    metadata: { name },
    spec: {
      containers: [{ name: 'app', image: 'busybox', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName } }],
      ...extra,
    },
  });
  const tryPod = (body: V1Pod) =>
    user.createNamespacedPod({ namespace: NS, body }).then(
      (pod) => ({ pod, denied: undefined }),
      (err: unknown) => ({ pod: undefined, denied: apiMessage(err) }),
    );
  /** What a kubelet mounts for a projected token volume of this pod: a token bound to the pod. */
  const podToken = async (pod: V1Pod, audience = BROKER_AUDIENCE) => {
    const tr = await core.createNamespacedServiceAccountToken({
      name: pod.spec?.serviceAccountName ?? 'default',
      namespace: pod.metadata!.namespace!,
      body: {
        spec: {
          audiences: [audience],
          expirationSeconds: 600,
          boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata!.name!, uid: pod.metadata!.uid! },
        },
      },
    });
    return tr.status!.token;
  };

  // The ServiceAccount `default` comes from kube-controller-manager; pods need it.
  await eventually(() => core.readNamespacedServiceAccount({ name: 'default', namespace: NS }), 30_000, 'SA default');
  await eventually(() => core.readNamespacedServiceAccount({ name: 'default', namespace: OTHER }), 30_000, 'SA other');
  const created = await eventually(
    async () => {
      const r = await tryPod(appPod('app', 'data'));
      return r.denied?.includes('not found') ? undefined : r;
    },
    15_000,
    'the PVC in the webhook cache',
  );
  t.ok(created.pod, `the pod is admitted at once, no copy to wait for (${created.denied ?? 'ok'})`);
  const legit = created.pod!;

  await t.test('no copy, no Secret reference, no credential in the pod spec', async (t) => {
    // Give the controller its reconcile round: it must make no copy for a broker-mode PVC.
    await new Promise((r) => setTimeout(r, 3000));
    const secrets = await user.listNamespacedSecret({ namespace: NS });
    t.same(
      secrets.items.map((s) => s.metadata?.name).filter((n) => n?.startsWith('juicefs-')),
      [],
      'the user lists no copy in the namespace',
    );
    const get = await user
      .readNamespacedSecret({ name: 'juicefs-data-secret', namespace: NS })
      .catch((e: unknown) => e);
    t.match(apiMessage(get), /not found/, 'nor gets one by name');
    const listed = await user.readNamespacedPod({ name: 'app', namespace: NS });
    const text = JSON.stringify(listed);
    t.notMatch(text, /secretKeyRef/, 'no container references a Secret');
    for (const v of [vol.metaurl, 'AKIA-ADMIN', 'admin-secret-key'])
      t.notOk(text.includes(v), `the spec holds no ${v}`);
    const names = (listed.spec?.initContainers ?? []).map((c) => c.name);
    t.same(
      names,
      ['jfs-fd-holder', 'jfs-credentials', 'jfs-format', 'jfs-mount'],
      'the fetch step runs before the client steps (the fd holder, which reads no credential, comes first)',
    );
    const forbidden = await user.listNamespacedSecret({ namespace: SYSTEM }).catch((e: unknown) => e);
    t.match(apiMessage(forbidden), /forbidden/, "the admin's namespace is not the user's to read");
  });

  await t.test('the injected pod’s token gets exactly its volume’s credentials, and they mount it', async (t) => {
    const tokenFile = path.join(dir, 'legit-token');
    writeFileSync(tokenFile, await podToken(legit));
    const out = path.join(dir, 'legit-credentials');
    const fetch = spawnSync(
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
      { encoding: 'utf8', env: { ...process.env, JFS_CREDENTIALS_CA: ca } },
    );
    t.equal(fetch.status, 0, `jfs-sidecar credentials fetch exits 0 (${fetch.stderr.trim()})`);
    if (fetch.status !== 0) {
      const p = await core.readNamespacedPod({ name: 'app', namespace: NS });
      t.comment(JSON.stringify({ volumes: p.spec?.volumes, mounts: p.spec?.initContainers?.[0].volumeMounts }));
    }
    const files = readdirSync(out).sort();
    t.same(files, ['ACCESS_KEY', 'JFS_BUCKET', 'JFS_METAURL', 'JFS_NAME', 'JFS_STORAGE', 'SECRET_KEY', 'TZ']);
    t.equal(readFileSync(path.join(out, 'JFS_METAURL'), 'utf8'), vol.metaurl, "the admin's metaurl");
    t.equal(readFileSync(path.join(out, 'SECRET_KEY'), 'utf8'), 'admin-secret-key');
    t.equal(statSync(path.join(out, 'JFS_METAURL')).mode & 0o777, 0o400, 'files are 0400');
    t.notOk(fetch.stderr.includes(vol.metaurl), 'the step never prints a value');

    // The pod's own format and mount containers, as the kubelet would start them: env expanded, argv as written;
    // only the host paths point into the test's folder.
    const spec = (await core.readNamespacedPod({ name: 'app', namespace: NS })).spec!;
    const byName = (n: string) => spec.initContainers!.find((c) => c.name === n)!;
    const root = path.join(dir, 'mount-root');
    const mountPoint = path.join(root, legit.metadata!.uid!, 'data');
    mkdirSync(mountPoint, { recursive: true });
    const env = (c: V1Container) => {
      const values: Record<string, string> = {};
      for (const e of c.env ?? []) {
        if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.uid') values[e.name] = legit.metadata!.uid!;
        else if (e.value !== undefined) values[e.name] = expandEnvReferences([e.value], values)[0];
      }
      values.JFS_CREDENTIALS_DIR = out;
      if (values.JFS_MOUNT_POINT) values.JFS_MOUNT_POINT = mountPoint;
      return values;
    };
    const hostArgs = (args: string[]) =>
      args.map((a) =>
        a.startsWith('--cache-dir=')
          ? `--cache-dir=${path.join(dir, 'cache')}`
          : a.startsWith('--metrics=')
            ? '--no-usage-report'
            : a,
      );
    const shellEnv = (c: V1Container) => ({ PATH: `${path.join(dir, 'bin')}:/usr/bin:/bin`, ...env(c) });
    mkdirSync(path.join(dir, 'bin'));
    // `juicefs` on PATH, as in the mount image.
    spawnSync('ln', ['-s', vol.juicefs, path.join(dir, 'bin', 'juicefs')]);
    const format = byName('jfs-format');
    const f = spawnSync('busybox', ['sh', ...format.command!.slice(1)], { encoding: 'utf8', env: shellEnv(format) });
    t.equal(
      f.status,
      0,
      `the format step succeeds with the fetched credentials (${f.stderr.split('\n').slice(-3).join(' ')})`,
    );
    const mount = byName('jfs-mount');
    const child = spawn('busybox', ['sh', ...hostArgs(mount.command!.slice(1))], {
      env: shellEnv(mount),
      stdio: 'ignore',
    });
    try {
      await eventually(
        async () => (readFileSync('/proc/mounts', 'utf8').includes(` ${mountPoint} fuse.juicefs `) ? true : undefined),
        30_000,
        'the JuiceFS mount',
      );
      t.pass('the mount step mounts the volume with the fetched credentials');
    } finally {
      spawnSync('umount', ['-l', mountPoint]);
      child.kill('SIGTERM');
    }
  });

  await t.test('tokens that are not the injected pod’s get nothing', async (t) => {
    const ask = (token: string, pvc = 'data') => askBroker(url, ca, token, pvc);
    t.match(await ask(userToken), { status: 401, code: 'unauthenticated' }, "the user's own ServiceAccount token");
    t.match(await ask(await podToken(legit, 'https://kubernetes.default.svc')), { status: 401 }, 'another audience');
    // A token of the broker's audience bound to no pod: does `edit` allow TokenRequest? Ask as the user.
    const unbound = await user
      .createNamespacedServiceAccountToken({
        name: 'user',
        namespace: NS,
        body: { spec: { audiences: [BROKER_AUDIENCE] } },
      })
      .then(
        (r) => r.status!.token,
        () => undefined,
      );
    if (unbound)
      t.match(await ask(unbound), { status: 403, code: 'not-pod-bound' }, 'the user’s own token of the audience');
    else t.comment('edit does not grant serviceaccounts/token here');
    t.match(await ask(await podToken(legit), 'second'), { status: 403, code: 'not-the-pods-volume' }, 'another PVC');

    // A pod that opts out of injection but mounts a token of the broker's audience of its own.
    const optOut = await tryPod({
      metadata: { name: 'opt-out', labels: { 'disable.sidecar.juicefs.com/inject': 'true' } },
      spec: {
        containers: [{ name: 'app', image: 'busybox', volumeMounts: [{ name: 'tok', mountPath: '/t' }] }],
        volumes: [
          {
            name: 'tok',
            projected: { sources: [{ serviceAccountToken: { audience: BROKER_AUDIENCE, path: 'token' } }] },
          },
        ],
      },
    });
    t.ok(optOut.pod, 'a pod with its own projected token of the audience is created');
    t.match(await ask(await podToken(optOut.pod!)), { status: 403, code: 'not-injected' }, 'a pod not injected');

    // The injected pod copied by hand (done label: the webhook skips it), plus an app container that reads the
    // credentials emptyDir.
    const copy = structuredClone(legit);
    copy.metadata = { name: 'by-hand', labels: legit.metadata!.labels };
    delete copy.spec!.nodeName;
    copy.spec!.containers[0].volumeMounts!.push({ name: 'jfs-credentials-0', mountPath: '/steal' });
    const byHand = await tryPod(copy);
    t.ok(byHand.pod, `the hand-written pod is created (${byHand.denied ?? 'ok'})`);
    t.match(
      await ask(await podToken(byHand.pod!)),
      { status: 403, code: 'foreign-container' },
      'a pod written by hand',
    );

    // A hand-written pod whose fetch step names the PVC bound to another namespace's PV.
    const stolen = structuredClone(legit);
    stolen.metadata = { name: 'stolen', labels: legit.metadata!.labels };
    delete stolen.spec!.nodeName;
    const step = stolen.spec!.initContainers!.find((c) => c.name === 'jfs-credentials')!;
    step.args = step.args!.map((a) => (a === '--pvc=data' ? '--pvc=stolen' : a));
    const stolenPod = (await tryPod(stolen)).pod!;
    t.match(
      await ask(await podToken(stolenPod), 'stolen'),
      { status: 403, code: 'not-derivable' },
      "another namespace's PV",
    );

    // An injected pod of the other namespace: its token gets that namespace's PVC only, never the tenant's.
    const otherPod = await core.createNamespacedPod({ namespace: OTHER, body: appPod('app', 'data') });
    t.match(await ask(await podToken(otherPod), 'data'), { status: 200 }, "the other namespace's pod gets its own");
    const forOther = await askBroker(url, ca, await podToken(otherPod), 'second');
    t.match(forOther, { status: 403, code: 'not-the-pods-volume' }, "and not the tenant's");
  });

  await t.test('pods that would expose the credentials are refused at admission', async (t) => {
    const shared = await tryPod(appPod('shared', 'data', { shareProcessNamespace: true }));
    t.match(shared.denied, /shareProcessNamespace/, 'shareProcessNamespace');
    const hostPid = await tryPod(appPod('hostpid', 'data', { hostPID: true }));
    t.match(hostPid.denied, /hostPID/, 'hostPID');
    const mounting = appPod('mounting', 'data');
    mounting.spec!.containers[0].volumeMounts!.push({ name: 'jfs-credentials-0', mountPath: '/c' });
    mounting.spec!.volumes!.push({ name: 'jfs-credentials-0', emptyDir: { medium: 'Memory' } });
    t.match((await tryPod(mounting)).denied, /jfs-\*/, 'an app container mounting a jfs-* volume');
    const stolen = await tryPod(appPod('stolen-direct', 'stolen'));
    t.match(stolen.denied, /bound to another claim/, "a PVC naming another namespace's PV");
  });

  await t.test('after admission: no exec into the fetch step, no image change', async (t) => {
    const patch = await user
      .patchNamespacedPod(
        {
          name: 'app',
          namespace: NS,
          body: [{ op: 'replace', path: '/spec/initContainers/0/image', value: 'attacker/fetch' }],
        },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      )
      .catch((e: unknown) => e);
    t.match(apiMessage(patch), /after-admission/, 'the fetch step’s image cannot be changed');
    // A CONNECT as kubectl sends it, minus the stream upgrade: the policy refuses it before the API server looks
    // for a node.
    const cluster = userKc.getCurrentCluster()!;
    for (const container of ['jfs-credentials', 'jfs-mount']) {
      const target = new URL(`${cluster.server}/api/v1/namespaces/${NS}/pods/app/exec`);
      target.searchParams.set('container', container);
      target.searchParams.set('stdout', 'true');
      target.searchParams.set('command', 'env');
      const opts: https.RequestOptions = { method: 'POST', headers: {} };
      await userKc.applyToHTTPSOptions(opts);
      const status = await new Promise<number>((resolve, reject) => {
        const req = https.request(target, opts, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      });
      t.equal(status, 403, `exec into ${container} is refused`);
    }
  });
});
