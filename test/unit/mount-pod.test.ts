// The Mount Pod plan: same settings code path as the sidecar, contract labels,
// stable hash, reference keys.
import t from 'tap';
import { DEFAULT_GLOBAL_CONFIG } from '../../src/config/schema.js';
import type { ResolvedVolume } from '../../src/inject/types.js';
import { planMountPod, referenceKey, referencesOf } from '../../src/node/mount-pod.js';

const volume: ResolvedVolume = {
  podVolumeName: 'data',
  pvcName: 'data',
  pvcLabels: { tier: 'gold' },
  pvcAnnotations: { 'juicefs/mount-image': 'evil' },
  pvName: 'pvc-1234',
  subdir: 'pvc-1234',
  readOnly: false,
  attributes: { 'juicefs/mount-cpu-limit': '3', 'juicefs/mount-delete-delay': '1m' },
  mountOptions: ['cache-size=100'],
  secret: { name: 'juicefs-pvc-1234-secret', keys: ['metaurl', 'name'], envNames: [], formatOptions: [] },
};
const options = { mode: 'sidecar' as const, config: DEFAULT_GLOBAL_CONFIG };

t.test('a Mount Pod for one PV on one node', async (t) => {
  const plan = planMountPod({ nodeName: 'node-a', namespace: 'juicefs-system', volume, options });
  const pod = plan.pod;
  t.equal(pod.spec?.nodeName, 'node-a');
  t.same(
    { app: pod.metadata?.labels?.['app.kubernetes.io/name'], id: pod.metadata?.labels?.['volume-id'], hash: pod.metadata?.labels?.['juicefs-hash'] },
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
  t.equal(planMountPod({ nodeName: 'other', namespace: 'ns', volume, options }).hash, a.hash, 'node does not change it');
  t.not(planMountPod({ nodeName: 'n', namespace: 'ns', volume: { ...volume, mountOptions: ['cache-size=200'] }, options }).hash, a.hash);
  t.not(planMountPod({ nodeName: 'n', namespace: 'ns', volume, options: { ...options, defaultMountImage: 'x:2' } }).hash, a.hash);
});

t.test('reference annotations', async (t) => {
  const target = '/var/lib/kubelet/pods/0b9d/volumes/kubernetes.io~csi/pvc-1234/mount';
  const key = referenceKey(target);
  t.equal(key.length, 63);
  t.ok(key.startsWith('juicefs-'));
  const pod = { metadata: { annotations: { [key]: target, 'juicefs-delete-delay': '1m', other: 'x' } } };
  t.same(referencesOf(pod), [target]);
});
