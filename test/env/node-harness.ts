// Mount Pod mode on a real control plane, as the node tests need it: the node
// service as a process with the shipped ServiceAccount and RBAC (its
// DaemonSet's container, run here), a real JuiceFS volume, and the kubelet
// stand-in playing one node's kubelet. Everything is torn down with the test.
import { CoreV1Api, type KubeConfig, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { csiClient, type CsiCall } from '../../src/csi/server.js';
import { detachMountsUnder } from '../../src/juicefs/mounts.js';
import { applyObjects, ManagedProcess, readManifest, waitForSocket } from '../../src/local/components.js';
import type { ControlPlane } from '../../src/local/control-plane.js';
import { KubeletStandIn } from '../../src/local/kubelet-standin.js';
import { eventually, startControlPlane, type TapLike } from './harness.js';
import { makeVolume, type TestVolume } from './juicefs.js';

export const MOUNT_POD_NAMESPACE = 'juicefs-system';

export interface NodeHarness {
  cp: ControlPlane;
  admin: KubeConfig;
  core: CoreV1Api;
  vol: TestVolume;
  /** Scratch folder: the socket, logs, targets. */
  dir: string;
  sock: string;
  nodeKubeconfig: string;
  node: ManagedProcess;
  standIn: KubeletStandIn;
  /** A call on the node socket's Node service. */
  call: CsiCall;
  /** The node's Mount Pods (not yet being deleted ones too). */
  mountPods(): Promise<V1Pod[]>;
}

export async function startNodeHarness(t: TapLike, opts: { nodeName: string; volumeName: string; playAppPods?: boolean }): Promise<NodeHarness> {
  // kube-controller-manager creates the namespaces' default ServiceAccounts that pods need.
  const cp = await startControlPlane(t, { controllerManager: true });
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  await applyObjects(admin, [
    ...readManifest('namespace.yaml'),
    ...readManifest('node/node.yaml').filter((o: KubernetesObject) => o.kind !== 'DaemonSet'),
    { apiVersion: 'v1', kind: 'Node', metadata: { name: opts.nodeName } } as KubernetesObject,
  ]);
  const nodeKubeconfig = await cp.serviceAccountKubeconfig(MOUNT_POD_NAMESPACE, 'jfs-sidecar-node');
  const vol = makeVolume(opts.volumeName);
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-node-'));
  const sock = path.join(dir, 'node.sock');
  const node = ManagedProcess.cli(
    ['node', `--endpoint=unix://${sock}`, `--node-id=${opts.nodeName}`, `--kubeconfig=${nodeKubeconfig}`, `--namespace=${MOUNT_POD_NAMESPACE}`, '--check-interval=1s'],
    path.join(dir, 'node.log'),
  ).start();
  // Playing kubelet for the node (there is no kubelet here): runs its Mount Pods, and with playAppPods publishes its app pods' volumes.
  const standIn = new KubeletStandIn({
    kubeConfig: admin,
    nodeName: opts.nodeName,
    juicefsBinary: vol.juicefs,
    logDir: dir,
    nodeEndpoint: opts.playAppPods ? sock : undefined,
    log: pino({ level: 'warn' }),
  });
  await standIn.start();
  const client = csiClient(sock, 'Node');
  t.teardown(async () => {
    if (!t.passing()) t.comment(`node log:\n${node.log(40)}`);
    client.close();
    await standIn.close();
    await node.stop();
    detachMountsUnder(dir); // a failed test may leave a target mounted: never recurse into it
    rmSync(dir, { recursive: true, force: true });
    vol.remove();
  });
  await waitForSocket(sock);
  await eventually(() => core.readNamespacedServiceAccount({ name: 'default', namespace: MOUNT_POD_NAMESPACE }), 30_000, 'default ServiceAccount');
  const mountPods = async () =>
    (await core.listNamespacedPod({ namespace: MOUNT_POD_NAMESPACE, labelSelector: 'app.kubernetes.io/name=juicefs-mount' })).items;
  return { cp, admin, core, vol, dir, sock, nodeKubeconfig, node, standIn, call: client.call, mountPods };
}
