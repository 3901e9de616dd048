// `target.fromSettings` for Mount Pods (pure): the client image a Mount Pod's volume settings name now (its PV's
// `juicefs/mount-image`, the ConfigMap's `mountPodPatch` entries for its claim, the deployment's default), found
// from the Mount Pod's `volume-id` label. So an image changed in the ConfigMap or a PV is rolled out by a
// JuiceFSUpgrade that says so, never applied behind the user's back (issue 13 item 4).
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import type { GlobalConfig } from '../config/schema.js';
import { ConfigError } from '../config/schema.js';
import { volumeLabel } from '../contract/mount-pod-refs.js';
import { DenyError } from '../contract/deny.js';
import { ATTR, CSI_DRIVER_NAME, MOUNT_POD_LABEL_VOLUME_ID, SIDECAR_NAME } from '../contract/keys.js';
import { settingsImage } from '../mount/settings.js';
import { notClaimedBy, pvcIdentity } from '../resolve/resolve.js';

/** What the controller's caches hold for it. */
export interface SettingsSource {
  /** Every PersistentVolume (the caches' lean copies). */
  pvs(): V1PersistentVolume[];
  getPvc(namespace: string, name: string): V1PersistentVolumeClaim | undefined;
  config: GlobalConfig;
  /** The deployment's default mount image (`--mount-image`, $JFS_MOUNT_IMAGE), as the node service has it. */
  defaultMountImage?: string;
}

export type SettingsAnswer = { images: Record<string, string> } | { unknown: string };

/** The PV a Mount Pod serves: the one of this driver whose volume handle gives its `volume-id` label. */
export function pvOfMountPod(pod: V1Pod, pvs: V1PersistentVolume[]): V1PersistentVolume | string {
  const label = pod.metadata?.labels?.[MOUNT_POD_LABEL_VOLUME_ID];
  if (!label) return 'it has no volume-id label';
  const matching = pvs.filter(
    (pv) =>
      pv.spec?.csi?.driver === CSI_DRIVER_NAME &&
      !!pv.spec.csi.volumeHandle &&
      volumeLabel(pv.spec.csi.volumeHandle) === label,
  );
  if (matching.length === 0) return `no PersistentVolume of ${CSI_DRIVER_NAME} has the volume handle of ${label}`;
  if (matching.length > 1)
    return `PersistentVolumes ${matching.map((p) => p.metadata?.name).join(', ')} share its volume handle`;
  return matching[0];
}

/** The Mount Pod client's image as its volume's settings say now, or why it cannot be told. */
export function mountPodSettingsImages(pod: V1Pod, source: SettingsSource): SettingsAnswer {
  const pv = pvOfMountPod(pod, source.pvs());
  if (typeof pv === 'string') return { unknown: pv };
  // The node's labels are not in the controller's caches: an entry chosen by them could name another image.
  if (source.config.mountPodPatch.some((p) => p.nodeSelector && (p.ceMountImage || p.eeMountImage)))
    return { unknown: 'a mountPodPatch entry with a nodeSelector names an image; the node decides it' };
  const ref = pv.spec?.claimRef;
  const pvc = ref?.name && ref.namespace ? source.getPvc(ref.namespace, ref.name) : undefined;
  const claim = pvc && !notClaimedBy(pv, pvc) ? pvcIdentity(pvc) : undefined;
  const attributes = pv.spec?.csi?.volumeAttributes ?? {};
  try {
    const image = settingsImage(
      { pvName: pv.spec!.csi!.volumeHandle, subdir: attributes[ATTR.subPath], attributes },
      claim,
      { config: source.config, defaultMountImage: source.defaultMountImage },
    );
    return { images: { [SIDECAR_NAME]: image } };
  } catch (err) {
    if (err instanceof DenyError || err instanceof ConfigError)
      return { unknown: `its volume's settings do not resolve: ${err.message}` };
    throw err;
  }
}
