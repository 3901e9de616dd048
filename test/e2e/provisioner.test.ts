// Dynamic provisioning end to end: the real csi-provisioner drives the
// controller over its socket on a real control plane; the PV directories are
// checked by mounting the JuiceFS volume with the real client through FUSE.
import {
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
  type V1PersistentVolume,
  type V1PersistentVolumeClaim,
} from '@kubernetes/client-node';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { applyObjects, readManifest } from '../../src/local/components.js';
import { startControllerStack } from '../../src/local/controller-stack.js';
import { startWebhookStack } from '../../src/local/webhook-stack.js';
import { REGISTRY_DIR } from '../../src/controller/registry.js';
import { eventually, startControlPlane } from '../env/harness.js';
import { makeVolume, withFuseMount } from '../env/juicefs.js';
import { setTimeout as sleep } from 'node:timers/promises';

const NS = 'apps';
const SYSTEM = 'juicefs-system';

t.setTimeout(25 * 60 * 1000);

t.test('csi-provisioner + controller on a real control plane', async (t) => {
  const cp = await startControlPlane(t, { controllerManager: true });
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  const vol = makeVolume('prov');
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-prov-'));
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    vol.remove();
  });

  await applyObjects(admin, [
    ...readManifest('namespace.yaml'),
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: NS, labels: { 'juicefs.com/enable-injection': 'true' } },
    },
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'juicefs-secret', namespace: SYSTEM },
      stringData: vol.secrets,
    } as KubernetesObject,
  ]);
  const stack = await startControllerStack(cp, { dir, secretNamespaces: [SYSTEM] });
  t.teardown(async () => {
    if (!t.passing())
      t.comment(`controller log:\n${stack.controller.log(50)}\ncsi-provisioner log:\n${stack.provisioner.log(30)}`);
    await stack.stop();
  });

  const params = {
    'csi.storage.k8s.io/provisioner-secret-name': 'juicefs-secret',
    'csi.storage.k8s.io/provisioner-secret-namespace': SYSTEM,
    'csi.storage.k8s.io/node-publish-secret-name': 'juicefs-secret',
    'csi.storage.k8s.io/node-publish-secret-namespace': SYSTEM,
  };
  const sc = (name: string, reclaimPolicy: string, extra: Record<string, string> = {}) =>
    ({
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name },
      provisioner: 'csi.juicefs.com',
      reclaimPolicy,
      parameters: { ...params, ...extra },
    }) as KubernetesObject;
  await applyObjects(admin, [
    sc('jfs-delete', 'Delete'),
    sc('jfs-retain', 'Retain'),
    sc('jfs-pattern', 'Delete', { pathPattern: '${.PVC.namespace}-${.PVC.name}' }),
    sc('jfs-shared', 'Delete', { pathPattern: 'shared/${.PVC.labels.dataset}' }),
    // The reference driver's forms: lowercase, the node, and placeholders in any parameter.
    {
      ...sc('jfs-node', 'Delete', {
        pathPattern: '${.node.labels.zone}/${.pvc.namespace}-${.pvc.name}',
        mountOptions: 'cache-size=${.pvc.annotations.cache-size},writeback=${.node.annotations.none}',
      }),
      volumeBindingMode: 'WaitForFirstConsumer',
      mountOptions: ['writeback', 'buffer-size=${.pvc.annotations.cache-size},debug'],
    } as KubernetesObject,
    sc('jfs-node-immediate', 'Delete', { pathPattern: '${.node.name}/${.pvc.name}' }),
  ]);

  const createPvc = (name: string, storageClassName: string, labels?: Record<string, string>) =>
    core.createNamespacedPersistentVolumeClaim({
      namespace: NS,
      body: {
        metadata: { name, labels },
        spec: { accessModes: ['ReadWriteMany'], storageClassName, resources: { requests: { storage: '2Gi' } } },
      },
    });
  const bound = (name: string) =>
    eventually(
      async () => {
        const pvc = await core.readNamespacedPersistentVolumeClaim({ name, namespace: NS });
        return pvc.status?.phase === 'Bound' ? pvc : undefined;
      },
      60_000,
      `PVC ${name} to be Bound`,
    );
  const pvOf = (pvc: V1PersistentVolumeClaim) => core.readPersistentVolume({ name: pvc.spec!.volumeName! });
  const gone = (name: string) =>
    eventually(
      async () =>
        core.readPersistentVolume({ name }).then(
          () => false,
          (e: { code?: number }) => e.code === 404,
        ),
      60_000,
      `PV ${name} to be deleted`,
    );
  const inVolume = <T>(fn: (mnt: string) => T) => withFuseMount(vol, fn);

  let firstPv: V1PersistentVolume;
  await t.test('a PVC of a JuiceFS StorageClass becomes Bound to a PV whose directory exists', async (t) => {
    await createPvc('data', 'jfs-delete');
    const pvc = await bound('data');
    const pv = (firstPv = await pvOf(pvc));
    t.equal(pv.spec?.csi?.driver, 'csi.juicefs.com');
    t.equal(pv.spec?.csi?.volumeHandle, pv.metadata!.name, 'volume id is the PV name');
    t.equal(pv.spec?.csi?.volumeAttributes?.subPath, pv.metadata!.name, 'subdirectory is the PV name');
    t.equal(pv.spec?.csi?.nodePublishSecretRef?.name, 'juicefs-secret');
    await inVolume((mnt) => {
      t.ok(
        existsSync(path.join(mnt, pv.metadata!.name!)),
        'the directory exists in the JuiceFS volume (checked through FUSE)',
      );
      writeFileSync(path.join(mnt, pv.metadata!.name!, 'payload.txt'), 'data');
    });
    t.match(
      vol.run(['quota', 'get', vol.metaurl, `--path=/${pv.metadata!.name}`]),
      /2\.0 GiB|2 GiB/,
      'capacity recorded as a JuiceFS quota',
    );
  });

  await t.test(
    'the per-PVC Secret copy exists, owned by the PVC, and a pod is injected with the right subdirectory',
    async (t) => {
      const copy = await eventually(
        () => core.readNamespacedSecret({ name: 'juicefs-data-secret', namespace: NS }).catch(() => undefined),
        30_000,
        'the Secret copy',
      );
      t.equal(copy.metadata?.ownerReferences?.[0]?.kind, 'PersistentVolumeClaim');
      t.equal(Buffer.from(copy.data!.metaurl, 'base64').toString(), vol.metaurl, 'same metaurl as the source Secret');
      // The webhook, registered through the shipped configuration.
      const webhook = await startWebhookStack(cp, { dir, secretNamespaces: [SYSTEM] });
      t.teardown(() => webhook.stop());
      const pod = await eventually(
        () =>
          core.createNamespacedPod({
            namespace: NS,
            body: {
              metadata: { name: 'app' },
              spec: {
                containers: [{ name: 'app', image: 'busybox', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
                volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
              },
            },
          }),
        20_000,
        'pod creation',
      );
      const sidecar = pod.spec?.initContainers?.find((c) => c.name === 'jfs-mount');
      t.ok(sidecar, 'sidecar injected');
      t.ok(sidecar?.command?.includes(`--subdir=${firstPv.metadata!.name}`), 'mounts the PV subdirectory');
      const ref = sidecar?.env?.find((e) => e.name === 'JFS_METAURL')?.valueFrom?.secretKeyRef;
      t.same(ref, { name: 'juicefs-data-secret', key: 'metaurl' }, 'credentials by reference to the copy');
      await core.deleteNamespacedPod({ name: 'app', namespace: NS, gracePeriodSeconds: 0 });
    },
  );

  await t.test('a pathPattern class yields the rendered path', async (t) => {
    await createPvc('patterned', 'jfs-pattern');
    const pv = await pvOf(await bound('patterned'));
    t.equal(pv.spec?.csi?.volumeAttributes?.subPath, `${NS}-patterned`);
    await inVolume((mnt) => t.ok(existsSync(path.join(mnt, `${NS}-patterned`)), 'rendered directory exists'));
  });

  await t.test('templates: lowercase, node placeholders (the selected node) and every parameter', async (t) => {
    await core.createNode({ body: { metadata: { name: 'zone-node', labels: { zone: 'z1' } } } });
    t.teardown(() => core.deleteNode({ name: 'zone-node' }).catch(() => undefined));
    // What the scheduler does for a WaitForFirstConsumer PVC when its pod is placed (no pod runs in this suite).
    await core.createNamespacedPersistentVolumeClaim({
      namespace: NS,
      body: {
        metadata: {
          name: 'by-zone',
          annotations: { 'cache-size': '2048', 'volume.kubernetes.io/selected-node': 'zone-node' },
        },
        spec: {
          accessModes: ['ReadWriteMany'],
          storageClassName: 'jfs-node',
          resources: { requests: { storage: '1Gi' } },
        },
      },
    });
    const pv = await pvOf(await bound('by-zone'));
    t.equal(pv.spec?.csi?.volumeAttributes?.subPath, `z1/${NS}-by-zone`, 'pathPattern from the node and the PVC');
    t.equal(pv.spec?.csi?.volumeAttributes?.mountOptions, 'cache-size=2048,writeback=', 'a parameter rendered');
    t.notOk('pathPattern' in (pv.spec?.csi?.volumeAttributes ?? {}), 'the pattern itself is not an attribute');
    t.same(
      pv.spec?.mountOptions,
      ['writeback', 'buffer-size=${.pvc.annotations.cache-size},debug'],
      'csi-provisioner copies the class mountOptions unrendered',
    );
    t.equal(
      pv.spec?.csi?.volumeAttributes?.['juicefs/rendered-mount-options'],
      '["writeback","buffer-size=2048","debug"]',
      'the controller renders them beside (what the mount reads)',
    );
    await inVolume((mnt) => t.ok(existsSync(path.join(mnt, 'z1', `${NS}-by-zone`)), 'rendered directory exists'));

    // Immediate binding: no node is selected, so a node placeholder cannot be rendered; the provisioner reports why.
    await createPvc('no-node', 'jfs-node-immediate');
    const event = await eventually(
      async () =>
        (await core.listNamespacedEvent({ namespace: NS, fieldSelector: 'involvedObject.name=no-node' })).items.find(
          (e) => e.reason === 'ProvisioningFailed' && /selected node/.test(e.message ?? ''),
        ),
      60_000,
      'a ProvisioningFailed event for the PVC',
    );
    t.match(event.message, /\$\{\.node\.name\} needs the node/);
    const pvc = await core.readNamespacedPersistentVolumeClaim({ name: 'no-node', namespace: NS });
    t.equal(pvc.status?.phase, 'Pending', 'and the PVC stays Pending');
    await core.deleteNamespacedPersistentVolumeClaim({ name: 'no-node', namespace: NS });
  });

  await t.test('reclaim Delete removes the data; Retain keeps it', async (t) => {
    const pvName = firstPv.metadata!.name!;
    await core.deleteNamespacedPersistentVolumeClaim({ name: 'data', namespace: NS });
    await gone(pvName);
    await inVolume((mnt) => t.notOk(existsSync(path.join(mnt, pvName)), 'Delete: directory removed'));

    await createPvc('kept', 'jfs-retain');
    const kept = await pvOf(await bound('kept'));
    await inVolume((mnt) => writeFileSync(path.join(mnt, kept.metadata!.name!, 'keep.txt'), 'keep'));
    await core.deleteNamespacedPersistentVolumeClaim({ name: 'kept', namespace: NS });
    await eventually(
      async () => (await core.readPersistentVolume({ name: kept.metadata!.name! })).status?.phase === 'Released',
      60_000,
      'PV Released',
    );
    await inVolume((mnt) =>
      t.equal(readFileSync(path.join(mnt, kept.metadata!.name!, 'keep.txt'), 'utf8'), 'keep', 'Retain: data kept'),
    );
  });

  await t.test("two PVs sharing a pathPattern path do not delete each other's data", async (t) => {
    await createPvc('a', 'jfs-shared', { dataset: 'imagenet' });
    await createPvc('b', 'jfs-shared', { dataset: 'imagenet' });
    const pvA = await pvOf(await bound('a'));
    const pvB = await pvOf(await bound('b'));
    t.equal(pvA.spec?.csi?.volumeAttributes?.subPath, 'shared/imagenet');
    t.equal(pvB.spec?.csi?.volumeAttributes?.subPath, 'shared/imagenet');
    await inVolume((mnt) => writeFileSync(path.join(mnt, 'shared/imagenet/shared.txt'), 'both'));
    await core.deleteNamespacedPersistentVolumeClaim({ name: 'a', namespace: NS });
    await gone(pvA.metadata!.name!);
    await inVolume((mnt) =>
      t.equal(
        readFileSync(path.join(mnt, 'shared/imagenet/shared.txt'), 'utf8'),
        'both',
        'still there while b uses it',
      ),
    );
    await core.deleteNamespacedPersistentVolumeClaim({ name: 'b', namespace: NS });
    await gone(pvB.metadata!.name!);
    await inVolume((mnt) => t.notOk(existsSync(path.join(mnt, 'shared/imagenet')), 'removed with the last PV'));
  });

  await t.test('fault check: the controller killed at random points during 20 provision/delete cycles', async (t) => {
    let kills = 0;
    const started = Date.now();
    // Deterministic "random" points, so a failure can be replayed.
    let seed = 20261123;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const killer = async (signal: { done: boolean }) => {
      while (!signal.done) {
        await sleep(1000 + rand() * 3000);
        if (signal.done) break;
        await stack.crashAndRestart();
        kills++;
      }
    };
    const signal = { done: false };
    const killing = killer(signal);
    for (let i = 0; i < 20; i++) {
      const name = `cycle-${i}`;
      await createPvc(name, i % 3 === 0 ? 'jfs-pattern' : 'jfs-delete');
      const pv = await pvOf(await bound(name));
      await core.deleteNamespacedPersistentVolumeClaim({ name, namespace: NS });
      await gone(pv.metadata!.name!);
    }
    // Two PVCs stay bound through the crashes.
    await createPvc('survivor-1', 'jfs-delete');
    await createPvc('survivor-2', 'jfs-pattern');
    await bound('survivor-1');
    await bound('survivor-2');
    signal.done = true;
    await killing;
    t.comment(`20 cycles with ${kills} controller crashes in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    t.ok(kills >= 5, `the controller was killed ${kills} times`);

    await sleep(6000); // let the controller's mount linger out
    const pvs = (await core.listPersistentVolume()).items.filter((pv) => pv.spec?.csi?.driver === 'csi.juicefs.com');
    const used = new Set(pvs.map((pv) => pv.spec!.csi!.volumeAttributes!.subPath));
    await inVolume((mnt) => {
      for (const pv of pvs)
        if (pv.status?.phase === 'Bound')
          t.ok(
            existsSync(path.join(mnt, pv.spec!.csi!.volumeAttributes!.subPath)),
            `Bound ${pv.metadata!.name} has its directory`,
          );
      const top = readdirSync(mnt).filter((e) => !e.startsWith('.'));
      const dirs = top.flatMap((e) =>
        e === 'shared' ? readdirSync(path.join(mnt, e)).map((s) => `shared/${s}`) : [e],
      );
      // A top-level directory is in use when a PV's subdirectory is it or lies under it (pathPatterns with "/").
      const orphans = dirs.filter((d) => ![...used].some((u) => u === d || u?.startsWith(`${d}/`)));
      t.same(orphans, [], 'no orphaned directory');
      t.ok(existsSync(path.join(mnt, 'kept-dummy')) === false);
      const records = readdirSync(path.join(mnt, REGISTRY_DIR)).length;
      t.equal(records, pvs.length, 'one volume record per PV');
    });
  });

  // Expansion: the StorageClass allows it and names the Secret csi-resizer passes to ControllerExpandVolume.
  const expandParams = {
    'csi.storage.k8s.io/controller-expand-secret-name': 'juicefs-secret',
    'csi.storage.k8s.io/controller-expand-secret-namespace': SYSTEM,
  };
  const resize = (name: string, storage: string) =>
    core.patchNamespacedPersistentVolumeClaim(
      { name, namespace: NS, body: { spec: { resources: { requests: { storage } } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  const resized = (name: string, storage: string) =>
    eventually(
      async () => {
        const pvc = await core.readNamespacedPersistentVolumeClaim({ name, namespace: NS });
        return pvc.status?.capacity?.storage === storage ? pvc : undefined;
      },
      90_000,
      `PVC ${name} to have ${storage} in its status`,
    );
  const quotaOf = (dir: string) => vol.run(['quota', 'get', vol.metaurl, `--path=/${dir}`]);

  await t.test('subdir= in the StorageClass mountOptions: directory, quota, resize and delete under it', async (t) => {
    await applyObjects(admin, [
      {
        ...sc('jfs-team-x', 'Delete', expandParams),
        mountOptions: ['writeback', 'subdir=team-x'],
        allowVolumeExpansion: true,
      } as KubernetesObject,
    ]);
    await createPvc('team', 'jfs-team-x');
    const pv = await pvOf(await bound('team'));
    const pvName = pv.metadata!.name!;
    t.equal(pv.spec?.csi?.volumeAttributes?.subPath, pvName, 'subPath is relative to the subdir the mount joins');
    await inVolume((mnt) => {
      t.ok(existsSync(path.join(mnt, 'team-x', pvName)), 'the directory is team-x/<pv>');
      t.notOk(existsSync(path.join(mnt, pvName)), 'not <pv> at the root');
      writeFileSync(path.join(mnt, 'team-x', pvName, 'data.txt'), 'team');
    });
    t.match(quotaOf(`team-x/${pvName}`), /2\.0 GiB|2 GiB/, 'the quota is on team-x/<pv>');

    await resize('team', '3Gi');
    await resized('team', '3Gi');
    t.match(quotaOf(`team-x/${pvName}`), /3\.0 GiB|3 GiB/, 'csi-resizer raised the quota to 3 GiB');
    const grown = await core.readPersistentVolume({ name: pvName });
    t.equal(grown.spec?.capacity?.storage, '3Gi', 'and the PV says so');

    await core.deleteNamespacedPersistentVolumeClaim({ name: 'team', namespace: NS });
    await gone(pvName);
    await inVolume((mnt) => t.notOk(existsSync(path.join(mnt, 'team-x', pvName)), 'deleted at team-x/<pv>'));
  });

  await t.test('a PV as the reference provisions it (no record): resized and deleted at its directory', async (t) => {
    await applyObjects(admin, [
      { ...sc('jfs-reference', 'Delete', expandParams), allowVolumeExpansion: true } as KubernetesObject,
    ]);
    // What the reference's controller leaves: a directory named by the PV, with data, and no record of ours.
    const pvName = 'pvc-1c2d3e4f-aaaa-bbbb-cccc-0123456789ab';
    await inVolume((mnt) => {
      mkdirSync(path.join(mnt, pvName));
      writeFileSync(path.join(mnt, pvName, 'old.txt'), 'from the reference');
    });
    vol.run(['quota', 'set', vol.metaurl, `--path=/${pvName}`, '--capacity=1']);
    const secretRef = { name: 'juicefs-secret', namespace: SYSTEM };
    await core.createPersistentVolume({
      body: {
        metadata: {
          name: pvName,
          annotations: {
            'pv.kubernetes.io/provisioned-by': 'csi.juicefs.com',
            'volume.kubernetes.io/provisioner-deletion-secret-name': 'juicefs-secret',
            'volume.kubernetes.io/provisioner-deletion-secret-namespace': SYSTEM,
          },
        },
        spec: {
          capacity: { storage: '1Gi' },
          accessModes: ['ReadWriteMany'],
          persistentVolumeReclaimPolicy: 'Delete',
          storageClassName: 'jfs-reference',
          claimRef: { namespace: NS, name: 'inherited' },
          csi: {
            driver: 'csi.juicefs.com',
            volumeHandle: pvName,
            volumeAttributes: { subPath: pvName, capacity: String(2 ** 30) },
            nodePublishSecretRef: secretRef,
            controllerExpandSecretRef: secretRef,
          },
        },
      },
    });
    await core.createNamespacedPersistentVolumeClaim({
      namespace: NS,
      body: {
        metadata: { name: 'inherited' },
        spec: {
          accessModes: ['ReadWriteMany'],
          storageClassName: 'jfs-reference',
          volumeName: pvName,
          resources: { requests: { storage: '1Gi' } },
        },
      },
    });
    await bound('inherited');
    const recordOf = (id: string) =>
      inVolume((mnt) =>
        readdirSync(path.join(mnt, REGISTRY_DIR))
          .map((f) => JSON.parse(readFileSync(path.join(mnt, REGISTRY_DIR, f), 'utf8')) as { id: string })
          .find((r) => r.id === id),
      );
    t.equal(await recordOf(pvName), undefined, 'no record of it before');

    await resize('inherited', '4Gi');
    await resized('inherited', '4Gi');
    t.match(quotaOf(pvName), /4\.0 GiB|4 GiB/, 'the quota on <pv> raised through csi-resizer');
    t.match(
      await recordOf(pvName),
      { id: pvName, subdir: pvName, capacityBytes: 4 * 2 ** 30 },
      'its record written on first touch',
    );

    await core.deleteNamespacedPersistentVolumeClaim({ name: 'inherited', namespace: NS });
    await gone(pvName);
    await inVolume((mnt) => t.notOk(existsSync(path.join(mnt, pvName)), 'its directory and data deleted'));
  });
});
