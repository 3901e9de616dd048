// The webhook's view of the cluster: informer caches of PVCs, PVs,
// StorageClasses, the Secrets of the namespaces it is allowed to read, and the
// global ConfigMap (hot-reloaded). No API call on the admission path.
import {
  CoreV1Api,
  StorageV1Api,
  type KubeConfig,
  type KubernetesObject,
  type V1ConfigMap,
  type V1PersistentVolume,
  type V1PersistentVolumeClaim,
  type V1Secret,
  type V1StorageClass,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { ConfigError, DEFAULT_GLOBAL_CONFIG, parseGlobalConfig, type GlobalConfig } from '../config/schema.js';
import { CONFIG_MAP_KEY, CONFIG_MAP_NAME } from '../contract/keys.js';
import type { ClusterView } from '../resolve/resolve.js';
import { ResilientInformer } from './informer.js';

export interface ClusterCacheOptions {
  kubeConfig: KubeConfig;
  /** Namespaces whose Secrets the webhook may read (where the admin keeps JuiceFS Secrets). */
  secretNamespaces: string[];
  /** Namespace of the juicefs-csi-driver-config ConfigMap. */
  configNamespace: string;
  log: Logger;
}

export class ClusterCache implements ClusterView {
  private readonly pvcs: ResilientInformer<V1PersistentVolumeClaim>;
  private readonly pvs: ResilientInformer<V1PersistentVolume>;
  private readonly classes: ResilientInformer<V1StorageClass>;
  private readonly secrets = new Map<string, ResilientInformer<V1Secret>>();
  private readonly configMaps: ResilientInformer<V1ConfigMap>;
  private config: GlobalConfig = structuredClone(DEFAULT_GLOBAL_CONFIG);
  private configError: string | undefined;
  private configVersion = '';

  constructor(private readonly opts: ClusterCacheOptions) {
    const core = opts.kubeConfig.makeApiClient(CoreV1Api);
    const storage = opts.kubeConfig.makeApiClient(StorageV1Api);
    const base = { kubeConfig: opts.kubeConfig, log: opts.log };
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
    for (const namespace of new Set(opts.secretNamespaces)) {
      this.secrets.set(
        namespace,
        new ResilientInformer({
          ...base,
          path: `/api/v1/namespaces/${namespace}/secrets`,
          list: () => core.listNamespacedSecret({ namespace }),
        }),
      );
    }
    const fieldSelector = `metadata.name=${CONFIG_MAP_NAME}`;
    this.configMaps = new ResilientInformer({
      ...base,
      path: `/api/v1/namespaces/${opts.configNamespace}/configmaps`,
      list: () => core.listNamespacedConfigMap({ namespace: opts.configNamespace, fieldSelector }),
      fieldSelector,
    });
    const reload = () => this.reloadConfig();
    this.configMaps.on('add', reload);
    this.configMaps.on('update', reload);
    this.configMaps.on('delete', reload);
  }

  private all(): ResilientInformer<KubernetesObject>[] {
    return [this.pvcs, this.pvs, this.classes, ...this.secrets.values(), this.configMaps];
  }

  async start(): Promise<void> {
    await Promise.all(this.all().map((i) => i.start()));
    this.reloadConfig();
  }

  async stop(): Promise<void> {
    await Promise.all(this.all().map((i) => i.stop()));
  }

  /** Ready once every cache has its first list. */
  get synced(): boolean {
    return this.all().every((i) => i.synced);
  }

  /** The current global config: the last one that parsed. */
  get globalConfig(): GlobalConfig {
    return this.config;
  }

  /** Which ConfigMap version the config came from ("" when absent), and why a newer one was rejected. */
  get globalConfigStatus(): { resourceVersion: string; error?: string } {
    return { resourceVersion: this.configVersion, ...(this.configError ? { error: this.configError } : {}) };
  }

  private reloadConfig(): void {
    const cm = this.configMaps.get(CONFIG_MAP_NAME, this.opts.configNamespace);
    try {
      this.config = parseGlobalConfig(cm?.data?.[CONFIG_MAP_KEY]);
      this.configError = undefined;
      this.configVersion = cm?.metadata?.resourceVersion ?? '';
      this.opts.log.info(
        { configMap: `${this.opts.configNamespace}/${CONFIG_MAP_NAME}`, present: !!cm },
        'global config loaded',
      );
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      // Keep serving with the last good config; the error is logged and shown on /readyz.
      this.configError = `ConfigMap version ${cm?.metadata?.resourceVersion}: ${err.message}`;
      this.opts.log.error({ err: err.message }, 'global config rejected; keeping the previous one');
    }
  }

  getPvc(namespace: string, name: string) {
    return this.pvcs.get(name, namespace);
  }
  getPv(name: string) {
    return this.pvs.get(name);
  }
  getStorageClass(name: string) {
    return this.classes.get(name);
  }
  getSecret(namespace: string, name: string) {
    return this.secrets.get(namespace)?.get(name, namespace);
  }
  secretHint(namespace: string): string | undefined {
    if (this.secrets.has(namespace)) return undefined;
    return `the webhook reads Secrets only in ${[...this.secrets.keys()].join(', ') || 'no namespace'} (--secret-namespace)`;
  }
}
