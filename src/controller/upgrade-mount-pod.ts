// The Mount Pod upgrades (ADR 0019), driven by the rollout engine like the sidecar swap (ADR 0017). Both need the
// node service's fd holder (the Mount Pod's fd folder): without it a client that stops takes the mount with it.
// - mount-pod-binary: Preparing runs a copy pod of the target image on the node (it pulls the image, runs its
//   `juicefs version` and puts the binary in the Mount Pod's fd folder); HandingOver is one exec in the Mount Pod
//   (BINARY_INSTALL_SCRIPT: the binary in place, SIGHUP, wait for the new mount process) and ends Succeeded.
// - mount-pod-recreate: Preparing runs the canary (pulls and runs the target image on the node); HandingOver patches
//   the client container's image; the kubelet runs its preStop (the handover: SIGHUP, no unmount) and starts the new
//   container, which takes the held fd and the saved handles; Swapping is judged by the planner from the status (a
//   new imageID, started, ready), as for sidecars.
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { MOUNT_POD_ANN_FD_HELD, MOUNT_POD_APP_VALUE, MOUNT_POD_LABEL_APP, SYSTEM_NAMESPACE } from '../contract/keys.js';
import { isStatus, unlessNotFound } from '../k8s/errors.js';
import { fdDirOf } from '../node/mount-pod-plan.js';
import { observeSidecarPod, podKey } from '../upgrade/clients.js';
import { BINARY_INSTALL_SCRIPT, binaryCopyPod, MOUNT_POD_CLIENT, versionOfConfigLine } from '../upgrade/mount-pod.js';
import { imagePatch } from '../upgrade/patches.js';
import { classifyMountPodChange } from '../upgrade/settings-change.js';
import { mountPodSettingsImages, type SettingsAnswer, type SettingsSource } from '../upgrade/settings-images.js';
import type { JuiceFSUpgrade, PodUpgradeProgress } from '../upgrade/types.js';
import { UpgradeStepFailed, type UpgradeActuator } from './upgrade-actuator.js';
import { canaryPod, canaryVerdict, execIn } from './upgrade-sidecar.js';

export interface MountPodActuatorOptions {
  kubeConfig: KubeConfig;
  log: Logger;
  /** The Mount Pods' namespace (the node service's `--namespace`). */
  namespace?: string;
  /** What `target.fromSettings` reads: the PVs, PVCs and ConfigMap in the controller's caches. */
  settings?: SettingsSource;
  now?: () => Date;
}

abstract class MountPodActuator implements UpgradeActuator {
  abstract readonly kind: 'mount-pod-binary' | 'mount-pod-recreate';
  readonly pods: { labelSelector: string; namespace: string };
  protected readonly core: CoreV1Api;

  constructor(protected readonly opts: MountPodActuatorOptions) {
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.pods = {
      labelSelector: `${MOUNT_POD_LABEL_APP}=${MOUNT_POD_APP_VALUE}`,
      namespace: opts.namespace ?? SYSTEM_NAMESPACE,
    };
  }

  observe(pod: V1Pod) {
    return observeSidecarPod(pod);
  }

  settingsImages(pod: V1Pod): SettingsAnswer {
    if (!this.opts.settings) return { unknown: 'the controller was started without the settings caches' };
    return mountPodSettingsImages(pod, this.opts.settings);
  }

  abstract step(pod: V1Pod, rec: PodUpgradeProgress, upgrade: JuiceFSUpgrade): Promise<Partial<PodUpgradeProgress>>;

  async finish(): Promise<void> {
    // No readiness gate on Mount Pods: nothing to undo.
  }

  /** The Mount Pod's fd folder: an upgrade without the node service's holder would take the mount down. */
  protected fdDir(pod: V1Pod): string {
    const dir = fdDirOf(pod);
    if (!dir)
      throw new UpgradeStepFailed(
        'the Mount Pod has no FUSE fd holder (juicefs/fd-holder "false", or made by an older node service): ' +
          'its mount would not survive the client restart; not upgraded',
      );
    return dir;
  }

  /**
   * The upgrade may change the client's image and nothing else of the running Mount Pod (issue 13 item 5): the rule
   * the node service also applies to settings changes; a change it cannot carry fails the pod with the reason.
   */
  protected checkChange(pod: V1Pod, rec: PodUpgradeProgress): void {
    const running = pod.spec?.containers.find((c) => c.name === MOUNT_POD_CLIENT);
    const to = rec.containers.find((c) => c.name === MOUNT_POD_CLIENT)?.toImage;
    if (!running || !to) throw new UpgradeStepFailed(`no ${MOUNT_POD_CLIENT} container to upgrade`);
    const change = classifyMountPodChange(running, { ...running, image: to });
    if (!change.smooth) throw new UpgradeStepFailed(`not a smooth change: ${change.reasons.join('; ')}`);
  }

