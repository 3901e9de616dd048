// The controller as a cluster runs it: jfs-sidecar controller (with the
// shipped RBAC, through its ServiceAccount) beside the real csi-provisioner,
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
  },
): Promise<ControllerStack> {
  const bins = ensureBinaries(['juicefs', 'csi-provisioner']);
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
  const provisioner = new ManagedProcess(
    bins['csi-provisioner'],
    [
      `--csi-address=${socket}`,
      `--kubeconfig=${kubeconfig}`,
      '--extra-create-metadata',
      '--leader-election=false',
      '--timeout=60s',
      '--retry-interval-start=500ms',
      '--retry-interval-max=5s',
      // As manifests/controller.yaml: the defaults (5 QPS, burst 10) throttle provisioning to a few PVCs per
      // second (each costs a PV create and two Events); 100 workers keep CreateVolume calls queued at the
      // controller, whose pool sets the pace (ADR 0024).
      '--worker-threads=100',
      '--kube-api-qps=200',
      '--kube-api-burst=400',
      '--v=2',
    ],
    path.join(opts.dir, 'csi-provisioner.log'),
    // csi-provisioner exits when it loses the driver's socket; in a pod, kubelet restarts it.
    true,
  ).start();
  const stack: ControllerStack = {
    socket,
    get controller() {
      return controller;
    },
    provisioner,
    crashAndRestart: async () => {
      controller.kill();
      await controller.stop();
      rmSync(socket, { force: true });
      controller = startController();
      await waitForSocket(socket);
    },
    stop: async () => {
      await provisioner.stop();
      await controller.stop();
    },
  };
  return stack;
}
