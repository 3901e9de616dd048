// The classic-placement stopper's decision (ADR 0013, issue 12 item 5), pure:
// with `enableNativeSidecar: false` the sidecar is a regular container, so a
// Job's pod never completes unless something stops the sidecar once the apps
// are done. Nothing in the pod can tell (the sidecar does not share the apps'
// PID namespace), so the controller does: it execs STOP_COMMAND in each sidecar
// this returns, which runs the sidecar's own safe stop (CLIENT_ENTRYPOINT_SCRIPT).
import type { V1Pod } from '@kubernetes/client-node';
import { CREDENTIALS_INIT_NAME, FORMAT_INIT_NAME, SIDECAR_NAME } from '../contract/keys.js';

/**
 * The one command the controller runs in a sidecar: SIGTERM to its entrypoint script (PID 1). The after-admission
 * policy (manifests/after-admission.yaml) admits exactly this argv, and only from the upgrader identity.
 */
export const STOP_COMMAND = ['sh', '-c', 'kill -TERM 1'];

const INJECTED = new RegExp(`^(${SIDECAR_NAME}|${FORMAT_INIT_NAME}|${CREDENTIALS_INIT_NAME})(-[0-9]+)?$`);
const SIDECAR = new RegExp(`^${SIDECAR_NAME}(-[0-9]+)?$`);

/**
 * The running classic sidecars of `pod` to stop now: its restartPolicy is Never or OnFailure, it is not being
 * deleted (the kubelet stops everything then), and every app container (a regular container the injector did not
 * add) has terminated for good: with OnFailure an app that failed is restarted by the kubelet, so it must have
 * exited 0. Native sidecars (init containers) are the kubelet's to stop; none is returned.
 */
export function sidecarsToStop(pod: V1Pod): string[] {
  const policy = pod.spec?.restartPolicy ?? 'Always';
  if (policy === 'Always' || pod.metadata?.deletionTimestamp || pod.status?.phase !== 'Running') return [];
  const containers = pod.spec?.containers ?? [];
  const sidecars = containers.filter((c) => SIDECAR.test(c.name)).map((c) => c.name);
  const apps = containers.filter((c) => !INJECTED.test(c.name)).map((c) => c.name);
  if (sidecars.length === 0 || apps.length === 0) return [];
  const status = new Map((pod.status?.containerStatuses ?? []).map((s) => [s.name, s]));
  const done = apps.every((name) => {
    const terminated = status.get(name)?.state?.terminated;
    return terminated !== undefined && (policy === 'Never' || terminated.exitCode === 0);
  });
  if (!done) return [];
  return sidecars.filter((name) => status.get(name)?.state?.running !== undefined);
}
