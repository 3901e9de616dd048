// The informer caches every JuiceFS volume lookup needs: PVCs, PVs,
// StorageClasses, and the Secrets of the namespaces where the admin keeps
// JuiceFS Secrets. The webhook's view and the controller's Secret copies share
// this one set, so a new kind of lookup is added in one place. Each cache keeps
// only the fields its readers use (lean-objects.ts).
import {
  CoreV1Api,
  StorageV1Api,
  type KubeConfig,
  type KubernetesObject,
  type V1PersistentVolume,
  type V1PersistentVolumeClaim,
  type V1Secret,
  type V1StorageClass,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { ResilientInformer } from './informer.js';
import { leanPv, leanPvc, leanSecret, leanStorageClass } from './lean-objects.js';

export interface VolumeInformersOptions {
  kubeConfig: KubeConfig;
  /** Namespaces whose Secrets are cached (where the admin keeps JuiceFS Secrets). */
  secretNamespaces: string[];
  log: Logger;
}

export class VolumeInformers {
  readonly pvcs: ResilientInformer<V1PersistentVolumeClaim>;
  readonly pvs: ResilientInformer<V1PersistentVolume>;
  readonly classes: ResilientInformer<V1StorageClass>;
  /** One Secret informer per watched namespace. */
  readonly secrets = new Map<string, ResilientInformer<V1Secret>>();

  constructor(opts: VolumeInformersOptions) {
    const core = opts.kubeConfig.makeApiClient(CoreV1Api);
    const storage = opts.kubeConfig.makeApiClient(StorageV1Api);
    const base = { kubeConfig: opts.kubeConfig, log: opts.log };
    this.pvcs = new ResilientInformer({
      ...base,
      path: '/api/v1/persistentvolumeclaims',
      list: () => core.listPersistentVolumeClaimForAllNamespaces(),
      listPage: (page) => core.listPersistentVolumeClaimForAllNamespaces(page),
      transform: leanPvc,
    });
    this.pvs = new ResilientInformer({
      ...base,
      path: '/api/v1/persistentvolumes',
      list: () => core.listPersistentVolume(),
      listPage: (page) => core.listPersistentVolume(page),
      transform: leanPv,
    });
    this.classes = new ResilientInformer({
      ...base,
      path: '/apis/storage.k8s.io/v1/storageclasses',
      list: () => storage.listStorageClass(),
      transform: leanStorageClass,
    });
    for (const namespace of new Set(opts.secretNamespaces)) {
      this.secrets.set(
        namespace,
        new ResilientInformer({
          ...base,
          path: `/api/v1/namespaces/${namespace}/secrets`,
          list: () => core.listNamespacedSecret({ namespace }),
          transform: leanSecret,
        }),
      );
    }
  }

  all(): ResilientInformer<KubernetesObject>[] {
    return [this.pvcs, this.pvs, this.classes, ...this.secrets.values()];
  }

  getSecret(namespace: string, name: string): V1Secret | undefined {
    return this.secrets.get(namespace)?.get(name, namespace);
  }
}
