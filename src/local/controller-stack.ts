// The controller as a cluster runs it: jfs-sidecar controller (with the
// shipped RBAC, through its ServiceAccount) beside the real csi-provisioner and csi-resizer,
// on a control plane of ours. Shared by `jfs-sidecar local`, tests and bench.
import type { KubernetesObject } from '@kubernetes/client-node';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { SYSTEM_NAMESPACE } from '../contract/keys.js';
import { applyObjects, ManagedProcess, readManifest, waitForSocket } from './components.js';
import { ensureBinaries, type ControlPlane } from './control-plane.js';

export const CONTROLLER_NAMESPACE = SYSTEM_NAMESPACE;

export interface ControllerStack {
  socket: string;
  controller: ManagedProcess;
  provisioner: ManagedProcess;
  resizer: ManagedProcess;
  snapshotter?: ManagedProcess;
  /** Kills the controller at once (as a crash) and starts it again. */
  crashAndRestart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startControllerStack(
  cp: ControlPlane,
  opts: {
    dir: string;
    secretNamespaces: string[];
    extraArgs?: string[];
    /**
     * Serve CSI from this Node.js script (argv: the endpoint) instead of `jfs-sidecar controller`: the
     * provisioning benchmark's no-filesystem baseline, under the same csi-provisioner.
     */
    controllerScript?: string;
    /** Also run csi-snapshotter (the cluster needs the CRDs and snapshot-controller: ./snapshot-controller.ts). */
    snapshots?: boolean;
  },
): Promise<ControllerStack> {
  const bins = ensureBinaries([
    'juicefs',
    'csi-provisioner',
    'csi-resizer',
    ...(opts.snapshots ? (['csi-snapshotter'] as const) : []),
  ]);
  const admin = cp.adminKubeConfig();
  // The shipped ServiceAccount and RBAC; the Deployment's containers run here as processes.
  await applyObjects(admin, [
    ...readManifest('namespace.yaml'),
    ...readManifest('controller.yaml').filter((o: KubernetesObject) => o.kind !== 'Deployment'),
  ]);
  const kubeconfig = await cp.serviceAccountKubeconfig(CONTROLLER_NAMESPACE, 'jfs-sidecar-controller');
  const socket = path.join(opts.dir, 'controller.sock');
  const controllerArgs = [
    'controller',
    `--endpoint=unix://${socket}`,
    `--juicefs=${bins.juicefs}`,
    `--state-dir=${path.join(opts.dir, 'controller-state')}`,
    `--kubeconfig=${kubeconfig}`,
    '--secret-sync',
    ...opts.secretNamespaces.map((n) => `--secret-namespace=${n}`),
    '--leader-elect',
    '--stop-classic-sidecars',
    `--leader-election-namespace=${CONTROLLER_NAMESPACE}`,
    ...(opts.extraArgs ?? []),
  ];
  const startController = () =>
    (opts.controllerScript
      ? new ManagedProcess(
          process.execPath,
          [opts.controllerScript, `unix://${socket}`],
          path.join(opts.dir, 'controller.log'),
        )
      : ManagedProcess.cli(controllerArgs, path.join(opts.dir, 'controller.log'))
    ).start();
  let controller = startController();
  await waitForSocket(socket);
  /**
   * A Kubernetes CSI sidecar on the controller's socket, as its container in manifests/controller.yaml runs (no
   * leader election here, short retries); it exits when it loses the socket, and is restarted as kubelet would.
   */
  const csiSidecar = (name: 'csi-provisioner' | 'csi-resizer' | 'csi-snapshotter', args: string[]) =>
    new ManagedProcess(
      bins[name],
      [
        `--csi-address=${socket}`,
        `--kubeconfig=${kubeconfig}`,
        '--leader-election=false',
        '--timeout=60s',
        '--retry-interval-start=500ms',
        '--retry-interval-max=5s',
        ...args,
        '--v=2',
      ],
      path.join(opts.dir, `${name}.log`),
      true,
    ).start();
  const provisioner = csiSidecar('csi-provisioner', [
    '--extra-create-metadata',
    // As manifests/controller.yaml: the defaults (5 QPS, burst 10) throttle provisioning to a few PVCs per
    // second (each costs a PV create and two Events); 100 workers keep CreateVolume calls queued at the
    // controller, whose pool sets the pace (ADR 0024).
    '--worker-threads=100',
    '--kube-api-qps=200',
    '--kube-api-burst=400',
  ]);
  const resizer = csiSidecar('csi-resizer', ['--handle-volume-inuse-error=false']);
  const snapshotter = opts.snapshots ? csiSidecar('csi-snapshotter', []) : undefined;
  const stack: ControllerStack = {
    socket,
    get controller() {
      return controller;
    },
    provisioner,
    resizer,
    snapshotter,
    crashAndRestart: async () => {
      controller.kill();
      await controller.stop();
      rmSync(socket, { force: true });
      controller = startController();
      await waitForSocket(socket);
    },
    stop: async () => {
      await provisioner.stop();
      await resizer.stop();
      await snapshotter?.stop();
      await controller.stop();
    },
  };
  return stack;
}
