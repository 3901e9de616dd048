// Clean-up of what a harness run may leave mounted (a failed test's targets, a
// control plane's folder): never recurse into a mount when removing a folder.
import { spawnSync } from 'node:child_process';
import { readMounts } from '../juicefs/mounts.js';

/** Lazily detaches every mount at or below `dir`, deepest first, so removing the folder never recurses into a mount. */
export function detachMountsUnder(dir: string): void {
  const inside = readMounts()
    .map((m) => m.mountPoint)
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of inside) spawnSync('umount', ['-l', m]);
}
