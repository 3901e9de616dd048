// The client's cache folders (`cache-dir`, default /var/jfsCache) as pod
// volumes and mounts: host folders (sidecar in hostPath mode, Mount Pod), or
// emptyDirs (serverless). `memory` is no folder. Shared by the sidecar and the Mount Pod.
import type { V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import type { MountSettings } from './settings.js';

export function cacheVolumes(
  settings: MountSettings,
  /** Name of the i-th cache volume (the caller keeps names unique in its pod). */
  nameFor: (i: number) => string,
  backing: 'hostPath' | 'emptyDir',
): { volumes: V1Volume[]; mounts: V1VolumeMount[] } {
  const volumes: V1Volume[] = [];
  const mounts: V1VolumeMount[] = [];
  for (const dir of settings.cacheDirs.filter((d) => d !== 'memory')) {
    const name = nameFor(volumes.length);
    volumes.push(
      backing === 'hostPath' ? { name, hostPath: { path: dir, type: 'DirectoryOrCreate' } } : { name, emptyDir: {} },
    );
    mounts.push({ name, mountPath: dir });
  }
  return { volumes, mounts };
}
