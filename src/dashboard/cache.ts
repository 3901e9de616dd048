// The dashboard's informers: pods, PVCs, PVs, StorageClasses, Events, the global ConfigMap and JuiceFSUpgrades,
// one watch each for the whole process (never one per browser). Any change schedules one rebuild of the view,
// coalesced over a short delay, and tells the listeners.
import {
  CoreV1Api,
  CustomObjectsApi,
  StorageV1Api,
  type CoreV1Event,
  type KubeConfig,
  type KubernetesListObject,
  type V1ConfigMap,
  type V1PersistentVolume,
  type V1PersistentVolumeClaim,
  type V1Pod,
  type V1StorageClass,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { CONFIG_MAP_NAME } from '../contract/keys.js';
import { ResilientInformer } from '../k8s/informer.js';
import { UPGRADE_GROUP, UPGRADE_PLURAL, UPGRADE_VERSION, type JuiceFSUpgrade } from '../upgrade/types.js';
import { buildView, type DashView } from './view.js';

export interface DashboardCacheOptions {
  kubeConfig: KubeConfig;
  /** Namespace of the ConfigMap and the Mount Pods. */
  systemNamespace: string;
  log: Logger;
  /** Changes within this window make one rebuild (default 250 ms). */
  coalesceMs?: number;
}

export class DashboardCache {
  readonly pods: ResilientInformer<V1Pod>;
  readonly pvcs: ResilientInformer<V1PersistentVolumeClaim>;
  readonly pvs: ResilientInformer<V1PersistentVolume>;
  readonly classes: ResilientInformer<V1StorageClass>;
  readonly events: ResilientInformer<CoreV1Event>;
  readonly configMaps: ResilientInformer<V1ConfigMap>;
  readonly upgrades: ResilientInformer<JuiceFSUpgrade>;
  private current: DashView | undefined;
  private version = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<(version: number) => void>();

  constructor(private readonly opts: DashboardCacheOptions) {
    const kc = opts.kubeConfig;
    const core = kc.makeApiClient(CoreV1Api);
    const storage = kc.makeApiClient(StorageV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const base = { kubeConfig: kc, log: opts.log };
    const ns = opts.systemNamespace;
    const configField = `metadata.name=${CONFIG_MAP_NAME}`;
    this.pods = new ResilientInformer({ ...base, path: '/api/v1/pods', list: () => core.listPodForAllNamespaces() });
    this.pvcs = new ResilientInformer({
      ...base,
      path: '/api/v1/persistentvolumeclaims',
      list: () => core.listPersistentVolumeClaimForAllNamespaces(),
    });
    this.pvs = new ResilientInformer({
      ...base,
      path: '/api/v1/persistentvolumes',
      list: () => core.listPersistentVolume(),
    });
    this.classes = new ResilientInformer({
      ...base,
      path: '/apis/storage.k8s.io/v1/storageclasses',
      list: () => storage.listStorageClass(),
    });
    this.events = new ResilientInformer({
      ...base,
      path: '/api/v1/events',
      list: () => core.listEventForAllNamespaces(),
    });
    this.configMaps = new ResilientInformer({
      ...base,
      path: `/api/v1/namespaces/${ns}/configmaps`,
      fieldSelector: configField,
      list: () => core.listNamespacedConfigMap({ namespace: ns, fieldSelector: configField }),
    });
    this.upgrades = new ResilientInformer<JuiceFSUpgrade>({
      ...base,
      path: `/apis/${UPGRADE_GROUP}/${UPGRADE_VERSION}/${UPGRADE_PLURAL}`,
      list: async () =>
        (await custom.listClusterCustomObject({
          group: UPGRADE_GROUP,
          version: UPGRADE_VERSION,
          plural: UPGRADE_PLURAL,
        })) as KubernetesListObject<JuiceFSUpgrade>,
    });
    for (const inf of this.all())
      for (const verb of ['add', 'update', 'delete'] as const) inf.on(verb, () => this.changed());
  }

  private all(): ResilientInformer<never>[] {
    return [
      this.pods,
      this.pvcs,
      this.pvs,
      this.classes,
      this.events,
      this.configMaps,
      this.upgrades,
    ] as ResilientInformer<never>[];
  }

  /**
   * Starts every informer; resolves when the core kinds have listed. The upgrade informer is not waited for: without
   * the CRD installed it retries in the background and the view shows no upgrades meanwhile.
   */
  async start(): Promise<void> {
    void this.upgrades.start();
    await Promise.all(
      [this.pods, this.pvcs, this.pvs, this.classes, this.events, this.configMaps].map((i) => i.start()),
    );
    this.changed();
  }

  get synced(): boolean {
    return this.pods.synced && this.pvcs.synced && this.pvs.synced && this.classes.synced;
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    await Promise.all(this.all().map((i) => i.stop()));
  }

  /** The view of now, built at most once per change. */
  view(): { version: number; view: DashView } {
    this.current ??= buildView({
      pods: this.pods.list(),
      pvcs: this.pvcs.list(),
      pvs: this.pvs.list(),
      storageClasses: this.classes.list(),
      events: this.events.list(),
      configMap: this.configMaps.list()[0],
      upgrades: this.upgrades.list(),
    });
    return { version: this.version, view: this.current };
  }

  pod(namespace: string, name: string): V1Pod | undefined {
    return this.pods.get(name, namespace);
  }

  /** Called with the new version after each coalesced change; returns the unsubscribe function. */
  subscribe(fn: (version: number) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private changed(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.current = undefined;
      this.version++;
      for (const fn of this.listeners) {
        try {
          fn(this.version);
        } catch (err) {
          this.opts.log.warn({ err }, 'a view listener failed');
        }
      }
    }, this.opts.coalesceMs ?? 250);
  }
}
