// What a Mount Pod takes from the node service's own pod and env, as the reference driver's Mount Pods do: its
// tolerations (without them a NoExecute taint the node plugin tolerates evicts Mount Pods that apps still use), image
// pull secrets, DNS policy and config, host aliases and service account; the priority class and preemption policy
// from JUICEFS_MOUNT_PRIORITY_NAME / JUICEFS_MOUNT_PREEMPTION_POLICY. Pure: the shell reads the pod and the node.
import type {
  V1HostAlias,
  V1LocalObjectReference,
  V1Node,
  V1Pod,
  V1PodDNSConfig,
  V1Toleration,
} from '@kubernetes/client-node';

/** The reference driver's env names for the Mount Pods' priority class and preemption policy. */
export const MOUNT_PRIORITY_ENV = 'JUICEFS_MOUNT_PRIORITY_NAME';
export const MOUNT_PREEMPTION_ENV = 'JUICEFS_MOUNT_PREEMPTION_POLICY';
export const DEFAULT_MOUNT_PRIORITY = 'system-node-critical';
/** The well-known label `enableNodeSelector` selects the node by. */
export const HOSTNAME_LABEL = 'kubernetes.io/hostname';

export interface MountPodInheritance {
  tolerations?: V1Toleration[];
  imagePullSecrets?: V1LocalObjectReference[];
  dnsPolicy?: string;
  dnsConfig?: V1PodDNSConfig;
  hostAliases?: V1HostAlias[];
  /** The node service's own service account (named only: its token is never mounted into a Mount Pod). */
  serviceAccountName?: string;
  priorityClassName: string;
  preemptionPolicy?: string;
  /** The node's `kubernetes.io/hostname` label (for `enableNodeSelector`); the node's name when it has none. */
  hostname?: string;
}

const PREEMPTION = new Set(['PreemptLowerPriority', 'Never']);

/** When nothing is known of the node service's pod (it runs outside the cluster, or it could not be read). */
export const NO_INHERITANCE: MountPodInheritance = { priorityClassName: DEFAULT_MOUNT_PRIORITY };

/**
 * What Mount Pods inherit from `nodePod` (the node service's pod), `node` and `env`. An invalid preemption policy
 * is left out with a warning rather than making every Mount Pod unschedulable.
 */
export function inheritanceOf(
  nodePod: V1Pod | undefined,
  node: V1Node | undefined,
  env: Record<string, string | undefined>,
): { inheritance: MountPodInheritance; warnings: string[] } {
  const warnings: string[] = [];
  const spec = nodePod?.spec;
  const preemption = env[MOUNT_PREEMPTION_ENV]?.trim();
  if (preemption && !PREEMPTION.has(preemption))
    warnings.push(`${MOUNT_PREEMPTION_ENV}="${preemption}" is not PreemptLowerPriority or Never; left out`);
  const inheritance: MountPodInheritance = {
    priorityClassName: env[MOUNT_PRIORITY_ENV]?.trim() || DEFAULT_MOUNT_PRIORITY,
    ...(preemption && PREEMPTION.has(preemption) && { preemptionPolicy: preemption }),
    ...(spec?.tolerations?.length && { tolerations: structuredClone(spec.tolerations) }),
    ...(spec?.imagePullSecrets?.length && { imagePullSecrets: structuredClone(spec.imagePullSecrets) }),
    ...(spec?.dnsPolicy && { dnsPolicy: spec.dnsPolicy }),
    ...(spec?.dnsConfig && { dnsConfig: structuredClone(spec.dnsConfig) }),
    ...(spec?.hostAliases?.length && { hostAliases: structuredClone(spec.hostAliases) }),
    ...(spec?.serviceAccountName && { serviceAccountName: spec.serviceAccountName }),
    ...(node && { hostname: node.metadata?.labels?.[HOSTNAME_LABEL] ?? node.metadata?.name }),
  };
  return { inheritance, warnings };
}
