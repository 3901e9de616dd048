// The reference protocol of this node's Mount Pods, and every API write to
// them. A target's reference is the annotation `juicefs-<sha256(target)>:
// <target>` on the PV's Mount Pod: the first reference creates the Mount Pod, a
// new one within the delete delay takes it back, the last one gone stamps
// `juicefs-delete-at` (with a delete delay) or deletes it. Callers hold the
// volume's lock (see lockKeyOf).
import { CoreV1Api, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import type { Operation } from 'fast-json-patch';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { parseDuration } from '../contract/duration.js';
import {
  MOUNT_POD_ANN_DELETE_AT,
  MOUNT_POD_ANN_DELETE_DELAY,
  MOUNT_POD_ANN_FD_HELD,
  MOUNT_POD_APP_VALUE,
  MOUNT_POD_LABEL_APP,
  MOUNT_POD_LABEL_VOLUME_ID,
} from '../contract/keys.js';
import { Code, CsiError } from '../csi/server.js';
import { isStatus, unlessNotFound } from '../k8s/errors.js';
import { annotationPatch, FD_UNMOUNT_MARKER, fdDirOf, referenceKey, referencesOf } from './mount-pod-plan.js';

/** Where this node's Mount Pods live. */
export interface MountPodScope {
  nodeName: string;
  /** Namespace of Mount Pods, their Secrets and the global ConfigMap. */
  namespace: string;
  log: Logger;
}

/** The node's lock key of a Mount Pod's volume: its `volume-id` label (volumeLabel() of the PV). */
export function lockKeyOf(pod: V1Pod): string {
  return pod.metadata?.labels?.[MOUNT_POD_LABEL_VOLUME_ID] ?? pod.metadata!.name!;
}

export class MountPodReferences {
  constructor(
    private readonly core: CoreV1Api,
    private readonly scope: MountPodScope,
  ) {}

  /** The Mount Pod as the API has it now, undefined when it is gone. */
  async read(name: string): Promise<V1Pod | undefined> {
    return unlessNotFound(this.core.readNamespacedPod({ name, namespace: this.scope.namespace }));
  }

  /** The Mount Pods of this node. */
  async podsOnNode(): Promise<V1Pod[]> {
    const list = await this.core.listNamespacedPod({
      namespace: this.scope.namespace,
      labelSelector: `${MOUNT_POD_LABEL_APP}=${MOUNT_POD_APP_VALUE}`,
      fieldSelector: `spec.nodeName=${this.scope.nodeName}`,
    });
    return list.items;
  }

  /** A JSON patch of a Mount Pod; guard it with a `test` op where a concurrent writer matters. */
  private async patchPod(name: string, ops: Operation[]): Promise<void> {
    await this.core.patchNamespacedPod(
      { name, namespace: this.scope.namespace, body: ops },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
  }

  /** Records on the Mount Pod whether its client's FUSE fd is held (MOUNT_POD_ANN_FD_HELD); nothing when it says so. */
  async recordFdHeld(pod: V1Pod, held: boolean): Promise<void> {
    const ops = annotationPatch(
      pod,
      held ? { set: { [MOUNT_POD_ANN_FD_HELD]: 'true' } } : { remove: [MOUNT_POD_ANN_FD_HELD] },
    );
    if (ops.length === 0) return;
    await this.patchPod(pod.metadata!.name!, ops);
  }

  async deletePod(name: string): Promise<void> {
    await unlessNotFound(this.core.deleteNamespacedPod({ name, namespace: this.scope.namespace }));
  }

  /**
   * Deletes a Mount Pod no target uses any more (call under the volume's lock): its mount ends with it. A held Mount
   * Pod's preStop hands over unless its fd folder names it in FD_UNMOUNT_MARKER, so that is written first.
   */
  async deleteUnreferenced(pod: V1Pod): Promise<void> {
    this.askUnmountAtStop(pod);
    await this.deletePod(pod.metadata!.name!);
  }

  /**
   * Asks a held Mount Pod's preStop to unmount rather than hand over (FD_UNMOUNT_MARKER): its mount ends with it.
   * Never an unmount from here while the pod runs: its client would exit 0 and the kubelet, not yet told of the
   * deletion, would start it again, re-creating its `--subdir` (CI of the session-6 merge, csi-sanity).
   */
  askUnmountAtStop(pod: V1Pod): void {
    const fdDir = fdDirOf(pod);
    const uid = pod.metadata?.uid;
    if (!fdDir || !uid) return;
    try {
      writeFileSync(path.join(fdDir, FD_UNMOUNT_MARKER), uid, { mode: 0o600 });
    } catch (err) {
      // No folder: the kubelet made none either (no container started), so no preStop will look for it.
      this.scope.log.warn(
        { mountPod: pod.metadata?.name, fdDir, err: (err as Error).message },
        'could not ask the Mount Pod to unmount at stop',
      );
    }
  }

  /**
   * Adds a target's reference to the Mount Pod `pod` names, creating it from
   * `pod` when there is none; a Mount Pod on its way out is waited for first.
   */
  async addReference(pod: V1Pod, key: string, target: string): Promise<void> {
    const name = pod.metadata!.name!;
    const namespace = this.scope.namespace;
    for (let attempt = 0; attempt < 30; attempt++) {
      const existing = await unlessNotFound(this.core.readNamespacedPod({ name, namespace }));
      if (existing?.metadata?.deletionTimestamp) {
        // The previous Mount Pod is on its way out: wait, then make a new one.
        await sleep(500);
        continue;
      }
      if (!existing) {
        const body = structuredClone(pod);
        body.metadata!.annotations = { ...body.metadata!.annotations, [key]: target };
        try {
          await this.core.createNamespacedPod({ namespace, body });
          this.scope.log.info({ mountPod: name }, 'Mount Pod created');
          return;
        } catch (err) {
          if (isStatus(err, 409)) continue;
          throw err;
        }
      }
      const annotations = existing.metadata?.annotations;
      const pendingDelete = annotations?.[MOUNT_POD_ANN_DELETE_AT] !== undefined;
      if (annotations?.[key] === target && !pendingDelete) return;
      // A new reference within the delete delay keeps the Mount Pod.
      const ops = annotationPatch(existing, {
        set: { [key]: target },
        remove: pendingDelete ? [MOUNT_POD_ANN_DELETE_AT] : [],
        resourceVersion: existing.metadata!.resourceVersion,
      });
      try {
        await this.patchPod(name, ops);
        return;
      } catch (err) {
        if (!isStatus(err, 422, 409)) throw err;
      }
    }
    throw new CsiError(Code.ABORTED, `could not add a reference to Mount Pod ${name}`);
  }

  /**
   * Removes a target's reference (call under the volume's lock). The last one
   * stamps `juicefs-delete-at` when the pod has a delete delay, else deletes the
   * Mount Pod — after the reference is gone, so the deletion does not look like
   * a Mount Pod lost while in use.
   */
  async dropReference(pod: V1Pod, target: string, why: string): Promise<void> {
    const name = pod.metadata!.name!;
    const key = referenceKey(target);
    const remaining = referencesOf(pod).filter((t) => t !== target);
    const delayMs = parseDuration(pod.metadata?.annotations?.[MOUNT_POD_ANN_DELETE_DELAY] ?? '') ?? 0;
    const deleteAt = remaining.length === 0 && delayMs > 0 ? new Date(Date.now() + delayMs).toISOString() : undefined;
    // juicefs/mount-delete-delay: keep it a while for a pod that comes back; the sweep deletes it after.
    const ops = annotationPatch(pod, {
      remove: [key],
      set: deleteAt ? { [MOUNT_POD_ANN_DELETE_AT]: deleteAt } : {},
      expect: { [key]: target },
    });
    await this.patchPod(name, ops);
    this.scope.log.info({ mountPod: name, target, why, references: remaining.length }, 'reference dropped');
    if (deleteAt) {
      this.scope.log.info({ mountPod: name, deleteAt }, 'last reference gone: Mount Pod deletion delayed');
    } else if (remaining.length === 0) {
      await this.deleteUnreferenced(pod);
      this.scope.log.info({ mountPod: name }, 'last reference gone: Mount Pod deleted');
    }
  }
}
