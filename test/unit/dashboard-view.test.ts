// The dashboard's pure parts: the linked view built from objects (app pod ↔ Mount Pod ↔ PV ↔ StorageClass,
// sidecar pods ↔ PVC through the Secret copy), the ConfigMap's selector matches and drift; the write requests'
// checks.
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod, V1StorageClass } from '@kubernetes/client-node';
import t from 'tap';
import { secretCopyName } from '../../src/contract/secret-copy.js';
import { buildView, type ClusterObjects } from '../../src/dashboard/view.js';
import { parseConfigRequest, parseUpgradeRequest } from '../../src/dashboard/requests.js';
import { bearerToken, UserFacingError } from '../../src/dashboard/user-api.js';
import { referenceKey, volumeLabel } from '../../src/node/mount-pod-plan.js';

const sc: V1StorageClass = { metadata: { name: 'jfs' }, provisioner: 'csi.juicefs.com' };
const other: V1StorageClass = { metadata: { name: 'local' }, provisioner: 'rancher.io/local-path' };
const pv: V1PersistentVolume = {
  metadata: { name: 'pvc-1' },
  spec: {
    storageClassName: 'jfs',
    claimRef: { namespace: 'a', name: 'data' },
    csi: { driver: 'csi.juicefs.com', volumeHandle: 'pvc-1' },
  },
  status: { phase: 'Bound' },
};
const pvc = (name: string, storageClassName: string, volumeName?: string): V1PersistentVolumeClaim => ({
  metadata: { name, namespace: 'a', labels: { tier: 'gold' } },
  spec: { storageClassName, volumeName },
  status: { phase: volumeName ? 'Bound' : 'Pending' },
});
const app: V1Pod = {
  metadata: { name: 'web', namespace: 'a', uid: '11111111-2222-3333-4444-555555555555' },
  spec: {
    nodeName: 'n1',
    containers: [{ name: 'app' }],
    volumes: [{ name: 'v', persistentVolumeClaim: { claimName: 'data' } }],
  },
  status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] },
};
const target = `/var/lib/kubelet/pods/${app.metadata!.uid}/volumes/kubernetes.io~csi/pvc-1/mount`;
const mountPod: V1Pod = {
  metadata: {
    name: 'juicefs-n1-pvc-1-x',
    namespace: 'juicefs-system',
    labels: { 'app.kubernetes.io/name': 'juicefs-mount', 'volume-id': volumeLabel('pvc-1') },
    annotations: { [referenceKey(target)]: target },
  },
  spec: {
    nodeName: 'n1',
    containers: [{ name: 'jfs-mount', image: 'mount:1', command: ['juicefs', 'mount', '-o', 'cache-size=1'] }],
  },
  status: { phase: 'Running' },
};
const sidecar: V1Pod = {
  metadata: { name: 'api', namespace: 'a', uid: 'u2', labels: { app: 'api' } },
  spec: {
    nodeName: 'n2',
    initContainers: [
      {
        name: 'jfs-mount',
        image: 'mount:1',
        restartPolicy: 'Always',
        env: [{ name: 'JFS_METAURL', valueFrom: { secretKeyRef: { name: secretCopyName('data'), key: 'metaurl' } } }],
      },
    ],
    containers: [{ name: 'app' }],
  },
  status: {
    phase: 'Running',
    initContainerStatuses: [
      {
        name: 'jfs-mount',
        image: 'mount:1',
        imageID: '',
        ready: false,
        restartCount: 3,
        state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off' } },
      },
    ],
  },
};
const unrelated: V1Pod = {
  metadata: { name: 'db', namespace: 'a', uid: 'u3' },
  spec: { containers: [{ name: 'db' }] },
};

const objects = (config?: string): ClusterObjects => ({
  pods: [app, mountPod, sidecar, unrelated],
  pvcs: [pvc('data', 'jfs', 'pvc-1'), pvc('logs', 'local')],
  pvs: [pv],
  storageClasses: [sc, other],
  events: [
    {
      metadata: { name: 'e1' },
      involvedObject: { kind: 'Pod', namespace: 'a', name: 'api' },
      reason: 'BackOff',
      type: 'Warning',
      message: 'restarting',
      lastTimestamp: new Date('2026-01-01T00:00:00Z'),
    },
    { metadata: { name: 'e2' }, involvedObject: { kind: 'Pod', namespace: 'a', name: 'db' }, reason: 'Pulled' },
  ],
  configMap: config === undefined ? undefined : { metadata: { resourceVersion: '7' }, data: { 'config.yaml': config } },
  upgrades: [],
});

