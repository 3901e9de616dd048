// Bind mounts of a Mount Pod's mount point into kubelet's target paths, and
// how to tell a target that still points at a dead FUSE connection. Nothing
// here stats a target: on a FUSE mount whose daemon hangs, a stat can block
// for minutes, so staleness is read from /proc/self/mountinfo instead (a FUSE
// mount gets a new device number per connection).
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { mountAt, type MountEntry } from '../juicefs/mounts.js';

const run = promisify(execFile);
const UMOUNT_TIMEOUT_MS = 10_000;

/** Binds `source` onto `target` (read-only when asked); a target already mounted is left as it is. */
export async function bindMount(source: string, target: string, readOnly: boolean): Promise<void> {
  mkdirSync(target, { recursive: true });
  if (mountAt(target)) return;
  await run('mount', ['--bind', source, target]);
  if (readOnly) await run('mount', ['-o', 'remount,bind,ro', target]);
}

/** Removes every mount stacked at `target`, lazily when busy or when the unmount hangs. */
export async function unmountAll(target: string): Promise<void> {
  while (mountAt(target)) {
    await run('umount', [target], { timeout: UMOUNT_TIMEOUT_MS }).catch(() =>
      run('umount', ['-l', target], { timeout: UMOUNT_TIMEOUT_MS }),
    );
  }
}

/** Unmounts a target and removes its folder; nothing there is success. */
export async function unmountTarget(target: string): Promise<void> {
  await unmountAll(target);
  // Only an empty folder is removed: whatever else is there is not ours to delete. Safe to stat: nothing is mounted
  // there now.
  if (existsSync(target)) rmdirSync(target);
}

/**
 * Whether a target must be (re)bound to the mount at `source`: nothing is
 * mounted there, or what is mounted is another filesystem — after the Mount
 * Pod's client restarted, the old bind mount answers "transport endpoint is
 * not connected".
 */
export function targetState(source: MountEntry, target: MountEntry | undefined): 'ok' | 'unmounted' | 'stale' {
  if (!target) return 'unmounted';
  return target.device === source.device ? 'ok' : 'stale';
}

/** Replaces whatever is at `target` with a fresh bind mount of `source`. */
export async function rebind(source: string, target: string, readOnly: boolean): Promise<void> {
  await unmountAll(target);
  await bindMount(source, target, readOnly);
}

/** The pod UID in a kubelet target path (…/pods/<uid>/volumes/…), if it is one. */
export function kubeletPodUid(target: string): string | undefined {
  return /\/pods\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\/volumes\//.exec(target)?.[1];
}
