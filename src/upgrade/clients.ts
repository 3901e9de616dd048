// What the planner sees of one pod: its JuiceFS client containers, from spec and status. Pure.
import type { V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import { SIDECAR_NAME } from '../contract/keys.js';
import { UPGRADE_READY_CONDITION } from './types.js';

export interface ClientObservation {
  name: string;
  /** The image the spec asks for now. */
  specImage: string;
  /** From the container's status (absent before the kubelet reports it). */
  statusImage?: string;
  imageID?: string;
  started: boolean;
  ready: boolean;
  restartCount: number;
  /** Why the container is not running, when the kubelet says (ErrImagePull, CrashLoopBackOff, exit code …). */
  problem?: string;
}

export interface PodObservation {
  namespace: string;
  name: string;
  uid: string;
  nodeName?: string;
  createdAt: string;
  labels: Record<string, string>;
  /** The pod's Ready condition. */
  ready: boolean;
  /** Whether the pod carries the upgrade readiness gate (admission decides; it cannot be added later). */
  hasGate: boolean;
  /** The gate's condition: undefined while nobody has set it. */
  gate?: boolean;
  clients: ClientObservation[];
}

const SIDECAR_PATTERN = new RegExp(`^${SIDECAR_NAME}(-[0-9]+)?$`);

/** Reasons a waiting container gives when its image cannot run: the swap failed, waiting longer will not help. */
const HOPELESS = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'ErrImageNeverPull',
  'CreateContainerError',
  'CreateContainerConfigError',
  'RunContainerError',
  'StartError',
  'CrashLoopBackOff',
]);

function problemOf(s: V1ContainerStatus | undefined): string | undefined {
  const waiting = s?.state?.waiting;
  if (waiting?.reason && HOPELESS.has(waiting.reason)) return `${waiting.reason}: ${waiting.message ?? ''}`.trim();
  const term = s?.state?.terminated ?? (waiting ? s?.lastState?.terminated : undefined);
  if (term && term.exitCode !== 0)
    return `exited ${term.exitCode}${term.reason ? ` (${term.reason})` : ''}${term.message ? `: ${term.message}` : ''}`;
  return undefined;
}

export const podKey = (p: { namespace: string; name: string }) => `${p.namespace}/${p.name}`;

/** The sidecar clients (`jfs-mount`, `jfs-mount-<i>`) of an injected pod: native (init) or classic placement. */
export function observeSidecarPod(pod: V1Pod): PodObservation {
  const spec = pod.spec ?? { containers: [] };
  const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
  const clients = [...(spec.initContainers ?? []), ...spec.containers]
    .filter((c) => SIDECAR_PATTERN.test(c.name))
    .map((c): ClientObservation => {
      const s = statuses.find((x) => x.name === c.name);
      return {
        name: c.name,
        specImage: c.image ?? '',
        statusImage: s?.image,
        imageID: s?.imageID || undefined,
        started: s?.started === true && s.state?.running !== undefined,
        ready: s?.ready === true,
        restartCount: s?.restartCount ?? 0,
        problem: problemOf(s),
      };
    });
  const cond = (type: string) => pod.status?.conditions?.find((c) => c.type === type);
  const gate = cond(UPGRADE_READY_CONDITION);
  return {
    namespace: pod.metadata?.namespace ?? '',
    name: pod.metadata?.name ?? '',
    uid: pod.metadata?.uid ?? '',
    nodeName: spec.nodeName,
    createdAt: new Date(pod.metadata?.creationTimestamp ?? 0).toISOString(),
    labels: pod.metadata?.labels ?? {},
    ready: cond('Ready')?.status === 'True',
    hasGate: (spec.readinessGates ?? []).some((g) => g.conditionType === UPGRADE_READY_CONDITION),
    gate: gate ? gate.status === 'True' : undefined,
    clients,
  };
}

/**
 * An image reference as containerd reports it: `busybox` → `docker.io/library/busybox:latest`. Digests are
 * kept. Used to compare the spec's image with the status's.
 */
export function normalizeImage(ref: string): string {
  let name = ref;
  let suffix = '';
  const at = name.indexOf('@');
  if (at >= 0) [name, suffix] = [name.slice(0, at), name.slice(at)];
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  const hasHost = slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (!hasHost) name = `docker.io/${slash < 0 ? `library/${name}` : name}`;
  const lastPart = name.slice(name.lastIndexOf('/') + 1);
  if (!suffix && !lastPart.includes(':')) name += ':latest';
  return name + suffix;
}
