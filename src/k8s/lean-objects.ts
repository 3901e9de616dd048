// What the informer caches keep of each object: only the fields a reader of VolumeInformers uses (the resolver,
// the Secret copies, the broker), so that 100,000 PVC/PV pairs fit a small webhook (issue 17). Applied before an
// object enters the cache, from the LIST and from every watch event. A field read by new code must be kept here
// (test/unit/lean-objects.test.ts checks every golden case resolves the same from lean objects).
import type {
  V1ObjectMeta,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Secret,
  V1StorageClass,
} from '@kubernetes/client-node';

/** kubectl apply's copy of the whole object (for a Secret: its data in clear), read by no one here. */
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';
/** What the PV controller and provisioners annotate a PVC/PV with while binding (read by no one here). */
const BINDING_PREFIXES = ['pv.kubernetes.io/', 'volume.kubernetes.io/', 'volume.beta.kubernetes.io/'];
const unread = (key: string) => key === LAST_APPLIED || BINDING_PREFIXES.some((p) => key.startsWith(p));

/**
 * Identity, version (the informer resumes its watch from it), labels, annotations but the unread ones, owners; no
 * managedFields.
 */
function leanMeta(m: V1ObjectMeta | undefined, owners = false): V1ObjectMeta {
  const out: V1ObjectMeta = {};
  if (!m) return out;
  if (m.name !== undefined) out.name = m.name;
  if (m.namespace !== undefined) out.namespace = m.namespace;
  if (m.uid !== undefined) out.uid = m.uid;
  if (m.resourceVersion !== undefined) out.resourceVersion = m.resourceVersion;
  if (m.labels) out.labels = m.labels;
  if (m.annotations) {
    const kept = Object.entries(m.annotations).filter(([k]) => !unread(k));
    if (kept.length > 0) out.annotations = Object.fromEntries(kept);
  }
  if (owners && m.ownerReferences) out.ownerReferences = m.ownerReferences;
  return out;
}

/**
 * A PVC: who it is, its class, access modes, storage request (the sidecar's quota) and volume (no status, limits,
 * selector or data source).
 */
export function leanPvc(pvc: V1PersistentVolumeClaim): V1PersistentVolumeClaim {
  const s = pvc.spec;
  const storage = s?.resources?.requests?.storage;
  return {
    metadata: leanMeta(pvc.metadata),
    spec: {
      ...(s?.accessModes ? { accessModes: s.accessModes } : {}),
      ...(storage !== undefined ? { resources: { requests: { storage } } } : {}),
      ...(s?.storageClassName !== undefined ? { storageClassName: s.storageClassName } : {}),
      ...(s?.volumeName ? { volumeName: s.volumeName } : {}),
    },
  };
}

/** A PV: its CSI source, class, claim and mount options (no status, capacity, node affinity). */
export function leanPv(pv: V1PersistentVolume): V1PersistentVolume {
  const s = pv.spec;
  const ref = s?.claimRef;
  return {
    metadata: leanMeta(pv.metadata),
    spec: {
      ...(s?.csi ? { csi: s.csi } : {}),
      ...(s?.storageClassName !== undefined ? { storageClassName: s.storageClassName } : {}),
      ...(ref ? { claimRef: { namespace: ref.namespace, name: ref.name, uid: ref.uid } } : {}),
      ...(s?.mountOptions ? { mountOptions: s.mountOptions } : {}),
      ...(s?.accessModes ? { accessModes: s.accessModes } : {}),
    },
  };
}

export function leanStorageClass(sc: V1StorageClass): V1StorageClass {
  return {
    metadata: leanMeta(sc.metadata),
    provisioner: sc.provisioner,
    ...(sc.parameters ? { parameters: sc.parameters } : {}),
    ...(sc.mountOptions ? { mountOptions: sc.mountOptions } : {}),
    ...(sc.reclaimPolicy ? { reclaimPolicy: sc.reclaimPolicy } : {}),
    ...(sc.volumeBindingMode ? { volumeBindingMode: sc.volumeBindingMode } : {}),
  };
}

/** A Secret: type, data and immutability, and its owners (a per-PVC copy names its PVC). */
export function leanSecret(secret: V1Secret): V1Secret {
  return {
    metadata: leanMeta(secret.metadata, true),
    ...(secret.type ? { type: secret.type } : {}),
    ...(secret.data ? { data: secret.data } : {}),
    ...(secret.immutable !== undefined ? { immutable: secret.immutable } : {}),
  };
}
