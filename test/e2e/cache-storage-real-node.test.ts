// Cache storage on the real node (issue 14 item 3, its must-show): a cache PVC and an emptyDir cache, each from a
// WaitForFirstConsumer StorageClass whose pathPattern holds ${.node.name}, in sidecar mode (the webhook injects) and
// in Mount Pod mode (the kubelet publishes through the node plugin). The app writes and reads back; the client's cache
// blocks are looked for where each storage is on the host: the cache PVC's PV folder, the pod's emptyDir under the
// kubelet root. The volume's SQLite file is in /var/jfsCache, which the clients get through juicefs/host-path (their
// cache is elsewhere now), so that setting is exercised too.
import { StorageV1Api, type V1Pod } from '@kubernetes/client-node';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ATTR, SYSTEM_NAMESPACE } from '../../src/contract/keys.js';
import { SELECTED_NODE_ANNOTATION } from '../../src/contract/template.js';
import { KUBELET_ROOT } from '../../src/local/real-node-stack.js';
import { WEBHOOK_NAMESPACE } from '../../src/local/webhook-stack.js';
import { isPodReady } from '../../src/node/mount-pod-plan.js';
import { eventually } from '../env/harness.js';
import { appPod, appRunning, createPod, exec, podWhen, readOnHost, startSuiteWorld } from '../env/real-node-world.js';

t.setTimeout(25 * 60 * 1000);

