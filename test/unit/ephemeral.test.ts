// Issue 11, class 3: what an ephemeral container of an injected pod may not do,
// through the AdmissionReview the API server sends for pods/ephemeralcontainers.
import type { V1EphemeralContainer, V1Pod } from '@kubernetes/client-node';
import { pino } from 'pino';
import t from 'tap';
import { parseGlobalConfig } from '../../src/config/schema.js';
import { injectPod } from '../../src/inject/inject.js';
import type { InjectMode } from '../../src/inject/types.js';
import type { ResolvedVolume } from '../../src/resolve/types.js';
import { review, type AdmissionDeps } from '../../src/webhook/admission.js';

const volume: ResolvedVolume = {
  source: {
    pvName: 'pv',
    subdir: 'pv',
    readOnly: false,
    attributes: {},
    mountOptions: [],
    secret: { name: 's', keys: ['metaurl'], envNames: [], formatFlags: [] },
  },
  binding: { podVolumeName: 'data', pvc: { name: 'data', namespace: 'ns', labels: {}, annotations: {} } },
};

function injected(mode: InjectMode): V1Pod {
  const out = injectPod(
    {
      metadata: { name: 'app', namespace: 'ns' },
      spec: {
        containers: [{ name: 'app', image: 'busybox', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
        volumes: [
          { name: 'data', persistentVolumeClaim: { claimName: 'data' } },
          { name: 'scratch', emptyDir: {} },
          { name: 'token', projected: { sources: [] } },
        ],
      },
    },
    [volume],
    { mode, config: parseGlobalConfig('') },
  );
  if (out.kind !== 'injected') throw new Error('not injected');
  // What the API server adds to every container, the sidecar included.
  for (const c of out.pod.spec!.initContainers!) c.volumeMounts!.push({ name: 'token', mountPath: '/var/run/sa' });
  return out.pod;
}

const deps: AdmissionDeps = {
  view: {
    getPvc: () => undefined,
    getPv: () => undefined,
    getStorageClass: () => undefined,
    getSecret: () => undefined,
  },
  options: () => ({ mode: 'sidecar', config: parseGlobalConfig('') }),
  onError: 'deny',
  log: pino({ level: 'silent' }),
};

function admit(old: V1Pod, ec: V1EphemeralContainer) {
  const pod = structuredClone(old);
  pod.spec!.ephemeralContainers = [...(pod.spec!.ephemeralContainers ?? []), ec];
  const r = review(
    {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid: 'u',
        kind: { group: '', version: 'v1', kind: 'Pod' },
        resource: { group: '', version: 'v1', resource: 'pods' },
        subResource: 'ephemeralcontainers',
        operation: 'UPDATE',
        namespace: 'ns',
        object: pod,
        oldObject: old,
      },
    },
    deps,
  );
  if (r.kind !== 'review') throw new Error(r.message);
  return r.review.response;
}

for (const mode of ['sidecar', 'serverless'] as const) {
  t.test(`${mode}: ephemeral containers keep off the injector's volumes and containers`, async (t) => {
    const pod = injected(mode);
    const cacheVolume = pod.spec!.volumes!.find((v) => v.name.startsWith('jfs-cache'))!.name;
    for (const name of ['data', cacheVolume]) {
      const r = admit(pod, { name: 'peek', image: 'busybox', volumeMounts: [{ name, mountPath: '/x' }] });
      t.equal(r.allowed, false, `mounting ${name} is denied`);
      t.match(r.status?.message, /\[ephemeral-container\]/);
    }
    const target = admit(pod, { name: 'peek', image: 'busybox', targetContainerName: 'jfs-mount' });
    t.equal(target.allowed, false, 'targeting jfs-mount is denied');
    for (const name of ['scratch', 'token'])
      t.equal(
        admit(pod, { name: 'ok', image: 'busybox', volumeMounts: [{ name, mountPath: '/x' }] }).allowed,
        true,
        `mounting the pod's own ${name} is allowed`,
      );
    t.equal(admit(pod, { name: 'ok', image: 'busybox', targetContainerName: 'app' }).allowed, true);
    t.notOk(admit(pod, { name: 'ok', image: 'busybox' }).patch, 'nothing is patched');
    // One admitted before (e.g. under older rules) does not block the next.
    const withOld = structuredClone(pod);
    withOld.spec!.ephemeralContainers = [
      { name: 'old', image: 'busybox', volumeMounts: [{ name: 'data', mountPath: '/x' }] },
    ];
    t.equal(admit(withOld, { name: 'ok', image: 'busybox' }).allowed, true, 'only added containers are judged');
  });
}

t.test('a pod without injected containers is not judged', async (t) => {
  const plain: V1Pod = {
    metadata: { name: 'p', namespace: 'ns' },
    spec: {
      containers: [{ name: 'app', image: 'busybox' }],
      volumes: [{ name: 'h', hostPath: { path: '/var/lib/juicefs/volume' } }],
    },
  };
  t.equal(admit(plain, { name: 'x', image: 'busybox', volumeMounts: [{ name: 'h', mountPath: '/h' }] }).allowed, true);
});
