// The webhook's view of the cluster: informer caches of PVCs, PVs,
// StorageClasses, the Secrets of the namespaces it is allowed to read, and the
// global ConfigMap (hot-reloaded). No API call on the admission path.
import { CoreV1Api, type KubeConfig, type KubernetesObject, type V1ConfigMap } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { ConfigError, DEFAULT_GLOBAL_CONFIG, parseGlobalConfig, type GlobalConfig } from '../config/schema.js';
import { CONFIG_MAP_KEY, CONFIG_MAP_NAME } from '../contract/keys.js';
import type { CredentialsMode } from '../contract/attributes.js';
import type { ClusterView } from '../resolve/resolve.js';
import { ConfigReport, type ConfigStatus } from './config-report.js';
import { ResilientInformer } from './informer.js';
import { VolumeInformers } from './volume-informers.js';

export interface ClusterCacheOptions {
  kubeConfig: KubeConfig;
  /** Namespaces whose Secrets the webhook may read (where the admin keeps JuiceFS Secrets). */
  secretNamespaces: string[];
  /** Namespace of the juicefs-csi-driver-config ConfigMap. */
  configNamespace: string;
  /** Admit a pod only once the controller has sealed each PVC's Secret copy (ADR 0010); default true. */
  requireSecretCopySeal?: boolean;
  /** A volume's credentials mode when its PV / StorageClass sets none (ADR 0010); default copy. */
  defaultCredentials?: CredentialsMode;
  log: Logger;
}

export class ClusterCache implements ClusterView {
  private readonly volumes: VolumeInformers;
  private readonly configMaps: ResilientInformer<V1ConfigMap>;
  private config: GlobalConfig = structuredClone(DEFAULT_GLOBAL_CONFIG);
  private readonly report: ConfigReport;
  readonly requireSecretCopySeal: boolean;
  readonly defaultCredentials: CredentialsMode;

  constructor(private readonly opts: ClusterCacheOptions) {
    this.requireSecretCopySeal = opts.requireSecretCopySeal ?? true;
    this.defaultCredentials = opts.defaultCredentials ?? 'copy';
    const core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.report = new ConfigReport({
      core,
      namespace: opts.configNamespace,
      component: 'jfs-sidecar-webhook',
      log: opts.log,
    });
    const base = { kubeConfig: opts.kubeConfig, log: opts.log };
    this.volumes = new VolumeInformers(opts);
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
    return [...this.volumes.all(), this.configMaps];
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

  /** The ConfigMap version in force ("" when absent), what of it is not applied, why a newer one was refused. */
  get globalConfigStatus(): ConfigStatus {
    return this.report.current;
  }

  private reloadConfig(): void {
    const cm = this.configMaps.get(CONFIG_MAP_NAME, this.opts.configNamespace);
    try {
      this.config = parseGlobalConfig(cm?.data?.[CONFIG_MAP_KEY]);
      this.opts.log.info(
        {
          configMap: `${this.opts.configNamespace}/${CONFIG_MAP_NAME}`,
          present: !!cm,
          issues: this.config.issues.length,
        },
        'global config loaded',
      );
      // Each issue: a log line naming the entry and field, an Event on the ConfigMap, the /readyz detail.
      this.report.loaded(cm, this.config);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      // Keep serving with the last good config; the error is logged, recorded and shown on /readyz.
      this.report.refused(cm, err.message);
    }
  }

  getPvc(namespace: string, name: string) {
    return this.volumes.pvcs.get(name, namespace);
  }
  getPv(name: string) {
    return this.volumes.pvs.get(name);
  }
  /** Every PV in the cache (a Mount Pod names its volume by handle, not by PV name). */
  pvs() {
    return [...this.volumes.pvs.list()];
  }
  getStorageClass(name: string) {
    return this.volumes.classes.get(name);
  }
  getSecret(namespace: string, name: string) {
    return this.volumes.getSecret(namespace, name);
  }
  secretHint(namespace: string): string | undefined {
    const watched = [...this.volumes.secrets.keys()];
    if (watched.includes(namespace)) return undefined;
    return `the webhook reads Secrets only in ${watched.join(', ') || 'no namespace'} (--secret-namespace)`;
  }
}
