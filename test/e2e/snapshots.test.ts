// VolumeSnapshots end to end on a real control plane: the real csi-snapshotter
// and snapshot-controller (external-snapshotter v8, its CRDs applied) take a
// snapshot of a PVC through the controller (`juicefs clone` in the real JuiceFS
// volume), the real csi-provisioner restores it into a new PVC, and deleting
// the VolumeSnapshot removes its copy. Data is checked through FUSE.
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubernetesObject,
  type V1PersistentVolumeClaim,
} from '@kubernetes/client-node';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { applyObjects, readManifest } from '../../src/local/components.js';
import { startControllerStack } from '../../src/local/controller-stack.js';
import { startSnapshotController } from '../../src/local/snapshot-controller.js';
import { eventually, startControlPlane } from '../env/harness.js';
import { makeVolume, withFuseMount } from '../env/juicefs.js';

const NS = 'apps';
const SYSTEM = 'juicefs-system';
const SNAP = { group: 'snapshot.storage.k8s.io', version: 'v1' };

t.setTimeout(15 * 60 * 1000);

t.test('VolumeSnapshots through csi-snapshotter, restored through csi-provisioner', async (t) => {
  const cp = await startControlPlane(t, { controllerManager: true });
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  const custom = admin.makeApiClient(CustomObjectsApi);
  const vol = makeVolume('snap');
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-snap-'));
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    vol.remove();
  });
  const snapshotController = await startSnapshotController(cp, path.join(dir, 'snapshot-controller.log'));
  t.teardown(() => snapshotController.stop());
  await applyObjects(admin, [
    ...readManifest('namespace.yaml'),
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } },
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'juicefs-secret', namespace: SYSTEM },
      stringData: vol.secrets,
    } as KubernetesObject,
  ]);
  const stack = await startControllerStack(cp, { dir, secretNamespaces: [SYSTEM], snapshots: true });
  t.teardown(async () => {
    if (!t.passing())
      t.comment(
        `controller log:\n${stack.controller.log(60)}\ncsi-snapshotter log:\n${stack.snapshotter?.log(40)}\n` +
          `snapshot-controller log:\n${snapshotController.log(40)}\ncsi-provisioner log:\n${stack.provisioner.log(30)}`,
      );
    await stack.stop();
  });
  const secret = (prefix: string) => ({
    [`csi.storage.k8s.io/${prefix}-secret-name`]: 'juicefs-secret',
    [`csi.storage.k8s.io/${prefix}-secret-namespace`]: SYSTEM,
  });
  await applyObjects(admin, [
    {
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name: 'jfs' },
      provisioner: 'csi.juicefs.com',
      reclaimPolicy: 'Delete',
      parameters: { ...secret('provisioner'), ...secret('node-publish') },
    } as KubernetesObject,
    {
      apiVersion: 'snapshot.storage.k8s.io/v1',
      kind: 'VolumeSnapshotClass',
      metadata: { name: 'jfs-snapshots' },
      driver: 'csi.juicefs.com',
      deletionPolicy: 'Delete',
      parameters: secret('snapshotter'),
    } as KubernetesObject,
  ]);

  const pvc = (name: string, storage: string, dataSource?: V1PersistentVolumeClaim['spec']) =>
    core.createNamespacedPersistentVolumeClaim({
      namespace: NS,
      body: {
        metadata: { name },
        spec: {
          accessModes: ['ReadWriteMany'],
          storageClassName: 'jfs',
          resources: { requests: { storage } },
          ...dataSource,
        },
      },
    });
  const bound = (name: string) =>
    eventually(
      async () => {
        const c = await core.readNamespacedPersistentVolumeClaim({ name, namespace: NS });
        return c.status?.phase === 'Bound' ? c : undefined;
      },
      90_000,
      `PVC ${name} to be Bound`,
    );
  const inVolume = <T>(fn: (mnt: string) => T) => withFuseMount(vol, fn);

  await pvc('source', '2Gi');
  const sourcePv = (await bound('source')).spec!.volumeName!;
  await inVolume((mnt) => writeFileSync(path.join(mnt, sourcePv, 'data.txt'), 'before the snapshot'));

  const started = Date.now();
  await custom.createNamespacedCustomObject({
    ...SNAP,
    namespace: NS,
    plural: 'volumesnapshots',
    body: {
      apiVersion: 'snapshot.storage.k8s.io/v1',
      kind: 'VolumeSnapshot',
      metadata: { name: 'snap-1' },
      spec: { volumeSnapshotClassName: 'jfs-snapshots', source: { persistentVolumeClaimName: 'source' } },
    },
  });
  type Snapshot = { status?: { readyToUse?: boolean; boundVolumeSnapshotContentName?: string; restoreSize?: string } };
  const ready = await eventually(
    async () => {
      const s = (await custom.getNamespacedCustomObject({
        ...SNAP,
        namespace: NS,
        plural: 'volumesnapshots',
        name: 'snap-1',
      })) as Snapshot;
      return s.status?.readyToUse ? s : undefined;
    },
    90_000,
    'the VolumeSnapshot to be readyToUse',
  );
  t.comment(`VolumeSnapshot created → readyToUse in ${Date.now() - started} ms`);
  t.equal(ready.status?.restoreSize, '2Gi', "restoreSize is the source's capacity");
  const content = (await custom.getClusterCustomObject({
    ...SNAP,
    plural: 'volumesnapshotcontents',
    name: ready.status!.boundVolumeSnapshotContentName!,
  })) as { status?: { snapshotHandle?: string } };
  const handle = content.status?.snapshotHandle ?? '';
  t.match(handle, new RegExp(`^snapshot-[0-9a-f-]+\\|${sourcePv}$`), "the reference's handle: <name>|<source volume>");
  const snapDir = `.snapshots/${sourcePv}/${handle.split('|')[0]}`;
  await inVolume((mnt) => {
    t.equal(readFileSync(path.join(mnt, snapDir, 'data.txt'), 'utf8'), 'before the snapshot', 'the copy holds it');
    writeFileSync(path.join(mnt, sourcePv, 'data.txt'), 'after the snapshot');
  });

  await pvc('restored', '2Gi', {
    dataSource: { apiGroup: 'snapshot.storage.k8s.io', kind: 'VolumeSnapshot', name: 'snap-1' },
  });
  const restoredPv = (await bound('restored')).spec!.volumeName!;
  await inVolume((mnt) => {
    t.equal(
      readFileSync(path.join(mnt, restoredPv, 'data.txt'), 'utf8'),
      'before the snapshot',
      'the restored PVC holds the data as it was when the snapshot was taken',
    );
    t.equal(readFileSync(path.join(mnt, sourcePv, 'data.txt'), 'utf8'), 'after the snapshot', 'the source moved on');
  });
  t.match(vol.run(['quota', 'get', vol.metaurl, `--path=/${restoredPv}`]), /2\.0 GiB|2 GiB/, 'with its quota');

  await pvc('too-small', '1Gi', {
    dataSource: { apiGroup: 'snapshot.storage.k8s.io', kind: 'VolumeSnapshot', name: 'snap-1' },
  });
  const refused = await eventually(
    async () =>
      (await core.listNamespacedEvent({ namespace: NS, fieldSelector: 'involvedObject.name=too-small' })).items.find(
        (e) => e.reason === 'ProvisioningFailed',
      ),
    60_000,
    'a ProvisioningFailed event for a PVC smaller than the snapshot',
  );
  t.match(refused.message, /less than the size|snapshot/, String(refused.message));

  // A PVC restoring from a snapshot, even a Pending one, keeps it from deletion (snapshot-controller's rule).
  await core.deleteNamespacedPersistentVolumeClaim({ name: 'too-small', namespace: NS });
  await custom.deleteNamespacedCustomObject({ ...SNAP, namespace: NS, plural: 'volumesnapshots', name: 'snap-1' });
  await eventually(
    async () => inVolume((mnt) => !existsSync(path.join(mnt, snapDir))),
    60_000,
    "the snapshot's copy to be deleted",
  );
  await inVolume((mnt) => {
    t.notOk(existsSync(path.join(mnt, '.snapshots')), 'no snapshot left');
    t.equal(readFileSync(path.join(mnt, restoredPv, 'data.txt'), 'utf8'), 'before the snapshot', 'the restore stays');
  });
});
