// The node's background passes over its Mount Pods, each under the volume's
// lock: the delete-delay sweep, the check (drop references of pods that are
// gone, re-bind targets left on a dead connection), and re-creating a Mount Pod
// deleted while targets still use it. Candidates come from the informer's
// cache; each is read again under its volume's lock before anything is done.
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import { existsSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { MOUNT_POD_ANN_DELETE_AT, MOUNT_POD_ANN_FD_HELD } from '../contract/keys.js';
import { JUICEFS_FS_TYPE, mountAt } from '../juicefs/mounts.js';
import type { KeyedLock } from '../util/keyed-lock.js';
import { kubeletPodUid, rebind, targetState, unmountAll, unmountTarget } from './bind.js';
import type { MountPodFdHolders } from './mount-pod-fd-holders.js';
import type { NodeRepairCounters } from './node-metrics.js';
import { fdDirOf, isPodReady, mountPointOf, referenceKey, referencesOf } from './mount-pod-plan.js';
import { lockKeyOf, type MountPodReferences, type MountPodScope } from './mount-pod-references.js';

export class MountPodRepair {
  constructor(
    private readonly core: CoreV1Api,
    private readonly references: MountPodReferences,
    /** The node's per-volume lock, shared with publish and unpublish. */
    private readonly lock: KeyedLock,
    /** This node's Mount Pods as the informer last saw them. */
    private readonly cachedPodsOnNode: () => V1Pod[],
    private readonly holders: MountPodFdHolders,
    private readonly opts: MountPodScope,
    private readonly counters: NodeRepairCounters = {},
  ) {}

  /** Deletes Mount Pods of this node whose delete delay has run out with still no reference. */
  async sweep(now = Date.now()): Promise<void> {
    // Candidates from the informer's cache; each is read again under its volume's lock before anything is done.
    for (const pod of this.cachedPodsOnNode()) {
      const at = pod.metadata?.annotations?.[MOUNT_POD_ANN_DELETE_AT];
      if (!at || referencesOf(pod).length > 0 || Date.parse(at) > now) continue;
      await this.lock.run(lockKeyOf(pod), async () => {
        // Looked at again under the volume's lock: a publish may have just taken it back.
        const fresh = await this.references.read(pod.metadata!.name!);
        if (fresh?.metadata?.annotations?.[MOUNT_POD_ANN_DELETE_AT] !== at || referencesOf(fresh).length > 0) return;
        await this.references.deleteUnreferenced(fresh);
        this.opts.log.info({ mountPod: pod.metadata!.name }, 'delete delay over: Mount Pod deleted');
      });
    }
  }

  /**
   * The background check, under each volume's lock:
   * - a reference whose pod is gone (kubelet path naming a pod no longer on
   *   this node, or a target folder that no longer exists) is dropped and its
   *   target unmounted;
   * - a referenced target not bound to the Mount Pod's current mount is
   *   re-bound once the Mount Pod is Ready again: the Mount Pod was re-created,
   *   or its client restarted without taking the held FUSE fd over (a client
   *   < 1.2.1, `juicefs/fd-holder: "false"`, the node service down at the
   *   crash). A client that took it over serves the same connection, so its
   *   targets are left as they are.
   */
  async check(): Promise<void> {
    // Candidates from the informer's cache; each is read again under its volume's lock before anything is done.
    const mountPods = this.cachedPodsOnNode().filter(
      (p) => !p.metadata?.deletionTimestamp && referencesOf(p).length > 0,
    );
    if (mountPods.length === 0) return;
    // Listed after the Mount Pods (and only when a kubelet target needs it):
    // a reference there was added for a pod this list shows.
    const needsPods = mountPods.some((p) => referencesOf(p).some((target) => kubeletPodUid(target)));
    const appPods = needsPods
      ? (await this.core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${this.opts.nodeName}` })).items
      : [];
    const liveUids = new Set(appPods.map((p) => p.metadata?.uid));
    for (const listed of mountPods) {
      await this.lock.run(lockKeyOf(listed), async () => {
        let pod = await this.references.read(listed.metadata!.name!);
        if (!pod || pod.metadata?.deletionTimestamp) return;
        const mountPoint = mountPointOf(pod);
        const source = mountPoint ? mountAt(mountPoint) : undefined;
        const serving = isPodReady(pod) && source?.fsType === JUICEFS_FS_TYPE ? source : undefined;
        for (const target of referencesOf(pod)) {
          const bound = mountAt(target);
          const uid = kubeletPodUid(target);
          // Safe to stat the parent: targets are mount points, their folders are not.
          const gone = uid ? !liveUids.has(uid) : !bound && !existsSync(path.dirname(target));
          if (gone) {
            await unmountTarget(target);
            await this.references.dropReference(pod, target, 'pod gone');
            pod = await this.references.read(pod.metadata!.name!);
            if (!pod) return;
            continue;
          }
          if (!serving || targetState(serving, bound) === 'ok') continue;
          await rebind(mountPoint!, target, bound?.readOnly ?? false);
          this.counters.rebinds?.inc({ was: bound ? 'stale' : 'unmounted' });
          const fdDir = fdDirOf(pod);
          this.opts.log.info(
            {
              mountPod: pod.metadata!.name,
              target,
              was: bound ? 'stale' : 'unmounted',
              // Whether its client handed a FUSE fd over: one that does is replaced on the same connection.
              fdHeld: fdDir ? await this.holders.holds(fdDir) : false,
            },
            "target re-bound to the Mount Pod's mount",
          );
        }
      });
    }
  }

  /**
   * Each live Mount Pod of this node says whether its client's FUSE fd is held (MOUNT_POD_ANN_FD_HELD), from the
   * informer's cache: one patch when that changes, none otherwise. The controller's recreate upgrade waits for it.
   */
  async recordFdHolding(): Promise<void> {
    for (const pod of this.cachedPodsOnNode()) {
      const fdDir = fdDirOf(pod);
      if (!fdDir || pod.metadata?.deletionTimestamp) continue;
      const held = await this.holders.holds(fdDir);
      if ((pod.metadata?.annotations?.[MOUNT_POD_ANN_FD_HELD] === 'true') === held) continue;
      await this.references
        .recordFdHeld(pod, held)
        .catch((err: unknown) =>
          this.opts.log.warn({ mountPod: pod.metadata?.name, err: (err as Error).message }, 'could not record the fd'),
        );
    }
  }

  /**
   * A Mount Pod is going (deletionTimestamp set). With no reference left (the last unpublish, the delete delay's
   * sweep, a deletion by hand of an unused one) its preStop is asked to unmount (most deletions asked before they
   * were made; this covers the others); the held fd and the folder go once the pod is gone (forget). With references
   * (deleted while in use) nothing is touched: the fd and the mount stay for the Mount Pod that re-creation makes in
   * the same folder, and its preStop hands over.
   */
  async going(pod: V1Pod): Promise<void> {
    const fdDir = fdDirOf(pod);
    if (!fdDir || referencesOf(pod).length > 0) return;
    await this.lock.run(lockKeyOf(pod), async () => {
      const now = await this.references.read(pod.metadata!.name!);
      // A publish may have taken it back (its reference is on a pod that is not going) or made a new one.
      if (now && (!now.metadata?.deletionTimestamp || now.metadata.uid !== pod.metadata?.uid)) return;
      if (now && referencesOf(now).length > 0) return;
      this.references.askUnmountAtStop(pod);
    });
  }

  /** The held fd closed and the mount point unmounted (lazily: a client still flushing needs no mount). */
  private async endMount(pod: V1Pod, fdDir: string): Promise<void> {
    await this.holders.release(fdDir);
    const mountPoint = mountPointOf(pod);
    if (mountPoint && mountAt(mountPoint)) {
      await unmountAll(mountPoint);
      this.opts.log.info({ mountPod: pod.metadata?.name, mountPoint }, 'Mount Pod mount point unmounted');
    }
  }

  /** A Mount Pod gone for good (no reference left): its fd holder stops and its folder goes. */
  async forget(deleted: V1Pod): Promise<void> {
    await this.lock.run(lockKeyOf(deleted), () => this.removeHolder(deleted));
  }

  /** Under the volume's lock. A publish may have made a Mount Pod in the same folder meanwhile: then it stays. */
  private async removeHolder(deleted: V1Pod): Promise<void> {
    const fdDir = fdDirOf(deleted);
    if (!fdDir) return;
    const now = await this.references.read(deleted.metadata!.name!);
    if (now && fdDirOf(now) === fdDir) return;
    await this.endMount(deleted, fdDir);
    await this.holders.remove(fdDir);
    // Unmounted by now: its folder is empty and no Mount Pod will use it (a new one makes it again).
    const mountPoint = mountPointOf(deleted);
    if (mountPoint && !mountAt(mountPoint))
      try {
        rmdirSync(mountPoint);
      } catch {
        // gone already, or not empty (then not ours to remove)
      }
  }

  /**
   * A Mount Pod deleted while targets still use it (evicted, deleted by hand,
   * its node drained) is created again with the references whose targets are
   * still mounted; check() re-binds them once it is Ready.
   */
  async recreate(deleted: V1Pod): Promise<void> {
    const name = deleted.metadata!.name!;
    await this.lock.run(lockKeyOf(deleted), async () => {
      const targets = referencesOf(deleted).filter((t) => mountAt(t));
      const fdDir = fdDirOf(deleted);
      const mountPoint = mountPointOf(deleted);
      if (targets.length === 0) return this.removeHolder(deleted);
      // Its preStop handed over (ADR 0019): the new client takes the held fd and the saved handles, so the targets
      // stay on the same connection. A fd that is dead by now (an older preStop unmounted) is dropped by the holder.
      if (fdDir && mountPoint) await this.holders.ensure(fdDir, mountPoint);
      const body: V1Pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name,
          namespace: this.opts.namespace,
          labels: deleted.metadata?.labels,
          annotations: Object.fromEntries(
            Object.entries(deleted.metadata?.annotations ?? {}).filter(([k]) => k !== MOUNT_POD_ANN_DELETE_AT),
          ),
        },
        spec: deleted.spec,
      };
      // Joins a Mount Pod a publish may have created meanwhile.
      for (const target of targets) await this.references.addReference(body, referenceKey(target), target);
      this.opts.log.warn(
        { mountPod: name, references: targets.length },
        'Mount Pod deleted while in use: created again',
      );
    });
  }
}
