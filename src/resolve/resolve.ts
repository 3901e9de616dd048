// Resolution of a pod's volumes: pod volume → PVC → PV (or, while unbound,
// StorageClass) → Secret, into the injector's ResolvedVolume inputs. Pure over
// a ClusterView, which the webhook backs with informer caches and the offline
// `inject` command with the objects of its input files.
import type {
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1Secret,
  V1StorageClass,
  V1Volume,
} from '@kubernetes/client-node';
import { ATTR, CSI_DRIVER_NAME, SC_SECRET_PARAMS, SECRET_COPY_SEAL_ANNOTATION } from '../contract/keys.js';
import { quantityBytes } from '../contract/quantity.js';
import { PathPatternError, renderPathPattern } from '../contract/path-pattern.js';
import {
  mountOptionsNeed,
  parametersNeed,
  renderMountOptions,
  renderParameters,
  TemplateError,
  type TemplateSources,
} from '../contract/template.js';
import {
  SecretFormatError,
  secretCopyName,
  summariseSecret,
  unfitSourceSecret,
  verifySecretCopySeal,
  type SecretSummary,
} from '../contract/secret-copy.js';
import { DenyError } from '../contract/deny.js';
import { ATTRIBUTES, AttributeError, type CredentialsMode } from '../contract/attributes.js';
import type { ResolvedVolume } from './types.js';
import type { PvcIdentity, SecretInfo } from '../mount/volume.js';

export interface ClusterView {
  getPvc(namespace: string, name: string): V1PersistentVolumeClaim | undefined;
  getPv(name: string): V1PersistentVolume | undefined;
  getStorageClass(name: string): V1StorageClass | undefined;
  getSecret(namespace: string, name: string): V1Secret | undefined;
  /** Why a Secret might be missing from the view (e.g. a namespace the webhook does not watch). */
  secretHint?(namespace: string): string | undefined;
  /**
   * A pod is admitted only when each PVC carries the controller's seal over its Secret copy (the webhook in a
   * cluster). The offline view has no controller, so it does not ask.
   */
  readonly requireSecretCopySeal?: boolean;
  /** The credentials mode of a volume whose PV / StorageClass does not set `juicefs/credentials` (default copy). */
  readonly defaultCredentials?: CredentialsMode;
}

export interface SecretRef {
  name: string;
  namespace: string;
}

/** External-provisioner's secret-name templates that can be known before the PV exists. */
function expandSecretTemplate(text: string, pvc: V1PersistentVolumeClaim, pvName: string): string {
  return text
    .replaceAll('${pvc.namespace}', pvc.metadata?.namespace ?? '')
    .replaceAll('${pvc.name}', pvc.metadata?.name ?? '')
    .replaceAll('${pv.name}', pvName);
}

// Summaries by Secret object: an informer cache hands out the same object until
// the Secret changes, so its base64 and `envs` YAML are decoded once per
// version, not once per admission.
const summaries = new WeakMap<V1Secret, SecretSummary>();

function summaryOf(secret: V1Secret): SecretSummary {
  let summary = summaries.get(secret);
  if (!summary) {
    summary = summariseSecret(secret.data);
    summaries.set(secret, summary);
  }
  return summary;
}

/**
 * The credentials mode of a volume from its admin attributes (StorageClass parameters overlaid by PV
 * volumeAttributes), else the view's default; an invalid value is a denial naming the key.
 */
export function credentialsModeOf(
  attributes: Record<string, string>,
  view: Pick<ClusterView, 'defaultCredentials'>,
  where: string,
): CredentialsMode {
  try {
    return ATTRIBUTES.credentials.parse(attributes[ATTR.credentials] ?? '') ?? view.defaultCredentials ?? 'copy';
  } catch (err) {
    if (err instanceof AttributeError) throw new DenyError('invalid-pv', `${where}: ${err.message}`);
    throw err;
  }
}

/** The admin attributes of a bound JuiceFS PV: its StorageClass's parameters overlaid by its volumeAttributes. */
function pvAttributes(pv: V1PersistentVolume, view: Pick<ClusterView, 'getStorageClass'>): Record<string, string> {
  const sc = pv.spec?.storageClassName ? view.getStorageClass(pv.spec.storageClassName) : undefined;
  return {
    ...(sc?.provisioner === CSI_DRIVER_NAME ? (sc.parameters ?? {}) : {}),
    ...(pv.spec?.csi?.volumeAttributes ?? {}),
  };
}

/**
 * The credentials mode of the volume behind a PVC (as sourceSecretOf finds it), or undefined when it is no JuiceFS
 * volume of this PVC's; an invalid attribute counts as `broker`, so that no copy is made for a volume whose pods are
 * denied anyway.
 */
