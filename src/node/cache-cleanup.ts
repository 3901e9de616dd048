// The API side of juicefs/clean-cache (the Job itself is planned, purely, in
// clean-cache.ts): once a Mount Pod is gone for good, a Job on this node
// removes its volume's cache — unless another Mount Pod of that volume runs
// here and uses that cache now.
import type { BatchV1Api, V1Pod } from '@kubernetes/client-node';
import { MOUNT_POD_LABEL_VOLUME_ID } from '../contract/keys.js';
import { isStatus } from '../k8s/errors.js';
import { planCleanCacheJob } from './clean-cache.js';
import type { MountPodScope } from './mount-pod-references.js';

/** Creates the cache-cleanup Job of a deleted Mount Pod; `mountPods` are this node's Mount Pods as last seen. */
export async function createCleanCacheJob(
  batch: BatchV1Api,
  scope: MountPodScope,
  mountPods: ReadonlyArray<V1Pod>,
  pod: V1Pod,
): Promise<void> {
  const job = planCleanCacheJob(pod);
  if (!job) return;
  // A Mount Pod of the same volume here (a publish came back meanwhile) uses that cache now: leave it.
  const volume = pod.metadata?.labels?.[MOUNT_POD_LABEL_VOLUME_ID];
  if (mountPods.some((p) => p.metadata?.labels?.[MOUNT_POD_LABEL_VOLUME_ID] === volume)) {
    scope.log.info({ mountPod: pod.metadata?.name }, 'cache kept: another Mount Pod of the volume runs on this node');
    return;
  }
  try {
    await batch.createNamespacedJob({ namespace: scope.namespace, body: job });
    scope.log.info(
      { mountPod: pod.metadata?.name, job: job.metadata?.name },
      'Mount Pod gone: cache-cleanup Job created',
    );
  } catch (err) {
    if (!isStatus(err, 409)) throw err; // already created for this Mount Pod
  }
}
