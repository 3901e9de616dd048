// The StorageClass `pathPattern` parameter: the PV's subdirectory rendered from
// the PVC (and, for WaitForFirstConsumer, its node), e.g.
// "${.PVC.namespace}-${.PVC.name}" or "${.pvc.labels.team}/data" (placeholders:
// ./template.ts). Shared by the controller (which creates the directory) and
// the webhook (which mounts it before the PV exists). The rendered text goes
// through the one subdirectory rule (./subdir.ts).
//
// Stricter than other parameters on purpose: a placeholder with no value is an
// error, not an empty string, since "team-${.PVC.labels.x}" rendering to
// "team-" would give unrelated PVCs one directory.

import { normaliseSubdir, SubdirError } from './subdir.js';
import { placeholders, renderTemplate, TemplateError, type TemplateSources } from './template.js';

export class PathPatternError extends Error {
  override name = 'PathPatternError';
}

/** Renders the pattern; an unknown placeholder, one with no value, or a result escaping the volume, throws. */
export function renderPathPattern(pattern: string, sources: TemplateSources): string {
  let rendered: string;
  try {
    rendered = renderTemplate(pattern, sources, { strict: true, path: true }).text;
  } catch (err) {
    if (!(err instanceof TemplateError)) throw err;
    throw new PathPatternError(`pathPattern ${err.message}`);
  }
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

/** Whether every placeholder of a pattern is one the renderer knows (checked before any PVC is known). */
export function checkPathPattern(pattern: string): boolean {
  try {
    return (
      placeholders(pattern)
        .reduce((t, p) => t.split(p.text).join(''), pattern)
        .indexOf('${') < 0
    );
  } catch (err) {
    if (err instanceof TemplateError) return false;
    throw err;
  }
}
