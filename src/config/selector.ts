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

/** The mountPodPatch entries that apply to a PVC, in config order (later ones win). */
export function patchesFor(patches: MountPodPatch[], pvc: PvcIdentity): MountPodPatch[] {
  return patches.filter((p) => matchesPvcSelector(p.pvcSelector, pvc));
}