t.test('links: app pod → Mount Pod → PV → StorageClass, and back; sidecar pods by their Secret copy', async (t) => {
  const v = buildView(objects());
  t.same(
    v.appPods.map((p) => [p.name, p.mode, p.pvcs, p.mountPods]),
    [
      ['api', 'sidecar', ['a/data'], []],
      ['web', 'mount-pod', ['a/data'], ['juicefs-system/juicefs-n1-pvc-1-x']],
    ],
    'JuiceFS pods only, each with its PVCs and Mount Pods',
  );
  t.same(v.mountPods[0].appPods, ['a/web']);
  t.equal(v.mountPods[0].pv, 'pvc-1');
  t.same(v.mountPods[0].client?.flags, ['-o cache-size=1']);
  t.same(v.pvs[0].mountPods, ['juicefs-system/juicefs-n1-pvc-1-x']);
  t.equal(v.pvs[0].claim, 'a/data');
  t.same(
    v.pvcs.map((c) => [c.name, c.appPods]),
    [['data', ['a/api', 'a/web']]],
    'PVCs of other classes are left out',
  );
  t.same(
    v.storageClasses.map((s) => [s.name, s.pvs, s.pvcs]),
    [['jfs', ['pvc-1'], ['a/data']]],
  );
  t.same(v.appPods[0].sidecars[0].problem, 'CrashLoopBackOff: back-off', 'why the client is down');
  t.same(
    v.events.map((e) => e.reason),
    ['BackOff'],
    'events of the objects shown only',
  );
  t.same(v.nodes, [
    { name: 'n1', mountPods: 1, sidecarPods: 0, appPods: 1 },
    { name: 'n2', mountPods: 0, sidecarPods: 1, appPods: 1 },
  ]);
});

t.test('the ConfigMap: which PVCs each pvcSelector matches, and the clients that differ', async (t) => {
  const v = buildView(
    objects(
      'mountPodPatch:\n  - pvcSelector: {matchStorageClassName: jfs}\n    ceMountImage: mount:2\n    mountOptions: [cache-size=9]\n',
    ),
  );
  t.same(
    v.config.patches.map((p) => [p.index, p.pvcs, p.image]),
    [[0, ['a/data'], 'mount:2']],
  );
  t.same(v.pvcs[0].patches, [0]);
  t.same(v.config.drift, [
    {
      pod: 'a/api',
      container: 'jfs-mount',
      pvc: 'a/data',
      runningImage: 'mount:1',
      configImage: 'mount:2',
      missingOptions: ['cache-size=9'],
    },
  ]);
  const broken = buildView(objects('mountPodPatch: 3\n'));
  t.match(broken.config.error, /mountPodPatch/, 'an invalid config.yaml is shown with its error, not thrown');
  t.same(broken.config.patches, []);
  t.equal(buildView(objects()).config.present, false);
});

t.test('write requests: checked before anything reaches the API server', async (t) => {
  t.same(parseUpgradeRequest({ spec: { target: { image: 'mount:2' }, selector: { namespaces: ['a'] } } }), {
    name: undefined,
    spec: { kind: 'sidecar', target: { image: 'mount:2' }, selector: { namespaces: ['a'] } },
  });
  t.same(
    parseUpgradeRequest({
      spec: { kind: 'sidecar', target: { fromSettings: true }, strategy: { maxUnavailable: '50%', partition: 2 } },
    }).spec,
    {
      kind: 'sidecar',
      target: { fromSettings: true },
      strategy: { maxUnavailable: '50%', partition: 2 },
    },
  );
  const refused = (body: unknown) => {
    try {
      parseUpgradeRequest(body);
      return 'accepted';
    } catch (err) {
      return err instanceof UserFacingError ? `${err.statusCode} ${err.message}` : `crash ${String(err)}`;
    }
  };
  t.match(refused(null), /^400 the body must be a JSON object/);
  t.match(refused({ spec: { target: {} } }), /^400 spec\.target needs an image/);
  t.match(refused({ spec: { target: { image: 'a b' } } }), /^400 spec\.target\.image/);
  t.match(refused({ name: 'Bad_Name', spec: { target: { image: 'x' } } }), /^400 name must be/);
  t.match(
    refused({ spec: { target: { image: 'x' }, strategy: { maxUnavailable: 0 } } }),
    /^400 strategy\.maxUnavailable/,
  );
  t.match(refused({ spec: { target: { image: 'x' }, selector: { namespaces: 'a' } } }), /^400 selector\.namespaces/);
  t.match(
    refused({ spec: { target: { image: 'x' }, selector: { podSelector: { matchLabels: { a: 1 } } } } }),
    /^400 selector\.podSelector/,
  );
  t.throws(() => parseConfigRequest({ text: 3 }), /text must be/);
  t.same(parseConfigRequest({ text: 'a: 1\n', resourceVersion: '5' }), { text: 'a: 1\n', resourceVersion: '5' });
  t.equal(bearerToken('Bearer abc.def'), 'abc.def');
  t.equal(bearerToken('Basic abc'), undefined);
  t.equal(bearerToken(undefined), undefined);
});
