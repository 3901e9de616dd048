// The client's cache storage (settings.cache: host folders, PVCs, an emptyDir, inline CSI and generic ephemeral
// volumes) and `juicefs/host-path` as pod volumes and mounts, one per `--cache-dir` folder at the path the client is
// given. Shared by the sidecar and the Mount Pod. Host folders need a host: in a serverless pod a cache folder is an
// emptyDir at the same path (the reference leaves it in the container's own filesystem) and `juicefs/host-path` is
// left out, with a warning.
import type { V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import { SELECTED_NODE_ANNOTATION } from '../contract/template.js';
import type { CacheStorage, MountSettings } from './settings.js';

export interface CacheVolumeContext {
  /** hostPath: a sidecar in hostPath mode, or a Mount Pod; serverless: no host path at all. */
  host: 'hostPath' | 'serverless';
  /**
   * The node a Mount Pod is bound to by `nodeName`: its generic ephemeral volumes' PVCs get the scheduler's
   * selected-node annotation, which a pod that bypasses the scheduler never gets otherwise (a WaitForFirstConsumer
   * class would leave them Pending).
   */
  nodeName?: string;
  /** Name of the i-th cache volume (the caller keeps names unique in its pod). */
  cacheName: (i: number) => string;
  /** Name of the i-th `juicefs/host-path` volume. */
  hostPathName: (i: number) => string;
}

function volumeOf(c: CacheStorage, name: string, ctx: CacheVolumeContext): V1Volume {
  switch (c.kind) {
    case 'host':
      return ctx.host === 'hostPath'
        ? { name, hostPath: { path: c.path, type: 'DirectoryOrCreate' } }
        : { name, emptyDir: {} };
    case 'pvc':
      return { name, persistentVolumeClaim: { claimName: c.claimName } };
    case 'emptyDir':
      return {
        name,
        emptyDir: { ...(c.medium && { medium: c.medium }), ...(c.sizeLimit && { sizeLimit: c.sizeLimit }) },
      };
    case 'inline':
      return { name, csi: structuredClone(c.csi) };
    case 'ephemeral':
      return {
        name,
        ephemeral: {
          volumeClaimTemplate: {
            ...(ctx.nodeName && { metadata: { annotations: { [SELECTED_NODE_ANNOTATION]: ctx.nodeName } } }),
            spec: {
              accessModes: [...c.accessModes],
              ...(c.storageClassName && { storageClassName: c.storageClassName }),
              resources: { requests: { storage: c.storage } },
            },
          },
        },
      };
  }
}

export function cacheVolumes(
  settings: MountSettings,
  ctx: CacheVolumeContext,
): { volumes: V1Volume[]; mounts: V1VolumeMount[]; warnings: string[] } {
  const volumes: V1Volume[] = [];
  const mounts: V1VolumeMount[] = [];
  const warnings: string[] = [];
  settings.cache.forEach((c, i) => {
    const name = ctx.cacheName(i);
    volumes.push(volumeOf(c, name, ctx));
    mounts.push({ name, mountPath: c.path });
  });
  if (ctx.host === 'serverless') {
    if (settings.hostPaths.length)
      warnings.push(`juicefs/host-path ${settings.hostPaths.join(',')} left out: a serverless pod has no host path`);
  } else {
    settings.hostPaths.forEach((p, i) => {
      const name = ctx.hostPathName(i);
      // No type: the reference mounts files (e.g. /etc/hosts) as well as folders.
      volumes.push({ name, hostPath: { path: p } });
      mounts.push({ name, mountPath: p });
    });
  }
  return { volumes, mounts, warnings };
}
