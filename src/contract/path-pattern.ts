// The StorageClass `pathPattern` parameter: the PV's subdirectory rendered from
// the PVC, e.g. "${.PVC.namespace}-${.PVC.name}" or "${.PVC.labels.team}/data".
// Shared by the controller (which creates the directory) and the webhook
// (which mounts it before the PV exists, for WaitForFirstConsumer). The
// rendered text goes through the one subdirectory rule (./subdir.ts).

export interface PvcFields {
  name: string;
  namespace: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const PLACEHOLDER = /\$\{\s*\.PVC\.(name|namespace|labels\.([^}\s]+)|annotations\.([^}\s]+))\s*\}/g;

import { normaliseSubdir, SubdirError } from './subdir.js';

export class PathPatternError extends Error {
  override name = 'PathPatternError';
}

/** Renders the pattern; a placeholder with no value, or a result escaping the volume, throws. */
export function renderPathPattern(pattern: string, pvc: PvcFields): string {
  const rendered = pattern.replace(PLACEHOLDER, (whole, field: string, label?: string, annotation?: string) => {
    let v: string | undefined;
    if (field === 'name') v = pvc.name;
    else if (field === 'namespace') v = pvc.namespace;
    else if (label !== undefined) v = pvc.labels?.[label];
    else if (annotation !== undefined) v = pvc.annotations?.[annotation];
    if (v === undefined || v === '') throw new PathPatternError(`pathPattern "${pattern}": ${whole} has no value`);
    return v;
  });
  if (rendered.includes('${')) throw new PathPatternError(`pathPattern "${pattern}": unknown placeholder`);
  let subdir: string | undefined;
  try {
    subdir = normaliseSubdir(rendered);
  } catch (err) {
    if (!(err instanceof SubdirError)) throw err;
    throw new PathPatternError(`pathPattern "${pattern}" renders to a bad subdirectory: ${err.message}`);
  }
  if (subdir === undefined) {
    throw new PathPatternError(`pathPattern "${pattern}" renders to "${rendered}", which is not a subdirectory`);
  }
  return subdir;
}

/** Whether every placeholder of a pattern is one renderPathPattern knows (checked before any PVC is known). */
export function checkPathPattern(pattern: string): boolean {
  return !pattern.replace(PLACEHOLDER, 'x').includes('${');
}
