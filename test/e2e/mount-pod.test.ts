// Mount Pod mode on a real control plane: the node service runs as a process;
// the test calls NodePublishVolume/NodeUnpublishVolume on its socket as
// kubelet would, and a kubelet stand-in (src/local/kubelet-standin.ts) runs
// the Mount Pods' own command lines here with the real juicefs client and FUSE.
import * as grpc from '@grpc/grpc-js';
import { CoreV1Api, type KubernetesObject } from '@kubernetes/client-node';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { loadCsi } from '../../src/csi/server.js';
import { mountAt } from '../../src/juicefs/mounts.js';
import { applyObjects, ManagedProcess, readManifest, waitForSocket } from '../../src/local/components.js';
import { KubeletStandIn } from '../../src/local/kubelet-standin.js';
import { referencesOf } from '../../src/node/mount-pod.js';
import { eventually, startControlPlane } from '../env/harness.js';
import { makeVolume } from '../env/juicefs.js';

const NODE = 'node-1';
const NS = 'juicefs-system';

t.setTimeout(10 * 60 * 1000);

t.test('Mount Pod mode: shared Mount Pod, references, cleanup', async (t) => {
  // kube-controller-manager creates the namespaces' default ServiceAccounts that pods need.
  const cp = await startControlPlane(t, { controllerManager: true });
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  const vol = makeVolume('mountpod');
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-mp-'));
  await applyObjects(admin, [...readManifest('namespace.yaml'), { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } } as KubernetesObject]);

  const sock = path.join(dir, 'node.sock');
  const node = ManagedProcess.cli(['node', `--endpoint=unix://${sock}`, `--node-id=${NODE}`, `--kubeconfig=${cp.adminKubeconfigPath}`, `--namespace=${NS}`], path.join(dir, 'node.log')).start();
  // Playing kubelet for the Mount Pods of NODE (there is no kubelet here).
  const standIn = new KubeletStandIn({ kubeConfig: admin, nodeName: NODE, juicefsBinary: vol.juicefs, logDir: dir, log: pino({ level: 'warn' }) });
  await standIn.start();
  t.teardown(async () => {
    if (!t.passing()) t.comment(`node log:\n${node.log(40)}`);
    await standIn.close();
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
    vol.remove();
  });
  await waitForSocket(sock);
  await eventually(() => core.readNamespacedServiceAccount({ name: 'default', namespace: NS }), 30_000, 'default ServiceAccount');
  const csi = loadCsi();
  const client = new csi.csi.v1.Node(`unix://${sock}`, grpc.credentials.createInsecure()) as unknown as Record<string, (req: unknown, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void>;
  const call = (method: string, req: unknown) =>
    new Promise<unknown>((resolve, reject) => client[method].call(client, req, (err, res) => (err ? reject(err) : resolve(res))));

  const publish = (pv: string, target: string, context: Record<string, string> = {}) =>
    call('NodePublishVolume', {
      volume_id: pv,
      target_path: target,
      volume_capability: { mount: { mount_flags: [] }, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } },
      readonly: false,
      secrets: vol.secrets,
      volume_context: { subPath: pv, ...context },
    });
  const unpublish = (pv: string, target: string) => call('NodeUnpublishVolume', { volume_id: pv, target_path: target });
  const mountPods = async () =>
    (await core.listNamespacedPod({ namespace: NS, labelSelector: 'app.kubernetes.io/name=juicefs-mount' })).items;

  const t1 = path.join(dir, 'pods/a/volumes/pv-a/mount');
  const t2 = path.join(dir, 'pods/b/volumes/pv-a/mount');
  const t3 = path.join(dir, 'pods/c/volumes/pv-b/mount');

  await t.test('two publishes of one PV share one Mount Pod with two references', async (t) => {
    await publish('pv-a', t1);
    await publish('pv-a', t2);
    await publish('pv-a', t2); // idempotent
    const pods = await mountPods();
    t.equal(pods.length, 1, 'one Mount Pod');
    t.same(referencesOf(pods[0]).sort(), [t1, t2].sort(), 'a reference annotation per target');
    t.equal(pods[0].metadata?.labels?.['volume-id'], 'pv-a');
    t.ok(pods[0].metadata?.labels?.['juicefs-hash'], 'settings hash label');
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

  await t.test('juicefs/mount-delete-delay keeps the Mount Pod a while, and a new publish takes it back', async (t) => {
    const t4 = path.join(dir, 'pods/d/volumes/pv-c/mount');
    const delayed = { 'juicefs/mount-delete-delay': '3s' };
    const podOfC = async () => (await mountPods()).find((p) => p.metadata?.labels?.['volume-id'] === 'pv-c');
    await publish('pv-c', t4, delayed);
    await unpublish('pv-c', t4);
    let pod = await podOfC();
    t.ok(pod, 'still there after its last reference went');
    t.same(referencesOf(pod!), []);
    t.ok(pod?.metadata?.annotations?.['juicefs-delete-at'], 'stamped with juicefs-delete-at');
    await publish('pv-c', t4, delayed);
    pod = await podOfC();
    t.notOk(pod?.metadata?.annotations?.['juicefs-delete-at'], 'a new reference cancels the deletion');
    t.same(referencesOf(pod!), [t4]);
    await unpublish('pv-c', t4);
    const started = Date.now();
    await eventually(async () => !(await podOfC()), 30_000, 'deletion after the delay');
    t.ok(Date.now() - started >= 2000, `deleted after the delay (${Date.now() - started} ms)`);
  });

  await t.test('unpublishing both targets deletes the Mount Pod', async (t) => {
    await unpublish('pv-a', t1);
    let pods = await mountPods();
    const a = pods.find((p) => p.metadata?.labels?.['volume-id'] === 'pv-a');
    t.same(a && referencesOf(a), [t2], 'one reference left');
    t.equal(readFileSync(path.join(t2, 'hello.txt'), 'utf8'), 'written through target 1', 'the other target still works');
    await unpublish('pv-a', t2);
    await unpublish('pv-a', t2); // idempotent
    await eventually(async () => !(await mountPods()).some((p) => p.metadata?.labels?.['volume-id'] === 'pv-a'), 60_000, 'pv-a Mount Pod deleted');
    t.notOk(mountAt(t1) || mountAt(t2), 'targets unmounted');
    await unpublish('pv-b', t3);
    await eventually(async () => (await mountPods()).length === 0, 60_000, 'all Mount Pods deleted');
    pods = await mountPods();
    t.equal(pods.length, 0);
  });
});
