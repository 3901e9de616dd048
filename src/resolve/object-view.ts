// A ClusterView over a fixed list of objects (the offline `inject` command's
// input files, golden test cases).
import type {
  KubernetesObject,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Secret,
  V1StorageClass,
} from '@kubernetes/client-node';
import type { ClusterView } from './resolve.js';

const key = (ns: string | undefined, name: string | undefined) => `${ns ?? 'default'}/${name ?? ''}`;

export class ObjectView implements ClusterView {
  private readonly pvcs = new Map<string, V1PersistentVolumeClaim>();
  private readonly pvs = new Map<string, V1PersistentVolume>();
  private readonly classes = new Map<string, V1StorageClass>();
  private readonly secrets = new Map<string, V1Secret>();

  constructor(objects: KubernetesObject[]) {
    for (const o of objects) {
      const m = o.metadata ?? {};
      switch (o.kind) {
        case 'PersistentVolumeClaim':
          this.pvcs.set(key(m.namespace, m.name), o);
          break;
        case 'PersistentVolume':
          this.pvs.set(m.name ?? '', o);
          break;
        case 'StorageClass':
          this.classes.set(m.name ?? '', o as V1StorageClass);
          break;
        case 'Secret':
          this.secrets.set(key(m.namespace, m.name), withData(o));
          break;
      }
    }
  }

  getPvc(namespace: string, name: string) {
    return this.pvcs.get(key(namespace, name));
  }
  getPv(name: string) {
    return this.pvs.get(name);
  }
  getStorageClass(name: string) {
    return this.classes.get(name);
  }
  getSecret(namespace: string, name: string) {
    return this.secrets.get(key(namespace, name));
  }
}

/** Folds stringData into data (base64), as the API server does on write. */
export function withData(secret: V1Secret): V1Secret {
  if (!secret.stringData) return secret;
  const data = { ...(secret.data ?? {}) };
  for (const [k, v] of Object.entries(secret.stringData)) data[k] = Buffer.from(v, 'utf8').toString('base64');
  const { stringData: _dropped, ...rest } = secret;
  return { ...rest, data };
}
