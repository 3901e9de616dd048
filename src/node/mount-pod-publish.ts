// NodePublishVolume and NodeUnpublishVolume in Mount Pod mode. Publish finds
// or creates the PV's Mount Pod (reused while its settings hash matches),
// records the target as a reference, waits for the mount, and bind-mounts it
// into the target; unpublish unmounts the target and drops its reference. Both
// run under the volume's lock: they share the volume's Mount Pod.
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, parseGlobalConfig, type ConfigDefaults, type GlobalConfig } from '../config/schema.js';
import type { NodeIdentity } from '../config/selector.js';
import { ConfigReport, type ConfigStatus } from '../k8s/config-report.js';
import {
  ATTR,
  CONFIG_MAP_KEY,
  CONFIG_MAP_NAME,
  MOUNT_POD_APP_VALUE,
  MOUNT_POD_LABEL_APP,
  MOUNT_POD_LABEL_HASH,
  MOUNT_POD_LABEL_VOLUME_ID,
} from '../contract/keys.js';
import { DenyError } from '../contract/deny.js';
import { mountPodSecretName, secretCopyData, summariseSecret } from '../contract/secret-copy.js';
import { Code, CsiError } from '../csi/server.js';
import { isStatus, unlessNotFound } from '../k8s/errors.js';
import { JUICEFS_FS_TYPE, mountAt, type MountEntry } from '../juicefs/mounts.js';
import type { VolumeSource } from '../mount/volume.js';
import type { KeyedLock } from '../util/keyed-lock.js';
import { rebind, targetState, unmountTarget } from './bind.js';
import { claimOfVolume } from './claim.js';
import type { MountPodFdHolders } from './mount-pod-fd-holders.js';
import { classifyMountPodChange } from '../upgrade/settings-change.js';
import type { MountPodInheritance } from './mount-pod-inherit.js';
import { isPodReady, planMountPod, referenceKey, referencesOf, volumeLabel } from './mount-pod-plan.js';
import type { MountPodReferences, MountPodScope } from './mount-pod-references.js';

export interface PublisherOptions extends MountPodScope {
  defaultMountImage?: string;
  /** What Mount Pods inherit from the node service's own pod (./node-pod-reader.ts); none when absent. */
  inheritance?: () => Promise<MountPodInheritance>;
  readyTimeoutMs?: number;
  /** What the node service's env sets where the ConfigMap says nothing (ENABLE_NODE_SELECTOR=1). */
  configDefaults?: ConfigDefaults;
}

export interface PublishRequest {
  volumeId: string;
  targetPath: string;
  readOnly: boolean;
  volumeContext: Record<string, string>;
  mountFlags: string[];
  secrets: Record<string, string>;
}

export class VolumePublisher {
  private lastGood: GlobalConfig;
  private readonly report: ConfigReport;

  constructor(
    private readonly core: CoreV1Api,
    private readonly references: MountPodReferences,
    /** The node's per-volume lock, shared with the background passes. */
    private readonly lock: KeyedLock,
    private readonly holders: MountPodFdHolders,
    private readonly opts: PublisherOptions,
  ) {
    this.lastGood = parseGlobalConfig(undefined, opts.configDefaults);
    this.report = new ConfigReport({
      core,
      namespace: opts.namespace,
      component: `jfs-sidecar-node/${opts.nodeName}`,
      log: opts.log,
    });
  }

  /** The ConfigMap as last read: its version, what of it is not applied, why a newer one was refused (/readyz). */
  get configStatus(): ConfigStatus {
    return this.report.current;
  }

  /** Read at each publish; a bad entry is dropped alone, a malformed document leaves the last good one in force. */
  private async globalConfig(): Promise<GlobalConfig> {
    const cm = await unlessNotFound(
      this.core.readNamespacedConfigMap({ name: CONFIG_MAP_NAME, namespace: this.opts.namespace }),
    );
    try {
      this.lastGood = parseGlobalConfig(cm?.data?.[CONFIG_MAP_KEY], this.opts.configDefaults);
      this.report.loaded(cm, this.lastGood);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      this.report.refused(cm, err.message);
    }
    return this.lastGood;
  }

