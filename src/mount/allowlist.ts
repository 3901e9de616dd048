// The one table of what a namespace user may set (DESIGN.md, "No privilege
// through the back door"). PVC and pod annotations may tune the sidecar's
// resources within the admin's bounds; every other JuiceFS key they carry is
// ignored with a warning.
import type { AnnotationBounds } from '../config/schema.js';
import { ATTR, JUICEFS_KEY_PREFIX, RESOURCE_ATTRS, type ResourceAttr } from '../contract/keys.js';
import { parseQuantity } from '../contract/quantity.js';

type Validator = (value: string, bounds: AnnotationBounds) => string | undefined;

function bounded(kind: 'cpu' | 'memory', allowRemoval: boolean): Validator {
  return (value, bounds) => {
    const q = parseQuantity(value);
    if (q === undefined) return `"${value}" is not a resource quantity`;
    if (q <= 0) return allowRemoval ? undefined : 'a limit cannot be removed from a namespace annotation';
    const maxText = kind === 'cpu' ? bounds.maxCpu : bounds.maxMemory;
    const max = parseQuantity(maxText)!;
    if (q > max) return `${value} is above the admin's bound of ${maxText}`;
    return undefined;
  };
}

/** key → validator; a key that is not here is not the user's to set. */
const USER_TUNABLE: Record<ResourceAttr, Validator> = {
  [ATTR.cpuRequest]: bounded('cpu', true),
  [ATTR.cpuLimit]: bounded('cpu', false),
  [ATTR.memoryRequest]: bounded('memory', true),
  [ATTR.memoryLimit]: bounded('memory', false),
};

export interface UserTuning {
  accepted: Partial<Record<ResourceAttr, string>>;
  warnings: string[];
}

/**
 * Filters annotations a namespace user wrote (on a PVC or a pod) down to the
 * allowed resource keys that pass their validators. `where` names the object
 * in the warnings.
 */
export function filterUserAnnotations(
  annotations: Record<string, string> | undefined,
  bounds: AnnotationBounds,
  where: string,
): UserTuning {
  const out: UserTuning = { accepted: {}, warnings: [] };
  for (const [key, value] of Object.entries(annotations ?? {})) {
    if ((RESOURCE_ATTRS as readonly string[]).includes(key)) {
      const problem = USER_TUNABLE[key as ResourceAttr](value, bounds);
      if (problem) out.warnings.push(`${where}: annotation ${key} ignored: ${problem}`);
      else out.accepted[key as ResourceAttr] = value;
    } else if (key.startsWith(JUICEFS_KEY_PREFIX)) {
      out.warnings.push(`${where}: annotation ${key} ignored: only resource keys may be set by namespace users`);
    }
  }
  return out;
}
