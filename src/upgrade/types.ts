// The JuiceFSUpgrade object (manifests/upgrade-crd.yaml, ADR 0017): what to roll out, to which pods, how
// fast; and how far it got. One module for its types: the planner, the reconciler, `kubectl jfs` and the
// dashboard read these and nothing else.
import type { KubernetesObject, V1LabelSelector } from '@kubernetes/client-node';
import { UPGRADE_GATE } from '../contract/keys.js';

/** Our own subdomain of juicefs.com: the reference driver and the JuiceFS operator own other groups. */
export const UPGRADE_GROUP = 'jfs-sidecar.juicefs.com';
/** Alpha: the spec grows when the Mount Pod kinds and the fd holder land. */
export const UPGRADE_VERSION = 'v1alpha1';
export const UPGRADE_API_VERSION = `${UPGRADE_GROUP}/${UPGRADE_VERSION}`;
export const UPGRADE_KIND = 'JuiceFSUpgrade';
export const UPGRADE_PLURAL = 'juicefsupgrades';

/** The readiness gate's condition (added at admission when the ConfigMap's `upgradeReadinessGate` is on). */
export const UPGRADE_READY_CONDITION = UPGRADE_GATE;

/** The pod annotation naming the upgrade that last touched the pod (metadata stays open to the upgrader). */
export const ANNOTATION_UPGRADE = 'jfs-sidecar.juicefs.com/upgrade';

export type UpgradeKind = 'sidecar' | 'mount-pod-binary' | 'mount-pod-recreate';
export const UPGRADE_KINDS: readonly UpgradeKind[] = ['sidecar', 'mount-pod-binary', 'mount-pod-recreate'];

export interface UpgradeTarget {
  /** The new client image, for every selected client. */
  image?: string;
  /** The image the ConfigMap / PV / StorageClass now says for each client (rolled out, never applied silently). */
  fromSettings?: boolean;
}

export interface UpgradeSelector {
  /** Namespaces of the pods; empty or absent: every namespace. */
  namespaces?: string[];
  /** App pods (sidecar kind) or their Mount Pods' app pods, by label. */
  podSelector?: V1LabelSelector;
  /** PVC names (any namespace listed above). */
  pvcNames?: string[];
  storageClassNames?: string[];
}

export type UpgradeOrder = 'name' | 'creation';

export interface UpgradeStrategy {
  /** How many selected pods may be unready at once, counting those unready for other reasons: a number or "N%". */
  maxUnavailable?: number | string;
  /** How many of the selected pods, the last in `order`, stay on their old client (untouched). */
  partition?: number;
  /** The order pods are upgraded in: by namespace/name (default) or oldest first. */
  order?: UpgradeOrder;
  /** A pod whose swap has not completed after this long fails (and stops the rollout). Default 300. */
  podTimeoutSeconds?: number;
}

export interface UpgradeSpec {
  kind: UpgradeKind;
  target: UpgradeTarget;
  selector?: UpgradeSelector;
  strategy?: UpgradeStrategy;
  /** No new pod is started; pods already swapping finish. */
  paused?: boolean;
  /** No new pod is started, ever again; pods already swapping finish (a swap cannot be undone half-way). */
  abort?: boolean;
}

/**
 * A pod's progress: Preparing (the target image is pulled and run on the pod's node, the pod untouched) →
 * Draining (readiness gate False) → HandingOver (the FUSE fd moves to the in-pod holder) → Swapping (image
 * patched; waiting for the new imageID, started and ready) → Succeeded; or Failed with a message.
 */
export type PodUpgradePhase = 'Preparing' | 'Draining' | 'HandingOver' | 'Swapping' | 'Succeeded' | 'Failed';
export const ACTIVE_PHASES: readonly PodUpgradePhase[] = ['Preparing', 'Draining', 'HandingOver', 'Swapping'];
/** Phases the actuator moves on from (I/O); Swapping is judged from the pod's status by the planner. */
export const STEPPED_PHASES: readonly PodUpgradePhase[] = ['Preparing', 'Draining', 'HandingOver'];

export interface PodUpgradeProgress {
  namespace: string;
  name: string;
  uid: string;
  phase: PodUpgradePhase;
  /** The client containers this upgrade changes, and their images before and after. */
  containers: { name: string; fromImage: string; toImage: string; fromImageID?: string }[];
  startedAt?: string;
  finishedAt?: string;
  message?: string;
}

export type UpgradePhase = 'Progressing' | 'Paused' | 'Completed' | 'Failed' | 'Aborted' | 'Invalid';

export interface UpgradeCounts {
  /** Pods the selectors match (partition included). */
  selected: number;
  /** Pods this upgrade will change: selected minus the partition. */
  inScope: number;
  succeeded: number;
  inProgress: number;
  failed: number;
  pending: number;
  /** Pods beyond the partition, left untouched. */
  partitioned: number;
  /** Selected pods not Ready now, whatever the reason (the swap or not). */
  unavailable: number;
  /** Pods already on the target (nothing to do). */
  current: number;
}

/** metav1.Condition, with its time as the string the API carries (the status is written as JSON). */
export interface UpgradeCondition {
  type: 'Progressing' | 'Paused' | 'Completed' | 'Failed';
  status: 'True' | 'False';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface UpgradeStatus {
  observedGeneration?: number;
  phase?: UpgradePhase;
  message?: string;
  counts?: UpgradeCounts;
  pods?: PodUpgradeProgress[];
  conditions?: UpgradeCondition[];
}

export interface JuiceFSUpgrade extends KubernetesObject {
  spec: UpgradeSpec;
  status?: UpgradeStatus;
}

export const DEFAULT_POD_TIMEOUT_SECONDS = 300;
