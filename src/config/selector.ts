// Label selector matching (matchLabels and matchExpressions, as the API server
// evaluates them) and the pvcSelector of mountPodPatch entries.
import type { V1LabelSelector } from '@kubernetes/client-node';
import type { MountPodPatch, PvcSelector } from './schema.js';

export function matchesLabelSelector(selector: V1LabelSelector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[k] !== v) return false;
  }
  for (const expr of selector.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, expr.key);
    const value = labels[expr.key];
    const values = expr.values ?? [];
    switch (expr.operator) {
      case 'In':
        if (!has || !values.includes(value)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(value)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        // An operator we do not know selects nothing, as the API server would refuse it.
        return false;
    }
  }
  return true;
}

export interface PvcIdentity {
  name: string;
  labels: Record<string, string>;
  storageClassName?: string;
}

export function matchesPvcSelector(selector: PvcSelector | undefined, pvc: PvcIdentity): boolean {
  if (!selector) return true;
  if (selector.matchName !== undefined && selector.matchName !== pvc.name) return false;
  if (selector.matchStorageClassName !== undefined && selector.matchStorageClassName !== pvc.storageClassName) {
    return false;
  }
  return matchesLabelSelector(selector, pvc.labels);
}

/**
 * The node an entry's nodeSelector is matched against: the Node's labels (Mount Pod mode), or the pod's own
 * nodeSelector (sidecar mode, as the reference); undefined when unknown, which no nodeSelector matches.
 */
export interface NodeIdentity {
  labels: Record<string, string>;
}

/** The mountPodPatch entries that apply to a PVC on a node, in config order (later ones win). */
export function patchesFor(patches: MountPodPatch[], pvc: PvcIdentity, node?: NodeIdentity): MountPodPatch[] {
  return patches.filter(
    (p) =>
      matchesPvcSelector(p.pvcSelector, pvc) &&
      (p.nodeSelector === undefined || (node !== undefined && matchesLabelSelector(p.nodeSelector, node.labels))),
  );
}
