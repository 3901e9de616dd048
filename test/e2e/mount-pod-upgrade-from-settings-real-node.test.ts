// `target.fromSettings` for Mount Pods on the real node (issue 13 item 4): an image changed in the ConfigMap reaches
// running Mount Pods only through a JuiceFSUpgrade that says so, and then each gets the image its own settings name
// now. Two volumes: one whose StorageClass a mountPodPatch entry pins to juicefs 1.2.0, one on the default image
// (1.3.1). The entry is then changed to 1.3.1: nothing happens to the running Mount Pod (a publish would log the
// change, never apply it) until a mount-pod-recreate upgrade with `target: {fromSettings: true}` and no selector
// upgrades the pinned one in place (same pod, same FUSE connection, the app's open file kept) and leaves the other,
// already on its settings' image, untouched.
import { CustomObjectsApi, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import path from 'node:path';
import t from 'tap';
import {
  ATTR,
  CONFIG_MAP_KEY,
  CONFIG_MAP_NAME,
  MOUNT_POD_ANN_FD_HELD,
  SYSTEM_NAMESPACE,
} from '../../src/contract/keys.js';
import { mountAt } from '../../src/juicefs/mounts.js';
import { applyObjects, readManifest } from '../../src/local/components.js';
import { MOUNT_IMAGE, PREVIOUS_MOUNT_IMAGE } from '../../src/local/images.js';
import { KUBELET_ROOT } from '../../src/local/real-node-stack.js';
import { isPodReady, volumeLabel } from '../../src/node/mount-pod-plan.js';
import { UPGRADE_GROUP, UPGRADE_PLURAL, UPGRADE_VERSION, type JuiceFSUpgrade } from '../../src/upgrade/types.js';
import { eventually } from '../env/harness.js';
import { appPod, createPod, exec, makeNamespace, podWhen, startSuiteWorld } from '../env/real-node-world.js';

t.setTimeout(20 * 60 * 1000);

const NS = 'mpfs-apps';
const PINNED_SC = 'juicefs-pinned';
const PLAIN_SC = 'juicefs-plain';
const CLAIMS = ['pinned', 'plain'];
const CRD = { group: UPGRADE_GROUP, version: UPGRADE_VERSION, plural: UPGRADE_PLURAL };
const configYaml = (image: string) =>
  `mountPodPatch:\n  - pvcSelector:\n      matchStorageClassName: ${PINNED_SC}\n    ceMountImage: ${image}\n`;

/** The controller's /metrics on loopback; the node plugin (host network here) serves its own on 9569 (manifest). */
const CONTROLLER_METRICS = '127.0.0.1:19567';
const NODE_METRICS = '127.0.0.1:9569';
const scrape = async (address: string) => (await fetch(`http://${address}/metrics`)).text();
const sample = (text: string, series: string) =>
  Number(
    text
      .split('\n')
      .find((l) => l.startsWith(`${series} `))
      ?.slice(series.length + 1) ?? NaN,
  );

const w = await startSuiteWorld(t, {
  nodePlugin: true,
  controllerArgs: ['--upgrades', `--metrics-address=${CONTROLLER_METRICS}`],
});
if (w) {
  const custom = w.kc.makeApiClient(CustomObjectsApi);
  const pvOf = new Map<string, string>();
  const mountPodOf = async (claim: string): Promise<V1Pod | undefined> =>
    (
      await w.core.listNamespacedPod({
        namespace: SYSTEM_NAMESPACE,
        labelSelector: `app.kubernetes.io/name=juicefs-mount,volume-id=${volumeLabel(pvOf.get(claim)!)}`,
      })
    ).items.find((p) => !p.metadata?.deletionTimestamp);
  const client = (p: V1Pod | undefined) => p?.status?.containerStatuses?.find((s) => s.name === 'jfs-mount');
  let appUid = '';
  const target = (claim: string) =>
    path.join(KUBELET_ROOT, 'pods', appUid, 'volumes/kubernetes.io~csi', pvOf.get(claim)!, 'mount');
  const inApp = (script: string) => exec(w, NS, 'app', 'app', ['sh', '-c', script], 60_000);
  const versionOf = async (claim: string) =>
    /"Version":\s*"([^"]+)"/.exec((await inApp(`cat ${claim === 'pinned' ? '/data' : '/data1'}/.config`)).out)?.[1];
  const setConfig = async (image: string) => {
    const body = {
      metadata: { name: CONFIG_MAP_NAME, namespace: SYSTEM_NAMESPACE },
      data: { [CONFIG_MAP_KEY]: configYaml(image) },
    };
    await w.core
      .replaceNamespacedConfigMap({ name: CONFIG_MAP_NAME, namespace: SYSTEM_NAMESPACE, body })
      .catch(() => w.core.createNamespacedConfigMap({ namespace: SYSTEM_NAMESPACE, body }));
  };

  await t.test('two Mount Pods: one pinned to 1.2.0 by a ConfigMap entry, one on the default image', async (t) => {
    await applyObjects(w.kc, readManifest('upgrade-crd.yaml'));
    const sc = readManifest('storageclass-example.yaml').find((o) => o.kind === 'StorageClass') as KubernetesObject & {
      parameters?: Record<string, string>;
    };
    const small = { [ATTR.cpuRequest]: '50m', [ATTR.memoryRequest]: '64Mi' };
    await applyObjects(
      w.kc,
      [PINNED_SC, PLAIN_SC].map(
        (name) => ({ ...sc, metadata: { name }, parameters: { ...sc.parameters, ...small } }) as KubernetesObject,
      ),
    );
    await setConfig(PREVIOUS_MOUNT_IMAGE);
    await makeNamespace(w, NS, 'mount-pod', ['pinned'], PINNED_SC);
    await w.core.createNamespacedPersistentVolumeClaim({
      namespace: NS,
      body: {
        metadata: { name: 'plain' },
        spec: {
          accessModes: ['ReadWriteMany'],
          storageClassName: PLAIN_SC,
          resources: { requests: { storage: '1Gi' } },
        },
      },
    });
    await eventually(
      async () =>
        (await w.core.readNamespacedPersistentVolumeClaim({ name: 'plain', namespace: NS })).status?.phase === 'Bound',
      60_000,
      'PVC plain Bound',
    );
    for (const c of CLAIMS)
      pvOf.set(c, (await w.core.readNamespacedPersistentVolumeClaim({ name: c, namespace: NS })).spec!.volumeName!);
    // fd 3 holds /data/open.log open; a numbered line a second; failed writes to /tmp/err (outside JuiceFS).
    const writer =
      `exec 3>>/data/open.log; : >/tmp/err; i=0; trap 'exit 0' TERM; ` +
      `while :; do i=$((i+1)); echo "$i" >&3 2>>/tmp/err || echo "write $i failed" >>/tmp/err; sleep 1; done`;
    const created = await createPod(w, appPod(NS, 'app', CLAIMS, writer));
    appUid = created.metadata!.uid!;
    await podWhen(w, NS, 'app', (p) => isPodReady(p), 240_000, 'app Ready', 500);
    t.match(await versionOf('pinned'), /^1\.2\.0/, 'pinned: the entry chose 1.2.0');
    t.match(await versionOf('plain'), /^1\.3\.1/, 'plain: the default image');
  });

  const before = new Map<string, { uid?: string; device?: string; restarts?: number }>();
  await t.test('the entry changed to 1.3.1: nothing is applied behind the user’s back', async (t) => {
    for (const c of CLAIMS) {
      const pod = await mountPodOf(c);
      before.set(c, {
        uid: pod?.metadata?.uid,
        device: mountAt(target(c))?.device,
        restarts: client(pod)?.restartCount,
      });
    }
    for (const c of CLAIMS)
      await eventually(
        async () => (await mountPodOf(c))?.metadata?.annotations?.[MOUNT_POD_ANN_FD_HELD] === 'true',
        30_000,
        `${c}: the Mount Pod says its fd is held`,
      );
    t.pass('both Mount Pods say their client fd is held (juicefs-fd-held), the 1.2.0 one pulled');
    await setConfig(MOUNT_IMAGE);
    await new Promise((r) => setTimeout(r, 5000));
    const pod = await mountPodOf('pinned');
    t.equal(pod?.metadata?.uid, before.get('pinned')?.uid, 'the same Mount Pod');
    t.match(client(pod)?.image ?? '', /ce-v1\.2\.0$/, `still on ${client(pod)?.image}`);
    t.match(await versionOf('pinned'), /^1\.2\.0/, 'still 1.2.0 inside the mount');
  });

  await t.test('a mount-pod-recreate upgrade from the settings: the pinned one moves, the other stays', async (t) => {
    await custom.createClusterCustomObject({
      ...CRD,
      body: {
        apiVersion: `${UPGRADE_GROUP}/${UPGRADE_VERSION}`,
        kind: 'JuiceFSUpgrade',
        metadata: { name: 'from-settings' },
        spec: {
          kind: 'mount-pod-recreate',
          target: { fromSettings: true },
          strategy: { maxUnavailable: 1, podTimeoutSeconds: 120 },
        },
      },
    });
    let last: JuiceFSUpgrade | undefined;
    await eventually(
      async () => {
        last = (await custom.getClusterCustomObject({ ...CRD, name: 'from-settings' })) as JuiceFSUpgrade;
        return last.status?.phase === 'Completed' || last.status?.phase === 'Failed';
      },
      300_000,
      'the upgrade to end',
    ).catch(() => undefined);
    t.equal(last?.status?.phase, 'Completed', `from-settings: ${last?.status?.message}`);
    const records = last?.status?.pods ?? [];
    for (const p of records) t.comment(`${p.name}: ${p.phase} ${p.message ?? ''}`);
    const pinnedPod = await mountPodOf('pinned');
    t.same(
      records.map((r) => [r.name, r.phase, r.containers.map((c) => c.toImage)]),
      [[pinnedPod?.metadata?.name, 'Succeeded', [MOUNT_IMAGE]]],
      'one record: the pinned Mount Pod, to the image its settings now name',
    );
    t.equal(pinnedPod?.metadata?.uid, before.get('pinned')?.uid, 'pinned: the same Mount Pod');
    t.equal(mountAt(target('pinned'))?.device, before.get('pinned')?.device, 'pinned: the same FUSE connection');
    t.match(await versionOf('pinned'), /^1\.3\.1/, 'pinned: 1.3.1 inside the mount');
    const plainPod = await mountPodOf('plain');
    t.equal(plainPod?.metadata?.uid, before.get('plain')?.uid, 'plain: the same Mount Pod');
    t.equal(client(plainPod)?.restartCount, before.get('plain')?.restarts, 'plain: its client was not restarted');
    t.equal(mountAt(target('plain'))?.device, before.get('plain')?.device, 'plain: the same FUSE connection');
    t.ok(isPodReady(plainPod) && isPodReady(pinnedPod), 'both Ready');
  });

  await t.test("the node's and the controller's /metrics say what happened", async (t) => {
    const node = await scrape(NODE_METRICS);
    t.equal(sample(node, 'jfs_sidecar_mount_pods{ready="true"}'), 2, 'two Mount Pods Ready');
    t.equal(sample(node, 'jfs_sidecar_mount_pod_references'), 2, 'one target each');
    t.equal(sample(node, 'jfs_sidecar_fd_held'), 2, 'both fds held');
    t.ok(sample(node, 'jfs_sidecar_csi_operations_total{method="NodePublishVolume",code="OK"}') >= 2, 'publishes');
    t.equal(sample(node, 'juicefs_volume_errors'), 0, "the reference's mount failure counter");
    for (const c of CLAIMS) {
      const series = `juicefs_volume_path_health{volume_id="${volumeLabel(pvOf.get(c)!)}",volume_path="${target(c)}",pod_uid="${appUid}"}`;
      t.equal(sample(node, series), 1, `${c}: its target is healthy`);
    }
    const controller = await scrape(CONTROLLER_METRICS);
    t.equal(
      sample(controller, 'jfs_sidecar_upgrade_pods_total{kind="mount-pod-recreate",result="Succeeded"}'),
      1,
      'one Mount Pod upgraded',
    );
    t.ok(sample(controller, 'jfs_sidecar_csi_operations_total{method="CreateVolume",code="OK"}') >= 2, 'provisions');
    t.equal(sample(controller, 'juicefs_provision_errors'), 0, "the reference's provision failure counter");
  });

  await t.test('the app: no write failed, none lost', async (t) => {
    await new Promise((r) => setTimeout(r, 2000));
    t.equal((await inApp('cat /tmp/err')).out.trim(), '', 'no write failed');
    const lines = (await inApp('cat /data/open.log')).out.trim().split('\n').map(Number);
    t.ok(
      lines.length > 5 && lines.every((n, i) => n === i + 1),
      `open.log holds 1..${lines.length} in order, nothing lost`,
    );
  });
}
