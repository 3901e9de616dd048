// What resolution yields for each JuiceFS volume of a pod, and the injector
// takes: the volume's source (the mount spec's input) and how the pod binds it.
import type { PvcIdentity, VolumeSource } from '../mount/volume.js';

/** How a pod uses a volume: the pod volume that references the PVC, and that PVC. */
export interface PodBinding {
  /** Name of the pod volume that references the PVC. */
  podVolumeName: string;
  pvc: PvcIdentity;
}

/** One JuiceFS volume of the pod, resolved from PVC → PV (or StorageClass) → Secret. */
export interface ResolvedVolume {
  source: VolumeSource;
  binding: PodBinding;
}