  /** This node's labels (mountPodPatch nodeSelector); undefined when the Node cannot be read (no entry matches). */
  private async nodeIdentity(): Promise<NodeIdentity | undefined> {
    try {
      const node = await this.core.readNode({ name: this.opts.nodeName });
      return { labels: node.metadata?.labels ?? {} };
    } catch (err) {
      this.opts.log.warn(
        { err: (err as Error).message },
        'Node not read: mountPodPatch entries with a nodeSelector do not apply',
      );
      return undefined;
    }
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
      const config = await this.globalConfig();
      let plan;
      try {
        plan = planMountPod({
          nodeName: this.opts.nodeName,
          namespace: this.opts.namespace,
          volume,
          claim,
          options: { config, defaultMountImage: this.opts.defaultMountImage },
          // The Node's labels, read only when an entry selects by them.
          node: config.mountPodPatch.some((p) => p.nodeSelector) ? await this.nodeIdentity() : undefined,
          inherit: await this.opts.inheritance?.(),
        });
      } catch (err) {
        // A malformed admin setting (PV attribute, option, Secret, ConfigMap) names its key;
        // a programming error is not relabelled.
        if (err instanceof DenyError || err instanceof ConfigError)
          throw new CsiError(Code.INVALID_ARGUMENT, err.message);
        throw err;
      }
      const name = plan.pod.metadata!.name!;
      await this.noteSettingsChange(req.volumeId, plan.hash, plan.pod);
      // Listening before the Mount Pod exists: its client hands the FUSE fd over as soon as it has mounted.
      if (plan.fdDir) await this.holders.ensure(plan.fdDir, plan.mountPoint);
      await this.references.addReference(plan.pod, referenceKey(req.targetPath), req.targetPath);
      const source = await this.waitReady(name, plan.mountPoint);
      // A repeated publish finds its bind in place; one left on a dead connection is replaced.
      if (targetState(source, mountAt(req.targetPath)) !== 'ok')
        await rebind(plan.mountPoint, req.targetPath, req.readOnly);
      this.opts.log.info({ volume: req.volumeId, target: req.targetPath, mountPod: name }, 'published');
    });
  }

  /**
   * The volume's settings changed while a Mount Pod of the old ones serves targets here: this publish gets a Mount Pod
   * of its own (another hash), the running one is left as it is. Whether the running one could take the change
   * without a new mount, and why not, is logged (issue 13 item 5): an image change is rolled out by a JuiceFSUpgrade
   * (mount-pod-binary or mount-pod-recreate), never applied behind the user's back.
   */
  private async noteSettingsChange(volumeId: string, hash: string, planned: V1Pod): Promise<void> {
    const running = (await this.references.podsOnNode()).filter(
      (p) =>
        p.metadata?.labels?.[MOUNT_POD_LABEL_VOLUME_ID] === volumeLabel(volumeId) &&
        p.metadata?.labels?.[MOUNT_POD_LABEL_HASH] !== hash &&
        !p.metadata?.deletionTimestamp &&
        referencesOf(p).length > 0,
    );
    for (const pod of running) {
      const change = classifyMountPodChange(pod.spec!.containers[0], planned.spec!.containers[0]);
      this.opts.log.warn(
        {
          volume: volumeId,
          mountPod: pod.metadata?.name,
          image: change.image,
          smooth: change.smooth,
          ...(change.smooth ? {} : { reasons: change.reasons }),
        },
        change.smooth
          ? 'volume settings changed (image only): the running Mount Pod keeps its client until a JuiceFSUpgrade rolls it out'
          : 'volume settings changed: the running Mount Pod cannot take them without a new mount',
      );
    }
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
      await sleep(200);
    }
  }

  /** Unmounts the target, drops its reference, and deletes Mount Pods left with none. */
  async unpublish(volumeId: string, target: string): Promise<void> {
    // Under the volume's lock, so the background check never sees the reference without its bind and re-binds it.
    await this.lock.run(volumeLabel(volumeId), async () => {
      await unmountTarget(target);
      const key = referenceKey(target);
      for (const pod of await this.references.podsOnNode()) {
        if (pod.metadata?.annotations?.[key] === target)
          await this.references.dropReference(pod, target, 'unpublished');
      }
    });
  }
}
