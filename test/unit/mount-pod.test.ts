// The Mount Pod plan: same settings code path as the sidecar, contract labels,
// stable hash, reference keys.
import t from 'tap';
import { DEFAULT_GLOBAL_CONFIG } from '../../src/config/schema.js';
import type { VolumeSource } from '../../src/mount/volume.js';
import { planCleanCacheJob, wantsCacheCleanup } from '../../src/node/clean-cache.js';
import { annotationPatch, planMountPod, referenceKey, referencesOf } from '../../src/node/mount-pod-plan.js';
import fjp from 'fast-json-patch';

const claim = {
  name: 'data',
  namespace: 'team-a',
  labels: { tier: 'gold' },
  annotations: { 'juicefs/mount-image': 'evil' },
};
const volume: VolumeSource = {
  pvName: 'pvc-1234',
  subdir: 'pvc-1234',
  readOnly: false,
  attributes: { 'juicefs/mount-cpu-limit': '3', 'juicefs/mount-delete-delay': '1m' },
  mountOptions: ['cache-size=100'],
  secret: { name: 'juicefs-pvc-1234-secret', keys: ['metaurl', 'name'], envNames: [], formatFlags: [] },
};
const options = { mode: 'sidecar' as const, config: DEFAULT_GLOBAL_CONFIG };

t.test('a Mount Pod for one PV on one node', async (t) => {
  const plan = planMountPod({ nodeName: 'node-a', namespace: 'juicefs-system', volume, claim, options });
  const pod = plan.pod;
  t.equal(pod.spec?.nodeName, 'node-a');
  t.same(
    {
      app: pod.metadata?.labels?.['app.kubernetes.io/name'],
      id: pod.metadata?.labels?.['volume-id'],
      hash: pod.metadata?.labels?.['juicefs-hash'],
    },
    { app: 'juicefs-mount', id: 'pvc-1234', hash: plan.hash },
  );
  t.equal(pod.metadata?.annotations?.['juicefs-delete-delay'], '1m');
  const c = pod.spec!.containers[0];
  t.equal(c.securityContext?.privileged, true);
  t.equal(c.resources?.limits?.cpu, '3', 'PV attribute applied through the shared settings code');
  t.ok(c.command?.includes('--subdir=pvc-1234'));
  t.ok(c.readinessProbe, 'Ready once mounted');
  t.equal(c.env?.find((e) => e.name === 'JFS_MOUNT_POINT')?.value, plan.mountPoint);
  t.match(plan.mountPoint, /^\/var\/lib\/juicefs\/volume\/pvc-1234-[0-9a-f]{10}$/);
  t.ok(pod.metadata!.name!.length <= 63);
  t.equal(c.image, 'juicedata/mount:ce-v1.3.1', 'a PVC annotation cannot choose the image');
});

t.test('the hash follows the mount settings only', async (t) => {
  const a = planMountPod({ nodeName: 'n', namespace: 'ns', volume, options });
  t.equal(
    planMountPod({ nodeName: 'other', namespace: 'ns', volume, options }).hash,
    a.hash,
    'node does not change it',
  );
  t.not(
    planMountPod({ nodeName: 'n', namespace: 'ns', volume: { ...volume, mountOptions: ['cache-size=200'] }, options })
      .hash,
    a.hash,
  );
  t.not(
    planMountPod({ nodeName: 'n', namespace: 'ns', volume, options: { ...options, defaultMountImage: 'x:2' } }).hash,
    a.hash,
  );
});

t.test('reference annotations', async (t) => {
  const target = '/var/lib/kubelet/pods/0b9d/volumes/kubernetes.io~csi/pvc-1234/mount';
  const key = referenceKey(target);
  t.equal(key.length, 63);
  t.ok(key.startsWith('juicefs-'));
  const pod = { metadata: { annotations: { [key]: target, 'juicefs-delete-delay': '1m', other: 'x' } } };
  t.same(referencesOf(pod), [target]);
});

