// Mount Pod mode on a real control plane, as the node tests need it: the node
// stack of `npm start` (src/local/node-stack.ts), a real JuiceFS volume, a
// client of the node socket. Everything is torn down with the test.
import { CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { ManagedProcess } from '../../src/local/components.js';
import { csiClient, type CsiCall } from '../../src/local/csi-client.js';
import type { ControlPlane } from '../../src/local/control-plane.js';
import type { KubeletStandIn } from '../../src/local/kubelet-standin.js';
import { detachMountsUnder } from '../../src/local/mounts.js';
import { NODE_NAMESPACE, startNodeStack } from '../../src/local/node-stack.js';
import { eventually, startControlPlane, type TapLike } from './harness.js';
import { makeVolume, type TestVolume } from './juicefs.js';

export const MOUNT_POD_NAMESPACE = NODE_NAMESPACE;

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
  mountPods: () => Promise<V1Pod[]>;
}

/** Lines of each Mount Pod's log printed on a failure (the whole files are kept). */
const POD_LOG_LINES = 120;

/**
 * On a failure: the stand-in's log of each Mount Pod (its own lines — started,
 * stopped, exited — and the client's output; one file per pod name, so a pod
 * re-created under the same name continues it) is printed, and every log is
 * copied to a folder that outlives the test's scratch folder.
 */
function keepStandInLogs(t: TapLike, dir: string): void {
  const logs = readdirSync(dir).filter((f) => f.endsWith('.log'));
  const kept = mkdtempSync(path.join(tmpdir(), 'jfs-node-logs-'));
  for (const f of logs) copyFileSync(path.join(dir, f), path.join(kept, f));
  for (const f of logs.filter((f) => f !== 'node.log')) {
    const lines = readFileSync(path.join(dir, f), 'utf8').trimEnd().split('\n');
    t.comment(
      `stand-in log ${f} (last ${Math.min(lines.length, POD_LOG_LINES)} of ${lines.length} lines):\n${lines.slice(-POD_LOG_LINES).join('\n')}`,
    );
  }
  t.comment(`logs kept in ${kept}`);
}

export async function startNodeHarness(
  t: TapLike,
  opts: { nodeName: string; volumeName: string; playAppPods?: boolean },
): Promise<NodeHarness> {
  // kube-controller-manager creates the namespaces' default ServiceAccounts that pods need.
  const cp = await startControlPlane(t, { controllerManager: true });
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  const vol = makeVolume(opts.volumeName);
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-node-'));
  // The node service with its shipped RBAC, and the stand-in playing this node's kubelet (there is no kubelet here).
  const stack = await startNodeStack(cp, {
    nodeName: opts.nodeName,
    dir,
    juicefsBinary: vol.juicefs,
    playAppPods: opts.playAppPods ?? false,
    checkInterval: '1s',
    log: pino({ level: 'warn' }),
  });
  const client = csiClient(stack.socket, 'Node');
  t.teardown(async () => {
    const failed = !t.passing();
    if (failed) t.comment(`node log:\n${stack.node.log(40)}`);
    client.close();
    await stack.stop();
    // After the stop, so the logs tell how each Mount Pod's processes ended too.
    if (failed) keepStandInLogs(t, dir);
    detachMountsUnder(dir); // a failed test may leave a target mounted: never recurse into it
    rmSync(dir, { recursive: true, force: true });
    vol.remove();
  });
  await eventually(
    () => core.readNamespacedServiceAccount({ name: 'default', namespace: MOUNT_POD_NAMESPACE }),
    30_000,
    'default ServiceAccount',
  );
  const mountPods = async () =>
    (
      await core.listNamespacedPod({
        namespace: MOUNT_POD_NAMESPACE,
        labelSelector: 'app.kubernetes.io/name=juicefs-mount',
      })
    ).items;
  return {
    cp,
    admin,
    core,
    vol,
    dir,
    sock: stack.socket,
    nodeKubeconfig: stack.nodeKubeconfig,
    node: stack.node,
    standIn: stack.standIn,
    call: client.call,
    mountPods,
  };
}
