// The PVC behind a published volume (Mount Pod mode): kubelet's
// NodePublishVolume names only the volume handle, so the PV is looked up (by
// name, else by handle) and the PVC its claimRef names is read, once per
// publish. A static PV that no claim names, or a claim since deleted, has none.
import type { CoreV1Api, V1PersistentVolume } from '@kubernetes/client-node';
import { CSI_DRIVER_NAME } from '../contract/keys.js';
import { unlessNotFound } from '../k8s/errors.js';
import type { PvcIdentity } from '../mount/volume.js';
import { notClaimedBy, pvcIdentity } from '../resolve/resolve.js';

function serves(pv: V1PersistentVolume | undefined, volumeId: string): boolean {
  return pv?.spec?.csi?.driver === CSI_DRIVER_NAME && pv.spec.csi.volumeHandle === volumeId;
}

/** The PV whose CSI volume handle is `volumeId`: usually named so (dynamic PVs), else found in the list. */
async function pvOf(core: CoreV1Api, volumeId: string): Promise<V1PersistentVolume | undefined> {
  const named = await unlessNotFound(core.readPersistentVolume({ name: volumeId }));
  if (serves(named, volumeId)) return named;
  return (await core.listPersistentVolume()).items.find((pv) => serves(pv, volumeId));
}

/** The claiming PVC's identity, or undefined when there is none. */
export async function claimOfVolume(core: CoreV1Api, volumeId: string): Promise<PvcIdentity | undefined> {
  const pv = await pvOf(core, volumeId);
  const ref = pv?.spec?.claimRef;
  if (!pv || !ref?.name || !ref.namespace) return undefined;
  const pvc = await unlessNotFound(
    core.readNamespacedPersistentVolumeClaim({ name: ref.name, namespace: ref.namespace }),
  );
  // A claimRef left by a deleted PVC (or pointing at a newer PVC of that name) names no claim of this PV.
  if (!pvc || notClaimedBy(pv, pvc)) return undefined;
  return pvcIdentity(pvc);
}