t.test('juicefs/clean-cache: the cleanup Job is planned from the Mount Pod alone', async (t) => {
  const cleaning = {
    ...volume,
    attributes: { ...volume.attributes, 'juicefs/clean-cache': 'true' },
    mountOptions: ['cache-dir=/data/a:/data/b'],
  };
  const plan = planMountPod({ nodeName: 'node-a', namespace: 'juicefs-system', volume: cleaning, options });
  const pod = { ...plan.pod, metadata: { ...plan.pod.metadata, uid: 'uid-1' } };
  t.ok(wantsCacheCleanup(pod), 'the Mount Pod carries juicefs-clean-cache');
  t.notOk(
    wantsCacheCleanup(planMountPod({ nodeName: 'node-a', namespace: 'ns', volume, options }).pod),
    'not without the attribute',
  );
  const job = planCleanCacheJob(pod)!;
  t.equal(job.metadata?.namespace, 'juicefs-system');
  t.equal(job.metadata?.labels?.['app.kubernetes.io/name'], 'juicefs-clean-cache');
  const spec = job.spec!.template.spec!;
  t.equal(spec.nodeName, 'node-a', "runs on the Mount Pod's node");
  t.same(
    spec.volumes?.map((v) => v.hostPath?.path),
    ['/data/a', '/data/b'],
    "the Mount Pod's cache folders",
  );
  const c = spec.containers[0];
  t.same(c.command?.slice(-2), ['/data/a', '/data/b']);
  t.equal(c.image, pod.spec!.containers[0].image, "the Mount Pod's image (it has juicefs)");
  t.same(
    c.env?.map((e) => e.name),
    ['JFS_METAURL'],
    "only the metadata URL, from the Mount Pod's Secret",
  );
  t.equal(c.env?.[0].valueFrom?.secretKeyRef?.name, cleaning.secret.name);
  t.equal(planCleanCacheJob(pod)!.metadata?.name, job.metadata?.name, 'one Job name per Mount Pod: a retry finds it');
  const memoryOnly = planMountPod({
    nodeName: 'n',
    namespace: 'ns',
    volume: { ...cleaning, mountOptions: ['cache-dir=memory'] },
    options,
  }).pod;
  t.equal(planCleanCacheJob(memoryOnly), undefined, 'nothing on disk to clean');
});

t.test('annotation patches are diffs, led by their preconditions', async (t) => {
  const pod = {
    metadata: {
      resourceVersion: '7',
      annotations: { 'juicefs-a': '/t/a', 'juicefs-delete-at': 'x', 'example.com/keep': 'k' },
    },
  };
  const ops = annotationPatch(pod, {
    set: { 'juicefs-b': '/t/b' },
    remove: ['juicefs-delete-at'],
    expect: { 'juicefs-a': '/t/a' },
    resourceVersion: '7',
  });
  t.same(
    ops.slice(0, 2).map((o) => o.op),
    ['test', 'test'],
    'preconditions first',
  );
  const applied = fjp.applyPatch(structuredClone(pod), ops).newDocument;
  t.same(applied.metadata.annotations, { 'juicefs-a': '/t/a', 'juicefs-b': '/t/b', 'example.com/keep': 'k' });
  t.throws(
    () => fjp.applyPatch(structuredClone({ ...pod, metadata: { ...pod.metadata, resourceVersion: '8' } }), ops),
    'a changed pod fails the test op',
  );
  const empty: { metadata: { annotations?: Record<string, string> } } = { metadata: {} };
  const fresh = fjp.applyPatch(empty, annotationPatch(empty, { set: { 'juicefs-a': '/t/a' } })).newDocument;
  t.same(fresh.metadata.annotations, { 'juicefs-a': '/t/a' }, 'a pod without annotations gets the map');
  const slashy = annotationPatch(
    { metadata: { annotations: { 'a/b': '1' } } },
    { remove: ['a/b'], expect: { 'a/b': '1' } },
  );
  t.equal(slashy[0].path, '/metadata/annotations/a~1b', 'keys escaped as JSON Pointer tokens');
});
