// Bind mounts of a Mount Pod's mount point into kubelet's target paths.
import { execFile } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { promisify } from 'node:util';
import { mountAt } from '../juicefs/mounts.js';

const run = promisify(execFile);

/** Binds `source` onto `target` (read-only when asked); a target already mounted is left as it is. */
export async function bindMount(source: string, target: string, readOnly: boolean): Promise<void> {
  mkdirSync(target, { recursive: true });
  if (mountAt(target)) return;
  await run('mount', ['--bind', source, target]);
  if (readOnly) await run('mount', ['-o', 'remount,bind,ro', target]);
}

/** A mount whose FUSE daemon is gone: any access fails with ENOTCONN ("transport endpoint is not connected"). */
export function isBroken(path: string): boolean {
  try {
    statSync(path);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOTCONN';
  }
}
