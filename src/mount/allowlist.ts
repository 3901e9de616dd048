// What a namespace user may set (DESIGN.md, "No privilege through the back
// door"): the keys the settings table (src/contract/attributes.ts) marks
// `setBy: 'user'`, in PVC and pod annotations, within the admin's bounds;
// every other JuiceFS key they carry is ignored with a warning.
import type { AnnotationBounds } from '../config/schema.js';
import {
  ATTRIBUTE_SPECS,
  AttributeError,
  RESOURCE_FIELDS,
  USER_KEYS,
  type ResourceAttr,
} from '../contract/attributes.js';
import { JUICEFS_KEY_PREFIX, SECRET_COPY_SEAL_ANNOTATION } from '../contract/keys.js';
import { compareQuantities, isPositive, parseQuantity } from '../contract/quantity.js';

/** Why a user's value of a user key is refused, or undefined when it is within the admin's bounds. */
function problemWith(key: ResourceAttr, value: string, bounds: AnnotationBounds): string | undefined {
  try {
    ATTRIBUTE_SPECS.find((s) => s.key === key)!.parse(value);
  } catch (err) {
    if (err instanceof AttributeError) return err.problem;
    throw err;
  }
  const field = RESOURCE_FIELDS.find((f) => f.key === key);
  if (!field) return undefined;
  const q = parseQuantity(value)!;
  // Removing a request lowers what the pod asks for; removing a limit would lift the admin's bound.
  if (!isPositive(q))
    return field.list === 'requests' ? undefined : 'a limit cannot be removed from a namespace annotation';
  const maxText = field.resource === 'cpu' ? bounds.maxCpu : bounds.maxMemory;
  if (compareQuantities(q, parseQuantity(maxText)!) > 0) return `${value} is above the admin's bound of ${maxText}`;
  return undefined;
}

/** Annotations the project itself writes on PVCs: not the user's tuning, so no warning about them. */
const OWN_PVC_ANNOTATIONS = new Set([SECRET_COPY_SEAL_ANNOTATION]);

export interface UserTuning {
  accepted: Partial<Record<ResourceAttr, string>>;
  warnings: string[];
}

/**
 * Filters annotations a namespace user wrote (on a PVC or a pod) down to the
 * user keys that pass their parsers and the admin's bounds. `where` names the
 * object in the warnings.
 */
export function filterUserAnnotations(
  annotations: Record<string, string> | undefined,
  bounds: AnnotationBounds,
  where: string,
): UserTuning {
  const out: UserTuning = { accepted: {}, warnings: [] };
  for (const [key, value] of Object.entries(annotations ?? {})) {
    if (USER_KEYS.includes(key)) {
      const problem = problemWith(key as ResourceAttr, value, bounds);
      if (problem) out.warnings.push(`${where}: annotation ${key} ignored: ${problem}`);
      else out.accepted[key as ResourceAttr] = value;
    } else if (key.startsWith(JUICEFS_KEY_PREFIX) && !OWN_PVC_ANNOTATIONS.has(key)) {
      out.warnings.push(`${where}: annotation ${key} ignored: only resource keys may be set by namespace users`);
    }
  }
  return out;
}
