// Mount Pod mode on the real node (kubelet + containerd): the node plugin runs
// as the shipped DaemonSet, Mount Pods are real pods run by the kubelet, and
// app pods' volumes are published by the kubelet. Where the node service's own
// CSI contract is under test, the test calls NodePublishVolume and
// NodeUnpublishVolume on the node plugin's socket as the kubelet would, with
// targets under the kubelet root (the folder the node plugin sees at the same
// path). Crashes are real: a container's process SIGKILLed through containerd.
import { BatchV1Api, CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { mountAt, readMounts } from '../../src/juicefs/mounts.js';
import { KUBELET_ROOT } from '../../src/local/real-node-stack.js';
import { isPodReady, mountPointOf, referencesOf } from '../../src/node/mount-pod-plan.js';
import { eventually } from '../env/harness.js';
import { MOUNT_POD_NAMESPACE as NS, SMALL_MOUNT_POD as SMALL, startRealNodeHarness } from '../env/real-node-harness.js';

// The node service holds the clients' fds (opt-in for Mount Pods, ADR 0015): these cases are written for it.
const SMALL_MOUNT_POD = { ...SMALL, 'juicefs/fd-holder': 'true' };

t.setTimeout(15 * 60 * 1000);

t.test('Mount Pod mode on the real node: shared Mount Pod, references, recovery, cleanup', async (t) => {
  const t0 = Date.now();
  const h = await startRealNodeHarness(t, { volumeName: 'mountpod' });
  const { admin, core, vol, dir, nodeKubeconfig, call, mountPods } = h;
  const NODE = h.stack.node.nodeName;
  t.comment(`control plane, real node and node plugin up in ${Date.now() - t0} ms`);
  const publish = (pv: string, target: string, context: Record<string, string> = {}) =>
    call('NodePublishVolume', {
      volume_id: pv,
      target_path: target,
      volume_capability: { mount: { mount_flags: [] }, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } },
      readonly: false,
      secrets: vol.secrets,
      volume_context: { subPath: pv, ...SMALL_MOUNT_POD, ...context },
    });
  const unpublish = (pv: string, target: string) => call('NodeUnpublishVolume', { volume_id: pv, target_path: target });
  const mountPodOf = async (pv: string) =>
    (await mountPods()).find((p) => p.metadata?.labels?.['volume-id'] === pv && !p.metadata?.deletionTimestamp);
  // Reads go through libuv's pool, never blocking this process on a broken FUSE target.
  const readsBack = async (target: string, text: string) =>
    (await readFile(path.join(target, 'hello.txt'), 'utf8').catch(() => '')) === text;
  const deviceOf = (target: string) => mountAt(target)?.device;
  const restartsOf = (p: V1Pod | undefined) => p?.status?.containerStatuses?.[0]?.restartCount ?? 0;

  const t1 = path.join(dir, 'a/pv-a/mount');
  const t2 = path.join(dir, 'b/pv-a/mount');
  const t3 = path.join(dir, 'c/pv-b/mount');

  await t.test('two publishes of one PV share one Mount Pod with two references', async (t) => {
    const started = Date.now();
    await publish('pv-a', t1);
    t.comment(`first publish (a new Mount Pod on the kubelet) ${Date.now() - started} ms`);
    await publish('pv-a', t2);
    await publish('pv-a', t2); // idempotent
    const pods = await mountPods();
    t.equal(pods.length, 1, 'one Mount Pod');
    t.same(referencesOf(pods[0]).sort(), [t1, t2].sort(), 'a reference annotation per target');
    t.equal(pods[0].metadata?.labels?.['volume-id'], 'pv-a');
    t.ok(pods[0].metadata?.labels?.['juicefs-hash'], 'settings hash label');
    t.equal(pods[0].spec?.nodeName, NODE, 'on the real node');
    t.ok(isPodReady(pods[0]), 'Ready (its container runs, per the kubelet)');
    t.equal(mountAt(t1)?.fsType, 'fuse.juicefs', 'the target is the FUSE mount the container made');
    writeFileSync(path.join(t1, 'hello.txt'), 'written through target 1');
    t.equal(readFileSync(path.join(t2, 'hello.txt'), 'utf8'), 'written through target 1', 'read through target 2');
  });

  await t.test('a second PV gets its own Mount Pod', async (t) => {
    await publish('pv-b', t3);
    const pods = await mountPods();
    t.equal(pods.length, 2);
    t.same(pods.map((p) => p.metadata?.labels?.['volume-id']).sort(), ['pv-a', 'pv-b']);
    t.notOk(existsSync(path.join(t3, 'hello.txt')), 'PV directories are apart');
  });

  await t.test('read-only publish and volume stats', async (t) => {
    const ro = path.join(dir, 'r/pv-a/mount');
    await call('NodePublishVolume', {
      volume_id: 'pv-a',
      target_path: ro,
      volume_capability: { mount: { mount_flags: [] }, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } },
      readonly: true,
      secrets: vol.secrets,
      volume_context: { subPath: 'pv-a', ...SMALL_MOUNT_POD },
    });
    t.equal(readFileSync(path.join(ro, 'hello.txt'), 'utf8'), 'written through target 1', 'reads the same data');
    t.throws(() => writeFileSync(path.join(ro, 'nope.txt'), 'x'), { code: 'EROFS' }, 'writes refused');
    const roPod = (await mountPods()).find((p) => referencesOf(p).includes(ro))!;
    t.ok(roPod.spec?.containers[0].command?.includes('--read-only'), 'served by a read-only Mount Pod');
    t.not(
      roPod.metadata?.name,
      (await mountPods()).find((p) => referencesOf(p).includes(t1))?.metadata?.name,
      'not the read-write one',
    );
    const stats = (await call('NodeGetVolumeStats', { volume_id: 'pv-a', volume_path: t1 })) as {
      usage: { unit: string; total: string; used: string; available: string }[];
      volume_condition: { abnormal: boolean };
    };
    const bytes = stats.usage.find((u) => u.unit === 'BYTES')!;
    t.ok(
      Number(bytes.total) > 0 && Number(bytes.used) >= 0 && Number(bytes.available) > 0,
      `bytes usage reported (total ${bytes.total})`,
    );
    t.ok(
      stats.usage.some((u) => u.unit === 'INODES'),
      'inodes usage reported',
    );
    t.equal(stats.volume_condition.abnormal, false, 'condition normal');
    await t.rejects(
      call('NodeGetVolumeStats', { volume_id: 'pv-b', volume_path: t1 }),
      { code: 5 },
      "NOT_FOUND for another volume's target",
    );
    await unpublish('pv-a', ro);
    t.notOk(mountAt(ro), 'unpublished');
    await eventually(
      async () => !(await mountPods()).some((p) => p.metadata?.name === roPod.metadata?.name),
      60_000,
      'read-only Mount Pod deleted',
    );
  });

  await t.test("the Mount Pod's client SIGKILLed: the kubelet restarts it, it takes the held fd over", async (t) => {
    const pod = (await mountPodOf('pv-a'))!;
    const before = [deviceOf(t1), deviceOf(t2)];
    h.killContainer(pod);
    const started = Date.now();
    await eventually(async () => restartsOf(await mountPodOf('pv-a')) > restartsOf(pod), 60_000, 'container restarted');
    await eventually(
      async () =>
        (await readsBack(t1, 'written through target 1')) && (await readsBack(t2, 'written through target 1')),
      90_000,
      'targets readable again',
    );
    t.comment(`targets recovered ${Date.now() - started} ms after the kill`);
    // The node service held the client's FUSE fd (ADR 0015): the new client took the same connection over.
    t.equal(deviceOf(t1), before[0], 'target 1 still on its FUSE connection: not re-bound');
    t.equal(deviceOf(t2), before[1], 'target 2 still on its FUSE connection: not re-bound');
    const after = (await mountPodOf('pv-a'))!;
    t.equal(after.metadata?.uid, pod.metadata?.uid, 'the same Mount Pod, its container restarted by the kubelet');
    t.same(referencesOf(after).sort(), [t1, t2].sort(), 'references kept');
  });

  await t.test('a Mount Pod deleted while in use is created again; it takes the held connection over', async (t) => {
    const pod = (await mountPodOf('pv-a'))!;
    const before = deviceOf(t1);
    await core.deleteNamespacedPod({ name: pod.metadata!.name!, namespace: NS });
    const again = await eventually(
      async () => {
        const p = await mountPodOf('pv-a');
        return p && p.metadata?.uid !== pod.metadata?.uid && isPodReady(p) ? p : undefined;
      },
      120_000,
      'a new Ready Mount Pod',
    );
    t.equal(again.metadata?.name, pod.metadata?.name, 'same name');
    t.same(referencesOf(again).sort(), [t1, t2].sort(), 'with the references of the one deleted');
    await eventually(
      async () =>
        (await readsBack(t1, 'written through target 1')) && (await readsBack(t2, 'written through target 1')),
      90_000,
      'targets readable again',
    );
    // Its preStop handed over (ADR 0019): the new client took the held fd, so the targets stay on their connection.
    t.equal(deviceOf(t1), before, 'same FUSE connection: not re-bound');
  });

  await t.test('a reference whose pod is gone is dropped by the background check', async (t) => {
    const podDir = path.join(KUBELET_ROOT, 'pods', randomUUID());
    const orphan = path.join(podDir, 'volumes/kubernetes.io~csi/pv-b/mount');
    t.teardown(() => rmSync(podDir, { recursive: true, force: true }));
    await publish('pv-b', orphan);
    t.ok(mountAt(orphan), 'published');
    await eventually(
      async () => {
        const p = await mountPodOf('pv-b');
        return p && !referencesOf(p).includes(orphan) && !mountAt(orphan);
      },
      60_000,
      'orphan reference dropped and its target unmounted',
    );
    t.same(referencesOf((await mountPodOf('pv-b'))!), [t3], 'the live reference stays');
  });

  await t.test('the node plugin crashes; a Mount Pod crash while it is down is repaired once it is back', async (t) => {
    writeFileSync(path.join(t3, 'hello.txt'), 'pv-b data');
    const before = deviceOf(t3);
    const plugin = await h.nodePluginPod();
    h.killContainer(plugin);
    h.killContainer((await mountPodOf('pv-b'))!);
    t.pass('node plugin and the Mount Pod of pv-b SIGKILLed');
    await eventually(
      async () => restartsOf(await h.nodePluginPod()) > restartsOf(plugin),
      60_000,
      'node plugin restarted by the kubelet',
    );
    await eventually(async () => readsBack(t3, 'pv-b data'), 90_000, 'target of pv-b readable again').catch(
      async (err) => {
        const pod = await mountPodOf('pv-b');
        const mp = pod && mountPointOf(pod);
        t.comment(
          `diagnosis: target ${JSON.stringify(mountAt(t3))}; mount point ${JSON.stringify(mp && readMounts().filter((m) => m.mountPoint === mp))}; Ready ${isPodReady(pod)}`,
        );
        throw err;
      },
    );
    t.not(deviceOf(t3), before, 're-bound by the restarted node plugin (its state is in the API, not in memory)');
    t.same(referencesOf((await mountPodOf('pv-b'))!), [t3], 'references survived');
  });

  await t.test('app pods: the kubelet publishes their JuiceFS volume; they share one Mount Pod', async (t) => {
    const ns = 'apps';
    await core.createNamespace({ body: { metadata: { name: ns } } });
    await core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: 'jfs-secret' }, stringData: vol.secrets },
    });
    await core.createPersistentVolume({
      body: {
        metadata: { name: 'pv-app' },
        spec: {
          capacity: { storage: '10Gi' },
          accessModes: ['ReadWriteMany'],
          persistentVolumeReclaimPolicy: 'Retain',
          storageClassName: '',
          csi: {
            driver: 'csi.juicefs.com',
            volumeHandle: 'pv-app',
            volumeAttributes: { subPath: 'app', ...SMALL_MOUNT_POD },
            nodePublishSecretRef: { name: 'jfs-secret', namespace: ns },
          },
        },
      },
    });
    await core.createNamespacedPersistentVolumeClaim({
      namespace: ns,
      body: {
        metadata: { name: 'data' },
        spec: {
          accessModes: ['ReadWriteMany'],
          storageClassName: '',
          volumeName: 'pv-app',
          resources: { requests: { storage: '10Gi' } },
        },
      },
    });
    await eventually(
      async () =>
        (await core.readNamespacedServiceAccount({ name: 'default', namespace: ns }).catch(() => undefined)) !==
        undefined,
      30_000,
      'default ServiceAccount in apps',
    );
    // No nodeName: kube-scheduler places them. A short grace period: busybox sh as PID 1 ignores SIGTERM.
    const app = (name: string): V1Pod => ({
      metadata: { name, namespace: ns },
      spec: {
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'app',
            image: 'busybox',
            command: ['sleep', '3600'],
            volumeMounts: [{ name: 'data', mountPath: '/data' }],
          },
        ],
        volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
      },
    });
    const started = Date.now();
    const [p1, p2] = await Promise.all([
      core.createNamespacedPod({ namespace: ns, body: app('app-1') }),
      core.createNamespacedPod({ namespace: ns, body: app('app-2') }),
    ]);
    for (const p of [p1, p2]) {
      await eventually(
        async () => isPodReady(await core.readNamespacedPod({ name: p.metadata!.name!, namespace: ns })),
        180_000,
        `${p.metadata!.name} Ready`,
      );
    }
    t.comment(`two app pods Running with the volume ${Date.now() - started} ms after their creation`);
    const targets = [p1, p2].map((p) =>
      path.join(KUBELET_ROOT, 'pods', p.metadata!.uid!, 'volumes/kubernetes.io~csi/pv-app/mount'),
    );
    const mp = (await mountPodOf('pv-app'))!;
    t.same(referencesOf(mp).sort(), [...targets].sort(), "one Mount Pod, a reference per pod's kubelet target");
    const inApp1 = await h.exec(ns, 'app-1', 'app', [
      'sh',
      '-c',
      'grep " /data " /proc/mounts; echo from app-1 > /data/hello.txt',
    ]);
    t.equal(inApp1.status.status, 'Success', `app-1 wrote into /data (${inApp1.err})`);
    t.match(inApp1.out, /fuse\.juicefs/, "app-1's /data is the JuiceFS FUSE mount");
    const inApp2 = await h.exec(ns, 'app-2', 'app', ['cat', '/data/hello.txt']);
    t.equal(inApp2.out, 'from app-1\n', 'app-2 reads what app-1 wrote');
    t.ok(await readsBack(targets[1], 'from app-1\n'), "and so does the kubelet's target on the host");
    await core.deleteNamespacedPod({ name: 'app-1', namespace: ns });
    await eventually(
      async () => !(await core.readNamespacedPod({ name: 'app-1', namespace: ns }).catch(() => undefined)),
      90_000,
      'app-1 deletion finished',
    );
    t.same(referencesOf((await mountPodOf('pv-app'))!), [targets[1]], 'its reference went with it');
    t.notOk(mountAt(targets[0]), 'its target unmounted');
    await core.deleteNamespacedPod({ name: 'app-2', namespace: ns });
    await eventually(async () => !(await mountPodOf('pv-app')), 90_000, 'Mount Pod deleted with the last app pod');
    t.notOk(mountAt(targets[1]));
  });

  await t.test("the node's ServiceAccount can do its job and no more", async (t) => {
    const kc = new KubeConfig();
    kc.loadFromFile(nodeKubeconfig);
    const asNode = kc.makeApiClient(CoreV1Api);
    t.ok(await asNode.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${NODE}` }), 'lists pods on its node');
    await t.rejects(
      asNode.readNamespacedSecret({ name: 'jfs-secret', namespace: 'apps' }),
      { code: 403 },
      "cannot read an app namespace's Secret",
    );
    await t.rejects(
      asNode.listNamespacedSecret({ namespace: NS }),
      { code: 403 },
      'cannot read Secrets even in its own namespace',
    );
    await t.rejects(
      asNode.createNamespacedPod({
        namespace: 'apps',
        body: { metadata: { name: 'x' }, spec: { containers: [{ name: 'x', image: 'x' }] } },
      }),
      { code: 403 },
      'cannot create pods outside its namespace',
    );
    await t.rejects(
      asNode.deleteNamespacedPod({ name: 'app-2', namespace: 'apps' }),
      { code: 403 },
      'cannot delete app pods',
    );
  });

  await t.test('juicefs/clean-cache: once the Mount Pod is gone, a Job on the node removes its cache', async (t) => {
    // The Mount Pod and the Job mount the cache folder as a hostPath, and with a cache-dir of its own the
    // Mount Pod no longer mounts /var/jfsCache: the volume's folder (its SQLite file) is that cache folder.
    const cacheDir = vol.dir;
    const target = path.join(dir, 'e/pv-d/mount');
    await call('NodePublishVolume', {
      volume_id: 'pv-d',
      target_path: target,
      volume_capability: {
        mount: { mount_flags: [`cache-dir=${cacheDir}`] },
        access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' },
      },
      secrets: vol.secrets,
      volume_context: { subPath: 'pv-d', 'juicefs/clean-cache': 'true', ...SMALL_MOUNT_POD },
    });
    const pod = (await mountPodOf('pv-d'))!;
    t.equal(pod.metadata?.annotations?.['juicefs-clean-cache'], 'true', 'the Mount Pod carries the setting');
    const raw = path.join(cacheDir, vol.uuid, 'raw');
    writeFileSync(path.join(target, 'cached.bin'), Buffer.alloc(1 << 20, 7));
    t.equal((await readFile(path.join(target, 'cached.bin'))).length, 1 << 20);
    await eventually(
      async () => existsSync(raw) && readdirSync(raw, { recursive: true }).length > 0,
      30_000,
      `cache blocks in ${raw} (written by the Mount Pod's container)`,
    );
    const other = path.join(cacheDir, 'another-volume-uuid', 'raw');
    mkdirSync(other, { recursive: true });
    await unpublish('pv-d', target);
    const batch = admin.makeApiClient(BatchV1Api);
    const job = await eventually(
      async () => {
        const jobs = (
          await batch.listNamespacedJob({ namespace: NS, labelSelector: 'app.kubernetes.io/name=juicefs-clean-cache' })
        ).items;
        return jobs.find((j) => (j.status?.succeeded ?? 0) > 0);
      },
      120_000,
      'cache-cleanup Job succeeded',
    );
    t.equal(job.spec?.template.spec?.nodeName, NODE, "the Job ran on the Mount Pod's node");
    t.notOk(existsSync(raw), "this volume's cache blocks are gone");
    t.ok(existsSync(other), "another volume's cache in the same folder is left alone");
  });

  await t.test('a mountPodPatch pvcSelector reaches the Mount Pod of a PV through its claim', async (t) => {
    const ns = 'selected';
    await core.createNamespace({ body: { metadata: { name: ns } } });
    await core.createNamespacedConfigMap({
      namespace: NS,
      body: {
        metadata: { name: 'juicefs-csi-driver-config' },
        data: {
          'config.yaml':
            'mountPodPatch:\n  - pvcSelector: {matchLabels: {tier: gold}}\n    resources: {requests: {cpu: 300m}}\n',
        },
      },
    });
    await core.createPersistentVolume({
      body: {
        metadata: { name: 'pv-sel' },
        spec: {
          capacity: { storage: '10Gi' },
          accessModes: ['ReadWriteMany'],
          persistentVolumeReclaimPolicy: 'Retain',
          storageClassName: '',
          claimRef: { name: 'gold', namespace: ns },
          csi: { driver: 'csi.juicefs.com', volumeHandle: 'pv-sel', volumeAttributes: { subPath: 'pv-sel' } },
        },
      },
    });
    await core.createNamespacedPersistentVolumeClaim({
      namespace: ns,
      body: {
        metadata: { name: 'gold', labels: { tier: 'gold' } },
        spec: {
          accessModes: ['ReadWriteMany'],
          storageClassName: '',
          volumeName: 'pv-sel',
          resources: { requests: { storage: '10Gi' } },
        },
      },
    });
    const target = path.join(dir, 's/pv-sel/mount');
    await publish('pv-sel', target, { subPath: 'pv-sel' });
    const pod = (await mountPodOf('pv-sel'))!;
    t.equal(
      pod.spec?.containers[0].resources?.requests?.cpu,
      '300m',
      "the patch selected the Mount Pod by its PVC's labels",
    );
    t.ok(isPodReady(pod), 'and the kubelet runs it');
    const unclaimed = path.join(dir, 'u/pv-free/mount');
    await publish('pv-free', unclaimed);
    t.not(
      (await mountPodOf('pv-free'))?.spec?.containers[0].resources?.requests?.cpu,
      '300m',
      'a volume without that PVC is not patched',
    );
    await t.rejects(
      publish('pv-bad', path.join(dir, 'x/pv-bad/mount'), { 'juicefs/mount-delete-delay': 'soon' }),
      { code: 3, message: /juicefs\/mount-delete-delay "soon"/ },
      'a bad delete delay is INVALID_ARGUMENT naming the key, not a delay of 0',
    );
    await unpublish('pv-sel', target);
    await unpublish('pv-free', unclaimed);
    await core.deleteNamespacedConfigMap({ name: 'juicefs-csi-driver-config', namespace: NS });
    await eventually(
      async () => !(await mountPodOf('pv-sel')) && !(await mountPodOf('pv-free')),
      90_000,
      'their Mount Pods deleted',
    );
  });

  await t.test('juicefs/mount-delete-delay keeps the Mount Pod a while, and a new publish takes it back', async (t) => {
    const t4 = path.join(dir, 'd/pv-c/mount');
    const delayed = { 'juicefs/mount-delete-delay': '3s' };
    await publish('pv-c', t4, delayed);
    await unpublish('pv-c', t4);
    let pod = await mountPodOf('pv-c');
    t.ok(pod, 'still there after its last reference went');
    t.same(referencesOf(pod!), []);
    t.ok(pod?.metadata?.annotations?.['juicefs-delete-at'], 'stamped with juicefs-delete-at');
    await publish('pv-c', t4, delayed);
    pod = await mountPodOf('pv-c');
    t.notOk(pod?.metadata?.annotations?.['juicefs-delete-at'], 'a new reference cancels the deletion');
    t.same(referencesOf(pod!), [t4]);
    await unpublish('pv-c', t4);
    const started = Date.now();
    await eventually(async () => !(await mountPodOf('pv-c')), 60_000, 'deletion after the delay');
    t.ok(Date.now() - started >= 2000, `deleted after the delay (${Date.now() - started} ms)`);
  });

  await t.test('unpublishing both targets deletes the Mount Pod', async (t) => {
    await unpublish('pv-a', t1);
    const a = await mountPodOf('pv-a');
    t.same(a && referencesOf(a), [t2], 'one reference left');
    t.equal(
      readFileSync(path.join(t2, 'hello.txt'), 'utf8'),
      'written through target 1',
      'the other target still works',
    );
    await unpublish('pv-a', t2);
    await unpublish('pv-a', t2); // idempotent
    await eventually(async () => !(await mountPodOf('pv-a')), 90_000, 'pv-a Mount Pod deleted');
    t.notOk(mountAt(t1) || mountAt(t2), 'targets unmounted');
    await unpublish('pv-b', t3);
    await eventually(async () => (await mountPods()).length === 0, 90_000, 'all Mount Pods gone');
    t.equal((await mountPods()).length, 0);
    t.same(
      readMounts().filter((m) => m.mountPoint.startsWith(`${dir}/`)),
      [],
      'no target left mounted',
    );
  });
});