export function credentialsOfPvc(
  pvc: V1PersistentVolumeClaim,
  view: Pick<ClusterView, 'getPv' | 'getStorageClass' | 'defaultCredentials'>,
): CredentialsMode | undefined {
  const pvName = pvc.spec?.volumeName;
  let attributes: Record<string, string>;
  if (pvName) {
    const pv = view.getPv(pvName);
    if (pv?.spec?.csi?.driver !== CSI_DRIVER_NAME || notClaimedBy(pv, pvc)) return undefined;
    attributes = pvAttributes(pv, view);
  } else {
    const sc = pvc.spec?.storageClassName ? view.getStorageClass(pvc.spec.storageClassName) : undefined;
    if (sc?.provisioner !== CSI_DRIVER_NAME) return undefined;
    attributes = sc.parameters ?? {};
  }
  try {
    return credentialsModeOf(attributes, view, '');
  } catch {
    return 'broker';
  }
}

function resolveSecret(
  ref: SecretRef,
  pvc: V1PersistentVolumeClaim,
  where: string,
  view: ClusterView,
  credentials: CredentialsMode,
): SecretInfo {
  const secret = view.getSecret(ref.namespace, ref.name);
  if (!secret) {
    const hint = view.secretHint?.(ref.namespace);
    throw new DenyError(
      'secret-not-found',
      `Secret ${ref.namespace}/${ref.name} (of ${where}) not found${hint ? `: ${hint}` : ''}`,
    );
  }
  const unfit = unfitSourceSecret({ ...ref, type: secret.type, data: secret.data });
  if (unfit) throw new DenyError('invalid-secret', `${where}: ${unfit}`);
  const pvcName = pvc.metadata!.name!;
  const copyName = secretCopyName(pvcName);
  // In broker mode no copy exists, so there is no seal to check: the sidecar never references a Secret.
  if (view.requireSecretCopySeal && credentials === 'copy') {
    const subject = {
      sourceUid: secret.metadata?.uid ?? '',
      namespace: pvc.metadata?.namespace ?? '',
      pvcName,
      pvcUid: pvc.metadata?.uid ?? '',
      copyName,
    };
    if (!verifySecretCopySeal(pvc.metadata?.annotations?.[SECRET_COPY_SEAL_ANNOTATION], subject))
      throw new DenyError(
        'secret-copy-not-ready',
        `PersistentVolumeClaim ${subject.namespace}/${pvcName}: the controller has not sealed its copy ` +
          `${copyName} of Secret ${ref.namespace}/${ref.name} (annotation ${SECRET_COPY_SEAL_ANNOTATION}); ` +
          "retry shortly, and if it persists see the PVC's events (a Secret of that name not made by jfs-sidecar " +
          'is never used)',
      );
  }
  try {
    return { name: copyName, ...summaryOf(secret) };
  } catch (err) {
    if (err instanceof SecretFormatError)
      throw new DenyError('invalid-secret', `Secret ${ref.namespace}/${ref.name}: ${err.message}`);
    throw err;
  }
}

function isReadOnly(volume: V1Volume, pvc: V1PersistentVolumeClaim): boolean {
  const modes = pvc.spec?.accessModes ?? [];
  return (
    volume.persistentVolumeClaim?.readOnly === true || (modes.length > 0 && modes.every((m) => m === 'ReadOnlyMany'))
  );
}

/** The Secret a JuiceFS PV names, or undefined when it names none. */
function pvSecretRef(pv: V1PersistentVolume): SecretRef | undefined {
  const ref = pv.spec?.csi?.nodePublishSecretRef;
  return ref?.name ? { name: ref.name, namespace: ref.namespace ?? 'default' } : undefined;
}

/** The Secret a JuiceFS StorageClass names for a PVC (node-publish, else provisioner secret). */
function classSecretRef(sc: V1StorageClass, pvc: V1PersistentVolumeClaim, pvName: string): SecretRef | undefined {
  const params = sc.parameters ?? {};
  const name = params[SC_SECRET_PARAMS.nodePublishName] ?? params[SC_SECRET_PARAMS.provisionerName];
  const namespace = params[SC_SECRET_PARAMS.nodePublishNamespace] ?? params[SC_SECRET_PARAMS.provisionerNamespace];
  if (!name || !namespace) return undefined;
  return { name: expandSecretTemplate(name, pvc, pvName), namespace: expandSecretTemplate(namespace, pvc, pvName) };
}

