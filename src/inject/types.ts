// Inputs and outputs of the pure injector.
import type { V1Pod } from '@kubernetes/client-node';
import type { GlobalConfig } from '../config/schema.js';
import type { InjectMode } from '../contract/inject-mode.js';

export type { InjectMode };

/** What the injector needs to know of the Secret behind a volume (never its values). */
export interface SecretInfo {
  /** Secret in the pod's namespace that the sidecar's env references (the per-PVC copy). */
  name: string;
  /** Keys present in the copy. */
  keys: string[];
  /** Names of the client env vars from the `envs` key; each is key `envs.<NAME>` in the copy. */
  envNames: string[];
  /** `format-options` split into options (not credentials, so they may appear in argv). */
  formatOptions: string[];
}

/** One JuiceFS volume of the pod, resolved from PVC → PV (or StorageClass) → Secret. */
export interface ResolvedVolume {
  /** Name of the pod volume that references the PVC. */
  podVolumeName: string;
  pvcName: string;
  pvcLabels: Record<string, string>;
  /** PVC annotations: only the resource keys are honoured, within bounds. */
  pvcAnnotations: Record<string, string>;
  storageClassName?: string;
  /** Bound PV's name, or `pvc-<PVC uid>` for an unbound PVC of a JuiceFS StorageClass. */
  pvName: string;
  /** Subdirectory of the JuiceFS volume to mount; undefined mounts the root. */
  subdir?: string;
  readOnly: boolean;
  /** Admin-controlled settings: StorageClass parameters overlaid by PV volumeAttributes. */
  attributes: Record<string, string>;
  /** PV spec.mountOptions (or StorageClass mountOptions for an unbound PVC). */
  mountOptions: string[];
  secret: SecretInfo;
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
