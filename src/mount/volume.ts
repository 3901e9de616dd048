// A JuiceFS volume as the mount spec sees it, apart from any pod: where it
// comes from (PV or StorageClass, the admin's attributes and options, the
// Secret) and which PVC claims it. The sidecar and the Mount Pod both build
// their client from these two.
import type { PvcIdentity as SelectedPvc } from '../config/selector.js';
import type { CredentialsMode } from '../contract/attributes.js';

/** What the mount spec needs to know of the Secret behind a volume (never its values). */
export interface SecretInfo {
  /** Secret the client's env references (the per-PVC copy, or the Mount Pod's Secret). */
  name: string;
  /** Keys present in that Secret. */
  keys: string[];
  /** Names of the client env vars from the `envs` key; each is key `envs.<NAME>` in the copy. */
  envNames: string[];
  /** The `juicefs format` flags it holds values for, each in key `format.<flag>` (read through env, never argv). */
  formatFlags: string[];
  /** The Secret's `name` (the file system's name, no credential): the `${VOLUME_NAME}` of mountPodPatch templates. */
  volumeName?: string;
}

/** The volume's source: PV (or, while unbound, StorageClass), admin attributes, options and Secret. */
export interface VolumeSource {
  /** Bound PV's name, or `pvc-<PVC uid>` for an unbound PVC of a JuiceFS StorageClass. */
  pvName: string;
  /** Subdirectory of the JuiceFS volume to mount; undefined mounts the root. */
  subdir?: string;
  /** The mount is read-only (PV, PVC access modes, the pod's volume, or the CSI publish). */
  readOnly: boolean;
  /** Admin-controlled settings: StorageClass parameters overlaid by PV volumeAttributes. */
  attributes: Record<string, string>;
  /** PV spec.mountOptions (or StorageClass mountOptions for an unbound PVC). */
  mountOptions: string[];
  secret: SecretInfo;
  /**
   * How the sidecar gets the Secret's values (ADR 0010); undefined is `copy` (and the Mount Pod's own Secret in Mount
   * Pod mode, which lives in the system namespace).
   */
  credentials?: CredentialsMode;
  /** An unbound PVC of a JuiceFS StorageClass: its PV is yet to come from the controller, which sets its quota. */
  provisioning?: boolean;
}

/** The PVC that claims a volume: what `mountPodPatch[].pvcSelector` matches, and the user's annotations. */
export interface PvcIdentity extends SelectedPvc {
  namespace: string;
  /** Written by namespace users: only the allow-listed keys are honoured, within bounds. */
  annotations: Record<string, string>;
  /** Its storage request in bytes (the sidecar's quota for a PV the controller did not set one on). */
  requestBytes?: number;
}
