// Inputs and outputs of the pure injector.
import type { V1Pod } from '@kubernetes/client-node';
import type { GlobalConfig } from '../config/schema.js';
import type { PvcIdentity, VolumeSource } from '../mount/volume.js';

export type InjectMode = 'sidecar' | 'serverless';

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

export interface InjectOptions {
  mode: InjectMode;
  config: GlobalConfig;
  /** Mount image from the webhook flag/env; undefined means the built-in default. */
  defaultMountImage?: string;
}

/** Why a pod was left as it was. The same code labels the metric, the log line and the warning. */
export type SkipCode = 'opted-out' | 'already-injected' | 'no-juicefs-volumes';

export type InjectOutcome =
  | { kind: 'injected'; pod: V1Pod; warnings: string[] }
  | { kind: 'skipped'; code: SkipCode; message: string; warnings: string[] };
