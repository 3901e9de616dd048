// The informer caches keep lean objects (src/k8s/lean-objects.ts): every golden case must inject exactly as
// from the whole objects, so no field a reader uses is dropped; and what is dropped is what a real object
// carries in bulk (managedFields, status, kubectl's last-applied copy).
import type { KubernetesObject, V1PersistentVolumeClaim, V1StorageClass } from '@kubernetes/client-node';
import t from 'tap';
import { LIST_PAGE_SIZE, pagedList } from '../../src/k8s/informer.js';
import { leanPv, leanPvc, leanSecret, leanStorageClass } from '../../src/k8s/lean-objects.js';
import { withData } from '../../src/resolve/object-view.js';
import { listCases, renderGolden } from '../golden/golden.js';

function lean(o: KubernetesObject): KubernetesObject {
  const kept = { apiVersion: o.apiVersion, kind: o.kind };
  switch (o.kind) {
    case 'PersistentVolumeClaim':
      return { ...kept, ...leanPvc(o) };
    case 'PersistentVolume':
      return { ...kept, ...leanPv(o) };
    case 'StorageClass':
      return { ...kept, ...leanStorageClass(o as V1StorageClass) };
    case 'Secret':
      // The API server folds stringData into data before any informer sees it.
      return { ...kept, ...leanSecret(withData(o)) };
    default:
      return o;
  }
}

t.test('every golden case injects the same from lean cache objects', async (t) => {
  const cases = listCases();
  t.ok(cases.length > 20, `${cases.length} cases`);
  for (const c of cases) {
    const from = renderGolden({ ...c, objects: c.objects.map(lean) });
    t.equal(from, renderGolden(c), c.name);
  }
});

const bulk = {
  managedFields: [{ manager: 'kubectl', operation: 'Update', fieldsV1: { 'f:metadata': {} } }],
  creationTimestamp: new Date(0),
  finalizers: ['kubernetes.io/pvc-protection'],
};

t.test(
  'a lean PVC keeps identity, labels, annotations, class, modes, request and volume; drops the rest',
  async (t) => {
    const pvc: V1PersistentVolumeClaim = {
      metadata: {
        name: 'data',
        namespace: 'apps',
        uid: 'u1',
        resourceVersion: '7',
        labels: { app: 'a' },
        annotations: {
          'kubectl.kubernetes.io/last-applied-configuration': '{"big":1}',
          'pv.kubernetes.io/bind-completed': 'yes',
          'volume.kubernetes.io/storage-provisioner': 'csi.juicefs.com',
          'juicefs/mount-cpu-limit': '1',
        },
        ...bulk,
      },
      spec: {
        accessModes: ['ReadWriteMany'],
        storageClassName: 'jfs',
        volumeName: 'pv-1',
        resources: { requests: { storage: '1Gi' }, limits: { storage: '2Gi' } },
      },
      status: { phase: 'Bound', capacity: { storage: '1Gi' } },
    };
    t.same(leanPvc(pvc), {
      metadata: {
        name: 'data',
        namespace: 'apps',
        uid: 'u1',
        resourceVersion: '7',
        labels: { app: 'a' },
        annotations: { 'juicefs/mount-cpu-limit': '1' },
      },
      spec: {
        accessModes: ['ReadWriteMany'],
        resources: { requests: { storage: '1Gi' } },
        storageClassName: 'jfs',
        volumeName: 'pv-1',
      },
    });
    t.equal(leanPvc({ spec: { storageClassName: '' } }).spec?.storageClassName, '', 'an empty class is a class');
  },
);

t.test('a lean PV keeps its CSI source and claim; a lean Secret its data, type and owners', async (t) => {
  const pv = leanPv({
    metadata: { name: 'pv-1', ...bulk },
    spec: {
      csi: { driver: 'csi.juicefs.com', volumeHandle: 'pv-1' },
      claimRef: { namespace: 'apps', name: 'data', uid: 'u1', resourceVersion: '3', kind: 'PersistentVolumeClaim' },
      capacity: { storage: '1Gi' },
      storageClassName: 'jfs',
    },
    status: { phase: 'Bound' },
  });
  t.same(pv, {
    metadata: { name: 'pv-1' },
    spec: {
      csi: { driver: 'csi.juicefs.com', volumeHandle: 'pv-1' },
      storageClassName: 'jfs',
      claimRef: { namespace: 'apps', name: 'data', uid: 'u1' },
    },
  });
  const owners = [{ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'data', uid: 'u1' }];
  const secret = leanSecret({
    metadata: {
      name: 's',
      namespace: 'juicefs-system',
      ownerReferences: owners,
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"stringData":{"metaurl":"x"}}' },
      ...bulk,
    },
    type: 'Opaque',
    data: { metaurl: 'eA==' },
    immutable: true,
  });
  t.same(secret, {
    metadata: { name: 's', namespace: 'juicefs-system', ownerReferences: owners },
    type: 'Opaque',
    data: { metaurl: 'eA==' },
    immutable: true,
  });
});

t.test('a paged LIST: every page fetched with the continue token, each transformed, one list out', async (t) => {
  const asked: (string | undefined)[] = [];
  const pages = [
    { metadata: { resourceVersion: '9', _continue: 'a' }, items: [{ metadata: { name: '1', managedFields: [] } }] },
    { metadata: { resourceVersion: '9', _continue: 'b' }, items: [{ metadata: { name: '2' } }] },
    { metadata: { resourceVersion: '9' }, items: [{ metadata: { name: '3' } }] },
  ];
  const list = pagedList<V1PersistentVolumeClaim>(async (page) => {
    t.equal(page.limit, LIST_PAGE_SIZE);
    asked.push(page._continue);
    return pages[asked.length - 1];
  }, leanPvc);
  const out = await list();
  t.same(asked, [undefined, 'a', 'b']);
  t.same(
    out.items.map((o) => o.metadata),
    [{ name: '1' }, { name: '2' }, { name: '3' }],
  );
  t.equal(out.metadata?.resourceVersion, '9');
  t.notOk(out.metadata?._continue);
});