  /** Runs a one-shot pod to its end and deletes it: undefined while it runs, else its verdict and log. */
  protected async oneShot(want: V1Pod): Promise<{ ok: boolean; message: string; log: string } | undefined> {
    const name = want.metadata!.name!;
    const namespace = want.metadata!.namespace!;
    let pod = await unlessNotFound(this.core.readNamespacedPod({ name, namespace }));
    if (!pod) {
      try {
        pod = await this.core.createNamespacedPod({ namespace, body: want });
      } catch (err) {
        if (!isStatus(err, 409)) throw err;
        return undefined;
      }
    }
    const verdict = canaryVerdict(pod);
    if (!verdict) return undefined;
    const log = verdict.ok ? await this.core.readNamespacedPodLog({ name, namespace }).catch(() => '') : '';
    await unlessNotFound(this.core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0 }));
    return { ...verdict, log };
  }
}

export class MountPodBinaryActuator extends MountPodActuator {
  readonly kind = 'mount-pod-binary' as const;

  async step(pod: V1Pod, rec: PodUpgradeProgress): Promise<Partial<PodUpgradeProgress>> {
    const image = rec.containers.find((c) => c.name === MOUNT_POD_CLIENT)?.toImage;
    if (!image) throw new UpgradeStepFailed(`no ${MOUNT_POD_CLIENT} container to upgrade`);
    switch (rec.phase) {
      case 'Preparing': {
        this.checkChange(pod, rec);
        const copy = binaryCopyPod(pod, this.fdDir(pod), image);
        const done = await this.oneShot(copy);
        if (!done) return { message: `copy pod ${copy.metadata!.name} of ${image} on ${pod.spec?.nodeName}: running` };
        if (!done.ok)
          throw new UpgradeStepFailed(`${image} does not run on ${pod.spec?.nodeName} (copy pod): ${done.message}`);
        return { phase: 'Draining', message: `new binary: ${done.log.trim().split('\n')[0] ?? ''}` };
      }
      case 'Draining':
        // No Service fronts a Mount Pod: nothing to drain.
        return { phase: 'HandingOver' };
      case 'HandingOver': {
        this.fdDir(pod);
        const { status, err, out } = await execIn(
          this.opts.kubeConfig,
          pod,
          MOUNT_POD_CLIENT,
          ['sh', '-c', BINARY_INSTALL_SCRIPT],
          90_000,
        );
        if (status.status !== 'Success')
          throw new UpgradeStepFailed(`binary upgrade in ${podKey(rec)}: ${status.message ?? ''} ${err}`.trim());
        const version = versionOfConfigLine(out);
        this.opts.log.info({ pod: podKey(rec), image, version }, 'Mount Pod binary upgraded');
        return {
          phase: 'Succeeded',
          finishedAt: (this.opts.now?.() ?? new Date()).toISOString(),
          message: `client now ${version ?? '?'} (${out.trim().split('\n')[0]})`,
        };
      }
      default:
        return {};
    }
  }
}

export class MountPodRecreateActuator extends MountPodActuator {
  readonly kind = 'mount-pod-recreate' as const;
  /** Canaries that passed (node + image): the image is on the node and runs. */
  private readonly passed = new Set<string>();

  async step(pod: V1Pod, rec: PodUpgradeProgress, upgrade: JuiceFSUpgrade): Promise<Partial<PodUpgradeProgress>> {
    switch (rec.phase) {
      case 'Preparing': {
        this.fdDir(pod);
        this.checkChange(pod, rec);
        const node = pod.spec?.nodeName ?? '';
        for (const image of new Set(rec.containers.map((c) => c.toImage))) {
          const key = `${node}\n${image}`;
          if (this.passed.has(key)) continue;
          const canary = canaryPod(node, image);
          const done = await this.oneShot(canary);
          if (!done) return { message: `canary ${canary.metadata!.name} of ${image} on ${node}: running` };
          if (!done.ok) throw new UpgradeStepFailed(`${image} does not start on ${node} (canary): ${done.message}`);
          this.passed.add(key);
        }
        return { phase: 'Draining', message: undefined };
      }
      case 'Draining':
        return { phase: 'HandingOver' };
      case 'HandingOver': {
        // The handover is the preStop's (ADR 0019); the kubelet runs it when it replaces the container. Only with the
        // fd held: otherwise the old client's exit ends the connection and the mount with it.
        this.fdDir(pod);
        if (pod.metadata?.annotations?.[MOUNT_POD_ANN_FD_HELD] !== 'true')
          return {
            message:
              "waiting for the node service to hold the client's FUSE fd (it pulls a juicefs < 1.2.1 client's within seconds of its start)",
          };
        const images = Object.fromEntries(rec.containers.map((c) => [c.name, c.toImage]));
        const body = imagePatch(pod, images, upgrade.metadata!.name!);
        try {
          await this.core.patchNamespacedPod(
            { name: pod.metadata.name!, namespace: pod.metadata.namespace!, body },
            setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
          );
        } catch (err) {
          if (isStatus(err, 403) || isStatus(err, 422))
            throw new UpgradeStepFailed(`the API server refused the image patch of ${podKey(rec)}`);
          throw err;
        }
        return { phase: 'Swapping', message: undefined };
      }
      default:
        return {};
    }
  }
}
