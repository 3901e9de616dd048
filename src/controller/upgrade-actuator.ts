// The seam between the rollout engine (upgrade-reconciler.ts, src/upgrade/plan.ts) and each kind of
// upgrade: the sidecar in-place swap here (upgrade-sidecar.ts); Mount Pod binary and recreate plug in
// the same way (one actuator per UpgradeKind, registered in the reconciler).
import type { V1Pod } from '@kubernetes/client-node';
import type { PodObservation } from '../upgrade/clients.js';
import type { SettingsAnswer } from '../upgrade/settings-images.js';
import type { JuiceFSUpgrade, PodUpgradeProgress, UpgradeKind } from '../upgrade/types.js';

/** A step that cannot succeed: the pod's upgrade fails with this message and the rollout stops. */
export class UpgradeStepFailed extends Error {
  override name = 'UpgradeStepFailed';
}

export interface UpgradeActuator {
  readonly kind: UpgradeKind;
  /** The pods of this kind, for the reconciler's informer: a label selector, in one namespace or all. */
  readonly pods: { labelSelector: string; namespace?: string };
  /** What the planner sees of one pod (pure); no clients: not a pod of this kind. */
  observe(pod: V1Pod): PodObservation;
  /**
   * One step of a started pod's upgrade from its phase (Preparing, Draining, HandingOver). Returns the changes
   * to its record: a later phase, or only a message while it waits (it is called again on the next tick).
   * Throws UpgradeStepFailed when the pod's upgrade cannot succeed. Each step is safe to run again (the
   * status write after it may fail, and a new leader resumes from the last written phase).
   */
  step(pod: V1Pod, rec: PodUpgradeProgress, upgrade: JuiceFSUpgrade): Promise<Partial<PodUpgradeProgress>>;
  /**
   * For `target.fromSettings`: each client container's image as the pod's volume settings say now, or why they
   * cannot tell. Absent: this kind reads no settings (the plan says so).
   */
  settingsImages?(pod: V1Pod): SettingsAnswer;
  /** After the pod's upgrade ended (Succeeded or Failed): e.g. its readiness gate back to True. */
  finish(pod: V1Pod, rec: PodUpgradeProgress): Promise<void>;
}
