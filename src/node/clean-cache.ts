// juicefs/clean-cache: "true" — once a Mount Pod is gone, a Job on its node
// removes the volume's cache blocks from the Mount Pod's cache folders. Pure:
// the Job is planned from the deleted Mount Pod alone (its image, its
// credentials' env, its cache hostPaths), so nothing else needs looking up.
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import {
  CACHE_VOLUME_PREFIX,
  CLEAN_CACHE_APP_VALUE,
  MOUNT_POD_ANN_CLEAN_CACHE,
  MOUNT_POD_LABEL_APP,
  MOUNT_POD_LABEL_VOLUME_ID,
} from '../contract/keys.js';
import { ENV_METAURL } from '../mount/containers.js';

/**
 * The cache of a volume lives in <cache-dir>/<volume UUID>/raw; the UUID comes
 * from the metadata engine (`juicefs status`), so only this volume's blocks go,
 * even when volumes share a cache folder.
 */
const CLEAN_SCRIPT = [
  'set -eu',
  `uuid=$(juicefs status "$${ENV_METAURL}" 2>/dev/null | sed -n 's/.*"UUID": *"\\([^"]*\\)".*/\\1/p' | head -n 1)`,
  '[ -n "$uuid" ] || { echo "could not read the volume UUID (juicefs status)" >&2; exit 1; }',
  'for dir in "$@"; do rm -rf "$dir/$uuid/raw"; echo "removed $dir/$uuid/raw"; done',
].join('\n');

export function wantsCacheCleanup(pod: V1Pod): boolean {
  return pod.metadata?.annotations?.[MOUNT_POD_ANN_CLEAN_CACHE] === 'true';
}

/** The cleanup Job of a deleted Mount Pod, or undefined when it has no cache folder on disk to clean. */
export function planCleanCacheJob(mountPod: V1Pod): V1Job | undefined {
  const container = mountPod.spec?.containers?.[0];
  const cacheVolumes = (mountPod.spec?.volumes ?? []).filter(
    (v) => v.name.startsWith(CACHE_VOLUME_PREFIX) && v.hostPath,
  );
  if (!container || cacheVolumes.length === 0) return undefined;
  const dirs = cacheVolumes.map((v) => v.hostPath!.path);
  const metaurl = container.env?.find((e) => e.name === ENV_METAURL);
  if (!metaurl) return undefined;
  const id = createHash('sha256')
    .update(mountPod.metadata?.uid ?? mountPod.metadata!.name!)
    .digest('hex')
    .slice(0, 12);
  const labels = {
    [MOUNT_POD_LABEL_APP]: CLEAN_CACHE_APP_VALUE,
    ...(mountPod.metadata?.labels?.[MOUNT_POD_LABEL_VOLUME_ID]
      ? { [MOUNT_POD_LABEL_VOLUME_ID]: mountPod.metadata.labels[MOUNT_POD_LABEL_VOLUME_ID] }
      : {}),
  };
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: `juicefs-clean-cache-${id}`, namespace: mountPod.metadata?.namespace, labels },
    spec: {
      backoffLimit: 3,
      activeDeadlineSeconds: 600,
      ttlSecondsAfterFinished: 300,
      template: {
        metadata: { labels },
        spec: {
          nodeName: mountPod.spec!.nodeName,
          restartPolicy: 'Never',
          automountServiceAccountToken: false,
          tolerations: [{ operator: 'Exists' }],
          containers: [
            {
              name: 'clean-cache',
              image: container.image,
              command: ['sh', '-c', CLEAN_SCRIPT, 'clean-cache', ...dirs],
              env: [metaurl],
              volumeMounts: cacheVolumes.map((v) => ({ name: v.name, mountPath: v.hostPath!.path })),
              resources: { requests: { cpu: '100m', memory: '64Mi' } },
            },
          ],
          volumes: cacheVolumes,
        },
      },
    },
  };
}