/**
 * Why `pv` is not this PVC's volume, or undefined when it is. `spec.volumeName`
 * is the PVC's own word, which its namespace's user writes; the PV's
 * `claimRef` is the binding's (the PV controller's, or the admin's when they
 * pre-bind), so only a claimRef naming this PVC (namespace, name, and uid when
 * set) makes the PV this PVC's. A PV without claimRef is not bound yet: the PV
 * controller may still refuse the binding, or bind the PV to another claim
 * first, so it is no PVC's until then (the kubelet, too, mounts a PVC only once
 * bound).
 */
export function notClaimedBy(pv: V1PersistentVolume, pvc: V1PersistentVolumeClaim): string | undefined {
  const ref = pv.spec?.claimRef;
  const pvName = pv.metadata?.name ?? '';
  const claim = `${pvc.metadata?.namespace ?? ''}/${pvc.metadata?.name ?? ''}`;
  if (!ref) {
    return `PersistentVolume ${pvName} is not bound to PersistentVolumeClaim ${claim} yet (it has no claimRef); create the pod once the claim is Bound, or have the admin pre-bind the PV with spec.claimRef`;
  }
  if (ref.namespace !== pvc.metadata?.namespace || ref.name !== pvc.metadata?.name) {
    return `PersistentVolume ${pvName} is bound to another claim, not to PersistentVolumeClaim ${claim}`;
  }
  if (ref.uid && ref.uid !== pvc.metadata?.uid) {
    return `PersistentVolume ${pvName} is bound to an earlier PersistentVolumeClaim ${claim} (uid ${ref.uid}), not to this one`;
  }
  return undefined;
}

/**
 * The source Secret behind a PVC when it is a JuiceFS volume (bound to a
 * JuiceFS PV whose claimRef names it, or unbound of a JuiceFS StorageClass);
 * undefined otherwise. The controller keeps the per-PVC copy of exactly this
 * Secret, so a PVC naming a PV that is not its own gets no copy.
 */
export function sourceSecretOf(
  pvc: V1PersistentVolumeClaim,
  view: Pick<ClusterView, 'getPv' | 'getStorageClass'>,
): SecretRef | undefined {
  const pvName = pvc.spec?.volumeName;
  if (pvName) {
    const pv = view.getPv(pvName);
    if (pv?.spec?.csi?.driver !== CSI_DRIVER_NAME || notClaimedBy(pv, pvc)) return undefined;
    return pvSecretRef(pv);
  }
  const sc = pvc.spec?.storageClassName ? view.getStorageClass(pvc.spec.storageClassName) : undefined;
  if (sc?.provisioner !== CSI_DRIVER_NAME || !pvc.metadata?.uid) return undefined;
  return classSecretRef(sc, pvc, `pvc-${pvc.metadata.uid}`);
}

/** What mountPodPatch selectors match and the allow-list reads: the PVC's name, labels, annotations and class. */
export function pvcIdentity(pvc: V1PersistentVolumeClaim): PvcIdentity {
  return {
    name: pvc.metadata!.name!,
    namespace: pvc.metadata?.namespace ?? '',
    labels: pvc.metadata?.labels ?? {},
    annotations: pvc.metadata?.annotations ?? {},
    storageClassName: pvc.spec?.storageClassName,
    ...withRequest(pvc.spec?.resources?.requests?.storage),
  };
}

function withRequest(storage: string | number | undefined): { requestBytes?: number } {
  const bytes = storage === undefined ? undefined : quantityBytes(String(storage));
  return bytes === undefined ? {} : { requestBytes: bytes };
}

function fromBoundPv(
  volume: V1Volume,
  pvc: V1PersistentVolumeClaim,
  pv: V1PersistentVolume,
  view: ClusterView,
): ResolvedVolume | undefined {
  const csi = pv.spec?.csi;
  if (csi?.driver !== CSI_DRIVER_NAME) return undefined;
  const notOurs = notClaimedBy(pv, pvc);
  if (notOurs) throw new DenyError('pv-not-bound', notOurs);
  const pvName = pv.metadata!.name!;
  const where = `PersistentVolume ${pvName}`;
  const ref = pvSecretRef(pv);
  if (!ref) throw new DenyError('invalid-pv', `${where}: spec.csi.nodePublishSecretRef is missing`);
  const attributes = pvAttributes(pv, view);
  const credentials = credentialsModeOf(attributes, view, where);
  return {
    source: {
      pvName,
      subdir: csi.volumeAttributes?.[ATTR.subPath],
      readOnly: isReadOnly(volume, pvc) || csi.readOnly === true,
      attributes,
      mountOptions: pv.spec?.mountOptions ?? [],
      secret: resolveSecret(ref, pvc, where, view, credentials),
      credentials,
    },
    binding: { podVolumeName: volume.name, pvc: pvcIdentity(pvc) },
  };
}