const w = await startSuiteWorld(t, { nodePlugin: true });
if (w) {
  const NODE = w.node.node.nodeName;
  // Under the world's volume folder, which it removes when it stops (after the node).
  const volDir = path.dirname(w.metaurl.replace(/^sqlite3:\/\//, ''));
  const CACHE_PVC = 'jfs-cache';
  const PATTERN = '${.node.name}-${.pvc.namespace}-${.pvc.name}';

  /** Files under any `raw/chunks` folder below `dir`: juicefs's cache blocks (`<dir>/<UUID>/raw/chunks/…`). */
  const blocksUnder = (dir: string): string[] => {
    const out: string[] = [];
    const walk = (d: string, inChunks: boolean) => {
      for (const e of existsSync(d) ? readdirSync(d, { withFileTypes: true }) : []) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p, inChunks || (e.name === 'chunks' && path.basename(d) === 'raw'));
        else if (inChunks && e.isFile() && statSync(p).size > 0) out.push(p);
      }
    };
    walk(dir, false);
    return out;
  };

  const storageClass = (name: string, params: Record<string, string>) => ({
    metadata: { name },
    provisioner: 'csi.juicefs.com',
    reclaimPolicy: 'Delete',
    volumeBindingMode: 'WaitForFirstConsumer',
    parameters: {
      'csi.storage.k8s.io/provisioner-secret-name': 'juicefs-secret',
      'csi.storage.k8s.io/provisioner-secret-namespace': WEBHOOK_NAMESPACE,
      'csi.storage.k8s.io/node-publish-secret-name': 'juicefs-secret',
      'csi.storage.k8s.io/node-publish-secret-namespace': WEBHOOK_NAMESPACE,
      pathPattern: PATTERN,
      // The metadata engine's SQLite file: the default cache folder is not mounted once another cache is named.
      [ATTR.hostPath]: '/var/jfsCache',
      [ATTR.cpuRequest]: '100m',
      [ATTR.memoryRequest]: '128Mi',
      ...params,
    },
  });
  const storage = w.kc.makeApiClient(StorageV1Api);
  await storage.createStorageClass({ body: storageClass('jfs-cache-pvc', { [ATTR.cachePvc]: CACHE_PVC }) });
  await storage.createStorageClass({ body: storageClass('jfs-cache-emptydir', { [ATTR.cacheEmptyDir]: ':1Gi' }) });

  /** A hostPath PV for the cache PVC of `namespace` (its folder under the world's volume folder), and the PVC. */
  const cachePvc = async (namespace: string): Promise<string> => {
    const dir = path.join(volDir, `cache-pv-${namespace}`);
    mkdirSync(dir, { recursive: true });
    const pv = `cache-pv-${namespace}`;
    await w.core.createPersistentVolume({
      body: {
        metadata: { name: pv },
        spec: {
          capacity: { storage: '1Gi' },
          accessModes: ['ReadWriteOnce'],
          persistentVolumeReclaimPolicy: 'Retain',
          storageClassName: '',
          claimRef: { namespace, name: CACHE_PVC },
          hostPath: { path: dir, type: 'Directory' },
        },
      },
    });
    await w.core.createNamespacedPersistentVolumeClaim({
      namespace,
      body: {
        metadata: { name: CACHE_PVC },
        spec: {
          accessModes: ['ReadWriteOnce'],
          storageClassName: '',
          volumeName: pv,
          resources: { requests: { storage: '1Gi' } },
        },
      },
    });
    await eventually(
      async () =>
        (await w.core.readNamespacedPersistentVolumeClaim({ name: CACHE_PVC, namespace })).status?.phase === 'Bound',
      60_000,
      `cache PVC ${namespace}/${CACHE_PVC} Bound`,
    );
    return dir;
  };

  const namespace = async (name: string, labels: Record<string, string>) => {
    await w.core.createNamespace({ body: { metadata: { name, labels } } });
    await eventually(
      () => w.core.readNamespacedServiceAccount({ name: 'default', namespace: name }),
      30_000,
      `ServiceAccount default in ${name}`,
    );
  };
  const claim = (ns: string, name: string, storageClassName: string, selectedNode?: string) =>
    w.core.createNamespacedPersistentVolumeClaim({
      namespace: ns,
      body: {
        metadata: { name, ...(selectedNode && { annotations: { [SELECTED_NODE_ANNOTATION]: selectedNode } }) },
        spec: { accessModes: ['ReadWriteMany'], storageClassName, resources: { requests: { storage: '1Gi' } } },
      },
    });
  const boundPv = (ns: string, name: string) =>
    eventually(
      async () => {
        const c = await w.core.readNamespacedPersistentVolumeClaim({ name, namespace: ns });
        return c.status?.phase === 'Bound' && c.spec?.volumeName ? c.spec.volumeName : false;
      },
      90_000,
      `PVC ${ns}/${name} Bound`,
    );
  const subPathOf = async (pv: string) =>
    (await w.core.readPersistentVolume({ name: pv })).spec?.csi?.volumeAttributes?.[ATTR.subPath];

  // The app writes a small file and one of several 4 MiB blocks, reads both back (blocks read from the object
  // storage land in the cache as well), and prints what it read.
  const WRITE_AND_READ =
    'echo small-file > /data/small.txt && dd if=/dev/urandom of=/data/big bs=1M count=9 2>/dev/null && ' +
    'sync && md5sum /data/big | cut -d" " -f1 > /data/big.md5 && cat /data/small.txt && md5sum /data/big';
  const writeAndRead = async (ns: string, pod: string) => {
    const r = await exec(w, ns, pod, 'app', ['sh', '-c', WRITE_AND_READ], 60_000);
    const [small, sum] = r.out.trim().split('\n');
    return { small, sum: sum?.split(' ')[0], err: r.err };
  };
  const emptyDirOnHost = (pod: V1Pod, mountPath: string, container: (p: V1Pod) => V1Pod['spec']) => {
    const spec = container(pod)!;
    const all = [...(spec.initContainers ?? []), ...spec.containers];
    const name = all.flatMap((c) => c.volumeMounts ?? []).find((m) => m.mountPath === mountPath)?.name;
    return name && path.join(KUBELET_ROOT, 'pods', pod.metadata!.uid!, 'volumes/kubernetes.io~empty-dir', name);
  };
  const cacheArg = (pod: V1Pod) =>
    [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]
      .flatMap((c) => [...(c.command ?? []), ...(c.args ?? [])])
      .find((a) => a.startsWith('--cache-dir='));

  t.test('sidecar mode: a cache PVC of the app namespace, ${.node.name} in the pathPattern', async (t) => {
    const NS = 'cache-side';
    await namespace(NS, { 'juicefs.com/enable-injection': 'true' });
    const pvDir = await cachePvc(NS);
    // A sidecar is injected before its pod is scheduled, when no node is known yet: the claim names its node first
    // (the scheduler's annotation, set ahead), so the controller provisions it from the pattern and the pod finds
    // it Bound.
    await claim(NS, 'data', 'jfs-cache-pvc', NODE);
    const pv = await boundPv(NS, 'data');
    t.equal(await subPathOf(pv), `${NODE}-${NS}-data`, 'the PV directory is rendered from the node and the PVC');
    await createPod(w, appPod(NS, 'app', ['data']));
    const pod = await podWhen(w, NS, 'app', (p) => appRunning(p), 180_000, 'sidecar pod Running');
    t.equal(cacheArg(pod), '--cache-dir=/var/jfsCache-0', 'the client caches in the PVC only');
    t.ok(
      pod.spec?.volumes?.some((v) => v.persistentVolumeClaim?.claimName === CACHE_PVC),
      'the pod mounts the cache PVC of its namespace',
    );
    const r = await writeAndRead(NS, 'app');
    t.equal(r.small, 'small-file', `the app reads back its small file ${r.err}`);
    t.match(r.sum ?? '', /^[0-9a-f]{32}$/, 'and its 9 MiB file');
    const blocks = await eventually(
      async () => {
        const b = blocksUnder(pvDir);
        return b.length > 0 ? b : false;
      },
      60_000,
      `cache blocks under the cache PV's folder ${pvDir}`,
    );
    t.ok(
      blocks.length > 0,
      `${blocks.length} cache block(s) in the cache PVC, e.g. ${path.relative(pvDir, blocks[0])}`,
    );
    t.equal(
      readOnHost(w, `${NODE}-${NS}-data/small.txt`),
      'small-file\n',
      'the host finds it in the node-named folder',
    );
  });

  t.test('sidecar mode: an emptyDir cache', async (t) => {
    const NS = 'cache-side-ed';
    await namespace(NS, { 'juicefs.com/enable-injection': 'true' });
    await claim(NS, 'data', 'jfs-cache-emptydir', NODE);
    const pv = await boundPv(NS, 'data');
    t.equal(await subPathOf(pv), `${NODE}-${NS}-data`);
    await createPod(w, appPod(NS, 'app', ['data']));
    const pod = await podWhen(w, NS, 'app', (p) => appRunning(p), 180_000, 'sidecar pod Running');
    t.equal(cacheArg(pod), '--cache-dir=/var/jfsCache-emptyDir', 'the client caches in the emptyDir only');
    t.same(
      pod.spec?.volumes?.find((v) => v.emptyDir?.sizeLimit)?.emptyDir,
      { sizeLimit: '1Gi' },
      'an emptyDir of the size the class gives',
    );
    const r = await writeAndRead(NS, 'app');
    t.equal(r.small, 'small-file', `the app reads back its small file ${r.err}`);
    const dir = emptyDirOnHost(pod, '/var/jfsCache-emptyDir', (p) => p.spec);
    t.ok(dir, 'the emptyDir of the sidecar');
    const blocks = await eventually(
      async () => {
        const b = blocksUnder(dir!);
        return b.length > 0 ? b : false;
      },
      60_000,
      `cache blocks in the emptyDir ${dir}`,
    );
    t.ok(blocks.length > 0, `${blocks.length} cache block(s) in the pod's emptyDir`);
    t.equal(
      readOnHost(w, `${NODE}-${NS}-data/small.txt`),
      'small-file\n',
      'the host finds it in the node-named folder',
    );
  });

  const mountPodOf = async (pv: string) =>
    eventually(
      async () =>
        (
          await w.core.listNamespacedPod({
            namespace: SYSTEM_NAMESPACE,
            labelSelector: `app.kubernetes.io/name=juicefs-mount,volume-id=${pv}`,
          })
        ).items.find((p) => isPodReady(p)) ?? false,
      60_000,
      `the Mount Pod of ${pv}`,
    );

  t.test('Mount Pod mode: a cache PVC of the Mount Pods namespace, ${.node.name} in the pathPattern', async (t) => {
    const NS = 'cache-mp';
    await namespace(NS, {});
    const pvDir = await cachePvc(SYSTEM_NAMESPACE);
    // No annotation: the scheduler selects the node, then the controller provisions from the pattern.
    await claim(NS, 'data', 'jfs-cache-pvc');
    await createPod(w, appPod(NS, 'app', ['data']));
    const pv = await boundPv(NS, 'data');
    t.equal(await subPathOf(pv), `${NODE}-${NS}-data`, 'the PV directory is rendered from the node the pod got');
    const pod = await podWhen(w, NS, 'app', (p) => appRunning(p), 180_000, 'app pod Running');
    t.notOk(pod.spec?.initContainers?.length, 'not injected: the node plugin serves it');
    const mp = await mountPodOf(pv);
    t.equal(cacheArg(mp), '--cache-dir=/var/jfsCache-0', 'the Mount Pod caches in the PVC only');
    t.ok(
      mp.spec?.volumes?.some((v) => v.persistentVolumeClaim?.claimName === CACHE_PVC),
      "the Mount Pod mounts the cache PVC of the Mount Pods' namespace",
    );
    // What it inherits from the node plugin's pod (issue 14 item 5): its tolerations and service account (no token).
    const plugin = (
      await w.core.listNamespacedPod({
        namespace: SYSTEM_NAMESPACE,
        labelSelector: 'app.kubernetes.io/name=jfs-sidecar-node',
      })
    ).items[0];
    t.ok(
      (plugin?.spec?.tolerations ?? []).every((tol) =>
        mp.spec?.tolerations?.some((m) => JSON.stringify(m) === JSON.stringify(tol)),
      ) && (plugin?.spec?.tolerations?.length ?? 0) > 0,
      "the Mount Pod has the node plugin pod's tolerations",
    );
    t.equal(mp.spec?.serviceAccountName, plugin?.spec?.serviceAccountName, "and its service account's name");
    t.equal(mp.spec?.automountServiceAccountToken, false, 'but not its token');
    const r = await writeAndRead(NS, 'app');
    t.equal(r.small, 'small-file', `the app reads back its small file ${r.err}`);
    const blocks = await eventually(
      async () => {
        const b = blocksUnder(pvDir);
        return b.length > 0 ? b : false;
      },
      60_000,
      `cache blocks under the cache PV's folder ${pvDir}`,
    );
    t.ok(blocks.length > 0, `${blocks.length} cache block(s) in the cache PVC`);
    t.equal(
      readOnHost(w, `${NODE}-${NS}-data/small.txt`),
      'small-file\n',
      'the host finds it in the node-named folder',
    );
    await w.core.deleteNamespacedPod({ name: 'app', namespace: NS, gracePeriodSeconds: 5 });
  });

  t.test('Mount Pod mode: an emptyDir cache', async (t) => {
    const NS = 'cache-mp-ed';
    await namespace(NS, {});
    await claim(NS, 'data', 'jfs-cache-emptydir');
    await createPod(w, appPod(NS, 'app', ['data']));
    const pv = await boundPv(NS, 'data');
    t.equal(await subPathOf(pv), `${NODE}-${NS}-data`);
    await podWhen(w, NS, 'app', (p) => appRunning(p), 180_000, 'app pod Running');
    const mp = await mountPodOf(pv);
    t.equal(cacheArg(mp), '--cache-dir=/var/jfsCache-emptyDir', 'the Mount Pod caches in the emptyDir only');
    const r = await writeAndRead(NS, 'app');
    t.equal(r.small, 'small-file', `the app reads back its small file ${r.err}`);
    const dir = emptyDirOnHost(mp, '/var/jfsCache-emptyDir', (p) => p.spec);
    t.ok(dir, "the Mount Pod's emptyDir");
    const blocks = await eventually(
      async () => {
        const b = blocksUnder(dir!);
        return b.length > 0 ? b : false;
      },
      60_000,
      `cache blocks in the emptyDir ${dir}`,
    );
    t.ok(blocks.length > 0, `${blocks.length} cache block(s) in the Mount Pod's emptyDir`);
    t.equal(
      readOnHost(w, `${NODE}-${NS}-data/small.txt`),
      'small-file\n',
      'the host finds it in the node-named folder',
    );
    await w.core.deleteNamespacedPod({ name: 'app', namespace: NS, gracePeriodSeconds: 5 });
  });
}
