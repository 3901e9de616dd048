// Where a PV's directory lies in its JuiceFS volume, as the controller must
// know it to create, quota, expand and delete it. The sidecar and the Mount Pod
// mount `<subdir option>/<subPath>` (src/mount/settings.ts, `juicefs mount
// --subdir`), so the controller uses the same join. Also the reference
// driver's rule for the PVs it provisioned, which have no record here: their
// directory is their `subPath` attribute, or else the volume id (the PV name).
// Pure: objects in, answers out.
import type { V1PersistentVolume } from '@kubernetes/client-node';
import { ATTR, CSI_DRIVER_NAME } from '../contract/keys.js';
import { quantityBytes } from '../contract/quantity.js';
import { joinSubdirs, normaliseSubdir } from '../contract/subdir.js';
import { parseOption, splitOptionList, SUBDIR_KEY } from './mount-options.js';

/**
 * The `subdir` mount option among a StorageClass's or PV's mount options (an entry may hold several,
 * comma-separated) and the `mountOptions` attribute, the attribute winning as it does at the mount; canonical, or
 * undefined when none is set. Throws SubdirError for one that escapes the volume.
 */
export function optionSubdir(mountOptions: readonly string[], attributeOptions?: string): string | undefined {
  let raw: string | undefined;
  for (const text of [...mountOptions.flatMap((o) => splitOptionList(o)), ...splitOptionList(attributeOptions)]) {
    const opt = parseOption(text);
    if (typeof opt !== 'string' && opt.key === SUBDIR_KEY) raw = opt.value ?? '';
  }
  return raw === undefined ? undefined : normaliseSubdir(raw);
}

/** The directory of a new PV: its own subdirectory under the `subdir` option its mount will use. */
export function volumeDirectory(own: string, mountOptions: readonly string[], attributeOptions?: string): string {
  return joinSubdirs(optionSubdir(mountOptions, attributeOptions), own) ?? own;
}

/** The names external-provisioner gives volumes (`pvc-<PVC uid>`), which the reference deletes with no PV read. */
const PROVISIONED_NAME = /^pvc-\w{8}(-\w{4}){3}-\w{12}$/;

function isOurs(pv: V1PersistentVolume, id: string): boolean {
  return pv.spec?.csi?.driver === CSI_DRIVER_NAME && pv.spec.csi.volumeHandle === id;
}

/** The directory a PV of this driver mounts (relative to the volume root), as its sidecar or Mount Pod mounts it. */
export function pvDirectory(pv: V1PersistentVolume): string | undefined {
  const csi = pv.spec?.csi;
  if (!csi) return undefined;
  const attributes = csi.volumeAttributes ?? {};
  const rendered = attributes[ATTR.renderedMountOptions];
  let options = pv.spec?.mountOptions ?? [];
  if (rendered) {
    try {
      options = JSON.parse(rendered) as string[];
    } catch {
      // A PV whose rendered options do not parse is refused at its mount; its spec's options are the next best.
    }
  }
  const own = normaliseSubdir(attributes[ATTR.subPath] ?? csi.volumeHandle);
  return joinSubdirs(optionSubdir(options, attributes[ATTR.mountOptions]), own);
}

/** What the controller records of a volume (src/controller/registry.ts's VolumeRecord). */
export interface DerivedVolume {
  id: string;
  subdir: string;
  capacityBytes: number;
  createdAt: string;
}

/** A PV's capacity in bytes (0 when it names none), rounded up to a whole byte. */
function capacityBytes(pv: V1PersistentVolume): number {
  return quantityBytes(String(pv.spec?.capacity?.storage ?? '0')) ?? 0;
}

/**
 * What the controller knows of a volume with no record of its own, by the reference driver's rules: from its PV
 * when one is found (directory from `subPath` and the `subdir` option, capacity from the PV), else, for a name
 * external-provisioner gives, the directory of that name at the root. Undefined: not a volume of this driver.
 * Throws SubdirError for a PV whose path escapes the volume.
 */
export function referenceRecord(id: string, pv: V1PersistentVolume | undefined): DerivedVolume | undefined {
  if (pv && isOurs(pv, id)) {
    const subdir = pvDirectory(pv);
    if (!subdir) return undefined; // the volume's root: never the controller's to remove
    return {
      id,
      subdir,
      capacityBytes: capacityBytes(pv),
      createdAt: pv.metadata?.creationTimestamp ? new Date(pv.metadata.creationTimestamp).toISOString() : '',
    };
  }
  if (PROVISIONED_NAME.test(id)) return { id, subdir: id, capacityBytes: 0, createdAt: '' };
  return undefined;
}

/** Other PVs of this driver whose directory is `subdir` (the PV of `id` itself left out). */
export function pvsSharing(pvs: readonly V1PersistentVolume[], id: string, subdir: string): string[] {
  const out: string[] = [];
  for (const pv of pvs) {
    if (pv.spec?.csi?.driver !== CSI_DRIVER_NAME || pv.spec.csi.volumeHandle === id) continue;
    let dir: string | undefined;
    try {
      dir = pvDirectory(pv);
    } catch {
      continue; // a PV whose path is refused mounts nothing
    }
    if (dir === subdir) out.push(pv.metadata?.name ?? pv.spec.csi.volumeHandle);
  }
  return out;
}