/** An unbound PVC of a JuiceFS StorageClass: its PV will be `pvc-<uid>`, so everything is known now. */
function fromStorageClass(
  volume: V1Volume,
  pvc: V1PersistentVolumeClaim,
  sc: V1StorageClass,
  view: ClusterView,
): ResolvedVolume {
  const scName = sc.metadata!.name!;
  const where = `StorageClass ${scName}`;
  const pvcName = pvc.metadata!.name!;
  const namespace = pvc.metadata!.namespace!;
  const uid = pvc.metadata?.uid;
  if (!uid) throw new DenyError('invalid-pvc', `PersistentVolumeClaim ${namespace}/${pvcName} has no uid`);
  const pvName = `pvc-${uid}`;
  // The node is not known at admission: a StorageClass whose templates use it is refused here (TemplateError).
  const sources: TemplateSources = {
    pvc: { name: pvcName, namespace, labels: pvc.metadata?.labels, annotations: pvc.metadata?.annotations },
  };
  const original = sc.parameters ?? {};
  let params: Record<string, string>;
  let mountOptions: string[];
  let subdir = pvName;
  try {
    if (parametersNeed(original).node || mountOptionsNeed(sc.mountOptions ?? []).node) {
      throw new DenyError(
        'invalid-storage-class',
        `${where}: its parameters or mountOptions use \${.node.…}, and a sidecar is injected before the pod is scheduled, when ` +
          'no node is known: use a pattern without the node, or Mount Pod mode, where the controller renders it ' +
          'after scheduling',
      );
    }
    params = renderParameters(original, sources, new Set([ATTR.pathPattern])).parameters;
    mountOptions = renderMountOptions(sc.mountOptions ?? [], sources).options;
    if (original[ATTR.pathPattern]) subdir = renderPathPattern(original[ATTR.pathPattern], sources);
  } catch (err) {
    if (err instanceof PathPatternError || err instanceof TemplateError) {
      throw new DenyError('invalid-storage-class', `${where}: ${err.message}`);
    }
    throw err;
  }
  const ref = classSecretRef(sc, pvc, pvName);
  if (!ref)
    throw new DenyError(
      'invalid-storage-class',
      `${where}: parameters name no node-publish (or provisioner) secret and namespace`,
    );
  const credentials = credentialsModeOf(params, view, where);
  return {
    source: {
      pvName,
      subdir,
      readOnly: isReadOnly(volume, pvc),
      attributes: params,
      mountOptions,
      secret: resolveSecret(ref, pvc, where, view, credentials),
      credentials,
      provisioning: true,
    },
    binding: { podVolumeName: volume.name, pvc: { ...pvcIdentity(pvc), storageClassName: scName } },
  };
}

/**
 * The pod's JuiceFS volumes, in pod order. Volumes of other drivers and
 * unbound PVCs of other classes are left out; a missing or malformed object
 * throws DenyError naming it.
 */
export function resolveVolumes(pod: V1Pod, namespace: string, view: ClusterView): ResolvedVolume[] {
  const out: ResolvedVolume[] = [];
  const seen = new Set<string>();
  for (const volume of pod.spec?.volumes ?? []) {
    if (seen.has(volume.name)) throw new DenyError('invalid-pod', `pod volume name "${volume.name}" is used twice`);
    seen.add(volume.name);
    const claimName = volume.persistentVolumeClaim?.claimName;
    if (!claimName) continue;
    const pvc = view.getPvc(namespace, claimName);
    if (!pvc)
      throw new DenyError(
        'pvc-not-found',
        `PersistentVolumeClaim ${namespace}/${claimName} (volume "${volume.name}") not found`,
      );
    const pvName = pvc.spec?.volumeName;
    if (pvName) {
      const pv = view.getPv(pvName);
      if (!pv)
        throw new DenyError(
          'pv-not-found',
          `PersistentVolume ${pvName} (bound to PersistentVolumeClaim ${namespace}/${claimName}) not found`,
        );
      const resolved = fromBoundPv(volume, pvc, pv, view);
      if (resolved) out.push(resolved);
      continue;
    }
    const scName = pvc.spec?.storageClassName;
    if (!scName) continue;
    const sc = view.getStorageClass(scName);
    if (sc?.provisioner === CSI_DRIVER_NAME) out.push(fromStorageClass(volume, pvc, sc, view));
  }
  return out;
}
