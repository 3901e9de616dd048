// The node service as its DaemonSet runs it — `jfs-sidecar node` with the
// shipped ServiceAccount and RBAC — for one Node object on a control plane of
// ours, and the kubelet stand-in playing that node's kubelet. Shared by
// `jfs-sidecar local` and the Mount Pod tests (as controller-stack.ts is for
// the controller).
import type { KubernetesObject } from '@kubernetes/client-node';
import path from 'node:path';
import type { Logger } from 'pino';
import { SYSTEM_NAMESPACE } from '../contract/keys.js';
import { applyObjects, ManagedProcess, readManifest, waitForSocket } from './components.js';
import type { ControlPlane } from './control-plane.js';
import { KubeletStandIn } from './kubelet-standin.js';

export const NODE_NAMESPACE = SYSTEM_NAMESPACE;

export interface NodeStackOptions {
  nodeName: string;
  /** Socket, logs and the stand-in's kubelet root go here. */
  dir: string;
  juicefsBinary: string;
  /** Whether the stand-in also publishes app pods' volumes (kubelet's part), not only runs Mount Pods. */
  playAppPods: boolean;
  /** --check-interval of the node service (Go duration). */
  checkInterval?: string;
  log: Logger;
}

export interface NodeStack {
  socket: string;
  nodeKubeconfig: string;
  node: ManagedProcess;
  standIn: KubeletStandIn;
  /** Stops the stand-in (it unpublishes what it published), then the node service. */
  stop(): Promise<void>;
}

export async function startNodeStack(cp: ControlPlane, opts: NodeStackOptions): Promise<NodeStack> {
  const admin = cp.adminKubeConfig();
  // The DaemonSet's container runs here as a process; its ServiceAccount and RBAC are the shipped ones.
  await applyObjects(admin, [
    ...readManifest('namespace.yaml'),
    ...readManifest('node/node.yaml').filter((o: KubernetesObject) => o.kind !== 'DaemonSet'),
    { apiVersion: 'v1', kind: 'Node', metadata: { name: opts.nodeName } },
  ]);
  const nodeKubeconfig = await cp.serviceAccountKubeconfig(NODE_NAMESPACE, 'jfs-sidecar-node');
  const socket = path.join(opts.dir, 'node.sock');
  const node = ManagedProcess.cli(
    [
      'node',
      `--endpoint=unix://${socket}`,
      `--node-id=${opts.nodeName}`,
      `--kubeconfig=${nodeKubeconfig}`,
      `--namespace=${NODE_NAMESPACE}`,
      ...(opts.checkInterval ? [`--check-interval=${opts.checkInterval}`] : []),
    ],
    path.join(opts.dir, 'node.log'),
  ).start();
  await waitForSocket(socket);
  const standIn = new KubeletStandIn({
    kubeConfig: admin,
    nodeName: opts.nodeName,
    juicefsBinary: opts.juicefsBinary,
    logDir: opts.dir,
    nodeEndpoint: opts.playAppPods ? socket : undefined,
    log: opts.log,
  });
  await standIn.start();
  return {
    socket,
    nodeKubeconfig,
    node,
    standIn,
    stop: async () => {
      await standIn.close();
      await node.stop();
    },
  };
}
