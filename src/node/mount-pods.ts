// Mount Pod mode on one node: NodePublishVolume finds or creates the PV's
// Mount Pod (reused while its settings hash matches), records the target as a
// reference annotation, waits for the mount, and bind-mounts it into the
// target; NodeUnpublishVolume drops the reference and deletes the Mount Pod
// at zero references.
import {
  BatchV1Api,
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Operation } from 'fast-json-patch';
import { existsSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { ConfigError, parseGlobalConfig } from '../config/schema.js';
import { parseDuration } from '../contract/duration.js';
import {
  ATTR,
  CONFIG_MAP_KEY,
  CONFIG_MAP_NAME,
  MOUNT_POD_ANN_DELETE_AT,
  MOUNT_POD_ANN_DELETE_DELAY,
  MOUNT_POD_APP_VALUE,
  MOUNT_POD_LABEL_APP,
  MOUNT_POD_LABEL_VOLUME_ID,
} from '../contract/keys.js';
import { mountPodSecretName, secretCopyData, summariseSecret } from '../contract/secret-copy.js';
import { DenyError } from '../contract/deny.js';
import { Code, CsiError } from '../csi/server.js';
import { isStatus, unlessNotFound } from '../k8s/errors.js';
import { JUICEFS_FS_TYPE, mountAt, type MountEntry } from '../juicefs/mounts.js';
import { ResilientInformer } from '../k8s/informer.js';
import type { VolumeSource } from '../mount/volume.js';
import { KeyedLock } from '../util/keyed-lock.js';
import { claimOfVolume } from './claim.js';
import { planCleanCacheJob, wantsCacheCleanup } from './clean-cache.js';
import { kubeletPodUid, rebind, targetState, unmountTarget } from './bind.js';
import {
  annotationPatch,
  isPodReady,
  mountPointOf,
  planMountPod,
  referenceKey,
  referencesOf,
  volumeLabel,
} from './mount-pod-plan.js';

const STATFS_TIMEOUT_MS = 5000;

export interface Usage {
  total: bigint;
  available: bigint;
  used: bigint;
}

export interface VolumeStats {
  abnormal: boolean;
  message: string;
  bytes?: Usage;
  inodes?: Usage;
}

export interface MountPodManagerOptions {
  kubeConfig: KubeConfig;
  nodeName: string;
  /** Namespace of Mount Pods, their Secrets and the global ConfigMap. */
  namespace: string;
  defaultMountImage?: string;
  readyTimeoutMs?: number;
  log: Logger;
}

export interface PublishRequest {
  volumeId: string;
  targetPath: string;
  readOnly: boolean;
  volumeContext: Record<string, string>;
  mountFlags: string[];
  secrets: Record<string, string>;
}

export class MountPodManager {
  private readonly core: CoreV1Api;
  private readonly batch: BatchV1Api;
  // One publish/unpublish per volume at a time on this node: they share the volume's Mount Pod.
  private readonly lock = new KeyedLock();
  private readonly informer: ResilientInformer<V1Pod>;
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  private again = false;

  constructor(private readonly opts: MountPodManagerOptions) {
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.batch = opts.kubeConfig.makeApiClient(BatchV1Api);
    const labelSelector = `${MOUNT_POD_LABEL_APP}=${MOUNT_POD_APP_VALUE}`;
    const fieldSelector = `spec.nodeName=${opts.nodeName}`;
    this.informer = new ResilientInformer<V1Pod>({
      kubeConfig: opts.kubeConfig,
      path: `/api/v1/namespaces/${opts.namespace}/pods`,
      list: () => this.core.listNamespacedPod({ namespace: opts.namespace, labelSelector, fieldSelector }),
      labelSelector,
      fieldSelector,
      log: opts.log,
    });
  }

  private async globalConfig() {
    const cm = await unlessNotFound(
      this.core.readNamespacedConfigMap({ name: CONFIG_MAP_NAME, namespace: this.opts.namespace }),
    );
    return parseGlobalConfig(cm?.data?.[CONFIG_MAP_KEY]);
  }

  /** The Mount Pod's Secret in our namespace, named by volume and content, created when absent. */
  private async ensureSecret(
    volumeId: string,
    secrets: Record<string, string>,
  ): Promise<{ name: string; data: Record<string, string> }> {
    const source = Object.fromEntries(
      Object.entries(secrets).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')]),
    );
    const name = mountPodSecretName(volumeId, source);
    const data = secretCopyData(source);
    try {
      await this.core.createNamespacedSecret({
        namespace: this.opts.namespace,
        body: {
          metadata: { name, namespace: this.opts.namespace, labels: { [MOUNT_POD_LABEL_APP]: MOUNT_POD_APP_VALUE } },
          type: 'Opaque',
          data,
        },
      });
    } catch (err) {
      if (!isStatus(err, 409)) throw err; // same name, same content
    }
    return { name, data: source };
  }

  async publish(req: PublishRequest): Promise<void> {
    if (!req.secrets.metaurl)
      throw new CsiError(
        Code.INVALID_ARGUMENT,
        'secrets: key "metaurl" is missing (set nodePublishSecretRef on the PV)',
      );
    await this.lock.run(volumeLabel(req.volumeId), async () => {
      const secret = await this.ensureSecret(req.volumeId, req.secrets);
      const volume: VolumeSource = {
        pvName: req.volumeId,
        subdir: req.volumeContext[ATTR.subPath],
        readOnly: req.readOnly,
        attributes: req.volumeContext,
        mountOptions: req.mountFlags,
        secret: { name: secret.name, ...summariseSecret(secret.data) },
      };
      // The PVC of the PV's claimRef: mountPodPatch entries select Mount Pods by it, as they do sidecars.
      const claim = await claimOfVolume(this.core, req.volumeId);
      let plan;
      try {
        plan = planMountPod({
          nodeName: this.opts.nodeName,
          namespace: this.opts.namespace,
          volume,
          claim,
          options: { config: await this.globalConfig(), defaultMountImage: this.opts.defaultMountImage },
        });
      } catch (err) {
        // A malformed admin setting (PV attribute, option, Secret, ConfigMap) names its key; a programming error is not relabelled.
        if (err instanceof DenyError || err instanceof ConfigError)
          throw new CsiError(Code.INVALID_ARGUMENT, err.message);
        throw err;
      }
      const name = plan.pod.metadata!.name!;
      await this.addReference(plan.pod, referenceKey(req.targetPath), req.targetPath);
      const source = await this.waitReady(name, plan.mountPoint);
      // A repeated publish finds its bind in place; one left on a dead connection is replaced.
      if (targetState(source, mountAt(req.targetPath)) !== 'ok')
        await rebind(plan.mountPoint, req.targetPath, req.readOnly);
      this.opts.log.info({ volume: req.volumeId, target: req.targetPath, mountPod: name }, 'published');
    });
  }

  private async addReference(pod: V1Pod, key: string, target: string): Promise<void> {
    const name = pod.metadata!.name!;
    const namespace = this.opts.namespace;
    for (let attempt = 0; attempt < 30; attempt++) {
      const existing = await unlessNotFound(this.core.readNamespacedPod({ name, namespace }));
      if (existing?.metadata?.deletionTimestamp) {
        // The previous Mount Pod is on its way out: wait, then make a new one.
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      if (!existing) {
        const body = structuredClone(pod);
        body.metadata!.annotations = { ...body.metadata!.annotations, [key]: target };
        try {
          await this.core.createNamespacedPod({ namespace, body });
          this.opts.log.info({ mountPod: name }, 'Mount Pod created');
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

  /** Waits until the Mount Pod is Ready and its mount is up; returns that mount. */
  private async waitReady(name: string, mountPoint: string): Promise<MountEntry> {
    const deadline = Date.now() + (this.opts.readyTimeoutMs ?? 120_000);
    for (;;) {
      const pod = await this.core.readNamespacedPod({ name, namespace: this.opts.namespace }).catch(() => undefined);
      const mounted = mountAt(mountPoint);
      if (isPodReady(pod) && mounted?.fsType === JUICEFS_FS_TYPE) return mounted;
      if (Date.now() > deadline)
        throw new CsiError(Code.DEADLINE_EXCEEDED, `Mount Pod ${name} not ready (mount at ${mountPoint}) in time`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** The Mount Pods of this node. */
  private async podsOnNode(): Promise<V1Pod[]> {
    const list = await this.core.listNamespacedPod({
      namespace: this.opts.namespace,
      labelSelector: `${MOUNT_POD_LABEL_APP}=${MOUNT_POD_APP_VALUE}`,
      fieldSelector: `spec.nodeName=${this.opts.nodeName}`,
    });
    return list.items;
  }

  /** The Mount Pods of this node as the informer last saw them (for background passes; requests list through the API). */
  private cachedPodsOnNode(): V1Pod[] {
    return [...this.informer.list(this.opts.namespace)];
  }

  /** A JSON patch of a Mount Pod; guard it with a `test` op where a concurrent writer matters. */
  private async patchPod(name: string, ops: Operation[]): Promise<void> {
    await this.core.patchNamespacedPod(
      { name, namespace: this.opts.namespace, body: ops },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
  }

  private async deletePod(name: string): Promise<void> {
    await unlessNotFound(this.core.deleteNamespacedPod({ name, namespace: this.opts.namespace }));
  }

  /** Deletes Mount Pods of this node whose delete delay has run out with still no reference. */
  async sweep(now = Date.now()): Promise<void> {
    // Candidates from the informer's cache; each is read again under its volume's lock before anything is done.
    for (const pod of this.cachedPodsOnNode()) {
      const at = pod.metadata?.annotations?.[MOUNT_POD_ANN_DELETE_AT];
      if (!at || referencesOf(pod).length > 0 || Date.parse(at) > now) continue;
      await this.lock.run(lockKeyOf(pod), async () => {
        // Looked at again under the volume's lock: a publish may have just taken it back.
        const fresh = await unlessNotFound(
          this.core.readNamespacedPod({ name: pod.metadata!.name!, namespace: this.opts.namespace }),
        );
        if (fresh?.metadata?.annotations?.[MOUNT_POD_ANN_DELETE_AT] !== at || referencesOf(fresh).length > 0) return;
        await this.deletePod(pod.metadata!.name!);
        this.opts.log.info({ mountPod: pod.metadata!.name }, 'delete delay over: Mount Pod deleted');
      });
    }
  }

  /** Unmounts the target, drops its reference, and deletes Mount Pods left with none. */
  async unpublish(volumeId: string, target: string): Promise<void> {
    // Under the volume's lock, so the background check never sees the reference without its bind and re-binds it.
    await this.lock.run(volumeLabel(volumeId), async () => {
      await unmountTarget(target);
      const key = referenceKey(target);
      for (const pod of await this.podsOnNode()) {
        if (pod.metadata?.annotations?.[key] === target) await this.dropReference(pod, target, 'unpublished');
      }
    });
  }

  /**
   * Removes a target's reference (call under the volume's lock). The last one
   * stamps `juicefs-delete-at` when the pod has a delete delay, else deletes the
   * Mount Pod — after the reference is gone, so the deletion does not look like
   * a Mount Pod lost while in use.
   */
  private async dropReference(pod: V1Pod, target: string, why: string): Promise<void> {
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
    this.opts.log.info({ mountPod: name, target, why, references: remaining.length }, 'reference dropped');
    if (deleteAt) {
      this.opts.log.info({ mountPod: name, deleteAt }, 'last reference gone: Mount Pod deletion delayed');
    } else if (remaining.length === 0) {
      await this.deletePod(name);
      this.opts.log.info({ mountPod: name }, 'last reference gone: Mount Pod deleted');
    }
  }

  /**
   * Usage and condition of a published target, for NodeGetVolumeStats. A
   * target that is not published here, or not for this volume, is NOT_FOUND;
   * one left on a dead connection is reported abnormal without touching it.
   */
  async volumeStats(volumeId: string, target: string): Promise<VolumeStats> {
    const bound = mountAt(target);
    const pod = bound
      ? (await this.podsOnNode()).find((p) => p.metadata?.annotations?.[referenceKey(target)] === target)
      : undefined;
    if (!bound || !pod || pod.metadata?.labels?.[MOUNT_POD_LABEL_VOLUME_ID] !== volumeLabel(volumeId)) {
      throw new CsiError(Code.NOT_FOUND, `volume ${volumeId} is not published at ${target}`);
    }
    const mountPoint = mountPointOf(pod);
    const source = mountPoint ? mountAt(mountPoint) : undefined;
    if (source?.fsType !== JUICEFS_FS_TYPE || targetState(source, bound) !== 'ok') {
      return {
        abnormal: true,
        message: `Mount Pod ${pod.metadata!.name} is not serving this target (client restarting or target stale); it is re-bound once the client is back`,
      };
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('statfs timed out')), STATFS_TIMEOUT_MS);
    });
    try {
      const st = await Promise.race([statfs(target, { bigint: true }), timeout]);
      return {
        abnormal: false,
        message: 'mounted',
        bytes: {
          total: st.blocks * st.bsize,
          available: st.bavail * st.bsize,
          used: (st.blocks - st.bfree) * st.bsize,
        },
        inodes: { total: st.files, available: st.ffree, used: st.files - st.ffree },
      };
    } catch (err) {
      return { abnormal: true, message: `statfs ${target}: ${(err as Error).message}` };
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The background check, under each volume's lock:
   * - a reference whose pod is gone (kubelet path naming a pod no longer on
   *   this node, or a target folder that no longer exists) is dropped and its
   *   target unmounted;
   * - a referenced target not bound to the Mount Pod's current mount (the
   *   client restarted, or the Mount Pod was re-created) is re-bound once the
   *   Mount Pod is Ready again.
   */
  async check(): Promise<void> {
    // Candidates from the informer's cache; each is read again under its volume's lock before anything is done.
    const mountPods = this.cachedPodsOnNode().filter(
      (p) => !p.metadata?.deletionTimestamp && referencesOf(p).length > 0,
    );
    if (mountPods.length === 0) return;
    // Listed after the Mount Pods (and only when a kubelet target needs it): a reference there was added for a pod this list shows.
    const needsPods = mountPods.some((p) => referencesOf(p).some((target) => kubeletPodUid(target)));
    const appPods = needsPods
      ? (await this.core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${this.opts.nodeName}` })).items
      : [];
    const liveUids = new Set(appPods.map((p) => p.metadata?.uid));
    for (const listed of mountPods) {
      await this.lock.run(lockKeyOf(listed), async () => {
        let pod = await unlessNotFound(
          this.core.readNamespacedPod({ name: listed.metadata!.name!, namespace: this.opts.namespace }),
        );
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
            await this.dropReference(pod, target, 'pod gone');
            pod = await unlessNotFound(
              this.core.readNamespacedPod({ name: pod.metadata!.name!, namespace: this.opts.namespace }),
            );
            if (!pod) return;
            continue;
          }
          if (!serving || targetState(serving, bound) === 'ok') continue;
          await rebind(mountPoint!, target, bound?.readOnly ?? false);
          this.opts.log.info(
            { mountPod: pod.metadata!.name, target, was: bound ? 'stale' : 'unmounted' },
            "target re-bound to the Mount Pod's mount",
          );
        }
      });
    }
  }

  /**
   * A Mount Pod deleted while targets still use it (evicted, deleted by hand,
   * its node drained) is created again with the references whose targets are
   * still mounted; check() re-binds them once it is Ready.
   */
  private async recreate(deleted: V1Pod): Promise<void> {
    const name = deleted.metadata!.name!;
    await this.lock.run(lockKeyOf(deleted), async () => {
      const targets = referencesOf(deleted).filter((t) => mountAt(t));
      if (targets.length === 0) return;
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
      for (const target of targets) await this.addReference(body, referenceKey(target), target);
      this.opts.log.warn(
        { mountPod: name, references: targets.length },
        'Mount Pod deleted while in use: created again',
      );
    });
  }

  /** juicefs/clean-cache: a Job on this node removes the cache of a Mount Pod that is gone for good. */
  private async cleanCache(pod: V1Pod): Promise<void> {
    const job = planCleanCacheJob(pod);
    if (!job) return;
    // A Mount Pod of the same volume here (a publish came back meanwhile) uses that cache now: leave it.
    const volume = pod.metadata?.labels?.[MOUNT_POD_LABEL_VOLUME_ID];
    if (
      this.informer.list(this.opts.namespace).some((p) => p.metadata?.labels?.[MOUNT_POD_LABEL_VOLUME_ID] === volume)
    ) {
      this.opts.log.info(
        { mountPod: pod.metadata?.name },
        'cache kept: another Mount Pod of the volume runs on this node',
      );
      return;
    }
    try {
      await this.batch.createNamespacedJob({ namespace: this.opts.namespace, body: job });
      this.opts.log.info(
        { mountPod: pod.metadata?.name, job: job.metadata?.name },
        'Mount Pod gone: cache-cleanup Job created',
      );
    } catch (err) {
      if (!isStatus(err, 409)) throw err; // already created for this Mount Pod
    }
  }

  /** Watches this node's Mount Pods (re-creation, re-binding on Ready) and runs the sweep and the check periodically. */
  async start(intervalMs = 5000): Promise<void> {
    this.informer.on('delete', (pod) => {
      if (referencesOf(pod).length > 0) {
        void this.recreate(pod).catch((err) =>
          this.opts.log.error(
            { mountPod: pod.metadata?.name, err: (err as Error).message },
            'could not re-create the Mount Pod',
          ),
        );
      } else if (wantsCacheCleanup(pod)) {
        void this.cleanCache(pod).catch((err) =>
          this.opts.log.error(
            { mountPod: pod.metadata?.name, err: (err as Error).message },
            'could not create the cache-cleanup Job',
          ),
        );
      }
    });
    this.informer.on('update', (pod) => {
      if (isPodReady(pod) && referencesOf(pod).length > 0) this.kick();
    });
    await this.informer.start();
    this.timer = setInterval(() => this.kick(), intervalMs);
    this.timer.unref();
  }

  /** Runs the sweep and the check now, or right after the running pass. */
  private kick(): void {
    if (this.pass) {
      this.again = true;
      return;
    }
    this.pass = (async () => {
      do {
        this.again = false;
        await this.sweep().catch((err) => this.opts.log.warn({ err: (err as Error).message }, 'sweep failed'));
        await this.check().catch((err) => this.opts.log.warn({ err: (err as Error).message }, 'check failed'));
      } while (this.again);
    })().finally(() => (this.pass = undefined));
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.informer.stop();
    await this.pass;
  }
}

function lockKeyOf(pod: V1Pod): string {
  return pod.metadata?.labels?.[MOUNT_POD_LABEL_VOLUME_ID] ?? pod.metadata!.name!;
}
