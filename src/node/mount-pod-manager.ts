// Mount Pod mode on one node, composed: publish/unpublish (mount-pod-publish),
// the reference protocol and API writes (mount-pod-references), the background
// passes (mount-pod-repair), volume stats (volume-stats) and cache cleanup
// (cache-cleanup). The plan of a Mount Pod, pure, is mount-pod.ts. This class
// owns the shared pieces — API clients, the informer of this node's Mount
// Pods, the per-volume lock — and runs the background passes.
import { BatchV1Api, CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { MOUNT_POD_APP_VALUE, MOUNT_POD_LABEL_APP } from '../contract/keys.js';
import { ResilientInformer } from '../k8s/informer.js';
import { KeyedLock } from '../util/keyed-lock.js';
import { createCleanCacheJob } from './cache-cleanup.js';
import { wantsCacheCleanup } from './clean-cache.js';
import { isPodReady, referencesOf } from './mount-pod-plan.js';
import { VolumePublisher, type PublisherOptions, type PublishRequest } from './mount-pod-publish.js';
import { MountPodFdHolders } from './mount-pod-fd-holders.js';
import { MountPodReferences } from './mount-pod-references.js';
import { MountPodRepair } from './mount-pod-repair.js';
import { registerNodeMetrics } from './node-metrics.js';
import type { CsiMetrics } from '../csi/metrics.js';
import { volumeStats, type VolumeStats } from './volume-stats.js';

export interface MountPodManagerOptions extends PublisherOptions {
  kubeConfig: KubeConfig;
  /** The process's metrics: this node's Mount Pods, references, held fds, target health, repairs. */
  metrics?: CsiMetrics;
}

export class MountPodManager {
  private readonly batch: BatchV1Api;
  private readonly informer: ResilientInformer<V1Pod>;
  private readonly references: MountPodReferences;
  private readonly publisher: VolumePublisher;
  private readonly repair: MountPodRepair;
  private readonly holders: MountPodFdHolders;
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  private again = false;

  constructor(private readonly opts: MountPodManagerOptions) {
    const core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.batch = opts.kubeConfig.makeApiClient(BatchV1Api);
    // One publish/unpublish per volume at a time on this node: they share the volume's Mount Pod.
    const lock = new KeyedLock();
    const labelSelector = `${MOUNT_POD_LABEL_APP}=${MOUNT_POD_APP_VALUE}`;
    const fieldSelector = `spec.nodeName=${opts.nodeName}`;
    this.informer = new ResilientInformer<V1Pod>({
      kubeConfig: opts.kubeConfig,
      path: `/api/v1/namespaces/${opts.namespace}/pods`,
      list: () => core.listNamespacedPod({ namespace: opts.namespace, labelSelector, fieldSelector }),
      labelSelector,
      fieldSelector,
      log: opts.log,
    });
    this.references = new MountPodReferences(core, opts);
    const counters = opts.metrics
      ? registerNodeMetrics(
          opts.metrics,
          () => this.cachedPodsOnNode(),
          () => this.holders.heldCount(),
        )
      : {};
    this.holders = new MountPodFdHolders(opts.log, undefined, counters);
    this.publisher = new VolumePublisher(core, this.references, lock, this.holders, opts);
    // Background passes pick candidates from the informer's cache; requests list through the API.
    this.repair = new MountPodRepair(
      core,
      this.references,
      lock,
      () => this.cachedPodsOnNode(),
      this.holders,
      opts,
      counters,
    );
  }

  /** The global ConfigMap as the last publish read it (the node's /readyz detail). */
  get configStatus() {
    return this.publisher.configStatus;
  }

  /** The Mount Pods of this node as the informer last saw them. */
  private cachedPodsOnNode(): V1Pod[] {
    return [...this.informer.list(this.opts.namespace)];
  }

  publish(req: PublishRequest): Promise<void> {
    return this.publisher.publish(req);
  }

  unpublish(volumeId: string, target: string): Promise<void> {
    return this.publisher.unpublish(volumeId, target);
  }

  volumeStats(volumeId: string, target: string): Promise<VolumeStats> {
    return volumeStats(this.references, volumeId, target);
  }

  sweep(now = Date.now()): Promise<void> {
    return this.repair.sweep(now);
  }

  check(): Promise<void> {
    return this.repair.check();
  }

  /**
   * Watches this node's Mount Pods (re-creation, re-binding on Ready, their fd holders); takes the FUSE fds of the
   * running ones back (after a restart); runs the sweep and the check periodically.
   */
  async start(intervalMs = 5000): Promise<void> {
    const failed = (pod: V1Pod, what: string) => (err: unknown) =>
      this.opts.log.error({ mountPod: pod.metadata?.name, err: (err as Error).message }, what);
    this.informer.on('delete', (pod) => {
      if (referencesOf(pod).length > 0) {
        void this.repair.recreate(pod).catch(failed(pod, 'could not re-create the Mount Pod'));
        return;
      }
      void this.repair.forget(pod).catch(failed(pod, 'could not remove the fd holder'));
      if (wantsCacheCleanup(pod))
        void createCleanCacheJob(this.batch, this.opts, this.informer.list(this.opts.namespace), pod).catch(
          failed(pod, 'could not create the cache-cleanup Job'),
        );
    });
    this.informer.on('update', (pod) => {
      if (pod.metadata?.deletionTimestamp)
        void this.repair.going(pod).catch(failed(pod, 'could not ask the Mount Pod to unmount at stop'));
      else if (isPodReady(pod) && referencesOf(pod).length > 0) this.kick();
    });
    await this.informer.start();
    // Before any publish is served: the holders of this process's predecessor are gone with it.
    await this.holders.recover(this.cachedPodsOnNode());
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
        // A held fd whose connection is no longer mounted is closed, so no later client takes it over; one a
        // replacing client never asks for is closed too (it cannot take it); a client that never handed its fd over
        // has it pulled.
        await this.holders
          .releaseUntaken(this.cachedPodsOnNode())
          .catch((err) => this.opts.log.warn({ err: (err as Error).message }, 'fd takeover check failed'));
        await this.holders.dropDeadAndPullMissing();
        await this.repair.recordFdHolding();
      } while (this.again);
    })().finally(() => (this.pass = undefined));
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.informer.stop();
    await this.pass;
    await this.holders.close();
  }
}
