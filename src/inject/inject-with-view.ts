// Resolve then inject: the one sequence behind the webhook and the offline
// `inject` command. DenyError from resolution or injection propagates.
import type { V1Pod } from '@kubernetes/client-node';
import { resolveVolumes, type ClusterView } from '../resolve/resolve.js';
import { injectPod, skipBeforeResolving } from './inject.js';
import type { InjectOptions, InjectOutcome } from './types.js';

export function injectWithView(
  pod: V1Pod,
  namespace: string,
  view: ClusterView,
  options: InjectOptions,
): InjectOutcome {
  // Opted-out and already-injected pods are not resolved, so a missing PVC cannot deny them.
  const early = skipBeforeResolving(pod);
  if (early) return early;
  return injectPod(pod, resolveVolumes(pod, namespace, view), options);
}
