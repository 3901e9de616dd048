// What is mounted where, read from /proc/self/mountinfo (shared by the
// controller's temporary mounts and the node service).
import { readFileSync } from 'node:fs';

export interface MountEntry {
  /** major:minor of the filesystem; a FUSE mount gets a new one per connection. */
  device: string;
  mountPoint: string;
  /** Mounted read-only (the per-mount `ro` option). */
  readOnly: boolean;
  root: string;
  fsType: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function readMounts(file = '/proc/self/mountinfo'): MountEntry[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [pre, post] = line.split(' - ');
      const f = pre.split(' ');
      const p = (post ?? '').split(' ');
      return {
        device: f[2],
        readOnly: (f[5] ?? '').split(',').includes('ro'),
        root: unescape(f[3]),
        mountPoint: unescape(f[4]),
        fsType: p[0] ?? '',
        source: unescape(p[1] ?? ''),
      };
    });
}

export function mountAt(path: string): MountEntry | undefined {
  // The last entry at a path is the one on top.
  return readMounts()
    .filter((m) => m.mountPoint === path)
    .pop();
}

/** The filesystem type mountinfo shows for a JuiceFS FUSE mount. */
export const JUICEFS_FS_TYPE = 'fuse.juicefs';

export function isJuicefsMount(path: string): boolean {
  return mountAt(path)?.fsType === JUICEFS_FS_TYPE;
}
