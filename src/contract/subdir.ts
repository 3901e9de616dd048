// The one subdirectory rule: a PV's subdirectory of its JuiceFS volume, from
// `subPath`, the `subdir` mount option, a `pathPattern` or the controller's
// CreateVolume. Empty segments and `.` are layout and dropped; `..` (which
// would escape the volume) and control characters are refused. The
// controller, which records the subdirectory and later removes it, only takes
// it in this canonical form, and never the root.
import { hasControlCharacters } from './names.js';

export class SubdirError extends Error {
  override name = 'SubdirError';
}

/** The canonical subdirectory (`a/b`), or undefined for the volume's root; throws SubdirError. */
export function normaliseSubdir(raw: string): string | undefined {
  if (hasControlCharacters(raw)) throw new SubdirError('subdirectory has control characters');
  // Kubernetes would expand $(VAR) in a container's command: no path from data may carry one.
  if (raw.includes('$(')) throw new SubdirError(`subdirectory "${raw}" contains "$("`);
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new SubdirError(`subdirectory "${raw}" escapes the volume ("..")`);
  return parts.length ? parts.join('/') : undefined;
}

/** Whether `raw` is a subdirectory (not the root) written in its canonical form. */
export function isCanonicalSubdir(raw: string): boolean {
  try {
    return normaliseSubdir(raw) === raw;
  } catch (err) {
    if (err instanceof SubdirError) return false;
    throw err;
  }
}

/**
 * Where a PV's data lies in its JuiceFS volume: its own subdirectory (`subPath`) under the one the `subdir` mount
 * option names, as `juicefs mount --subdir` gets it. Both canonical (or undefined for the root).
 */
export function joinSubdirs(base: string | undefined, own: string | undefined): string | undefined {
  return base && own ? `${base}/${own}` : (own ?? base);
}
