// The node service's own metrics (src/csi/metrics.ts has the CSI calls): read at scrape time from the informer's
// cache of this node's Mount Pods and one read of the mount table, never by a stat of a mount point (a held
// connection with no client serving it blocks every stat). Counters for what the background passes repair.
import type { V1Pod } from '@kubernetes/client-node';
import type { Counter } from 'prom-client';
import type { CsiMetrics } from '../csi/metrics.js';
import { MOUNT_POD_LABEL_VOLUME_ID } from '../contract/keys.js';
import { JUICEFS_FS_TYPE, readMounts, type MountEntry } from '../juicefs/mounts.js';
import { kubeletPodUid, targetState } from './bind.js';
import { isPodReady, mountPointOf, referencesOf } from './mount-pod-plan.js';

/** What the background passes count. */
export interface NodeRepairCounters {
  /** A target re-bound to its Mount Pod's mount (`was`: unmounted or stale). */
  rebinds?: Counter<'was'>;
  /** A held FUSE fd closed (`reason`: dead, untaken, ended). */
  fdReleased?: Counter<'reason'>;
}

export interface TargetHealth {
  volumeId: string;
  target: string;
  podUid: string;
  healthy: boolean;
}

/** Each referenced target of these Mount Pods: bound to its Mount Pod's serving JuiceFS mount or not (pure). */
export function targetHealth(pods: V1Pod[], mounts: MountEntry[]): TargetHealth[] {
  const top = new Map<string, MountEntry>();
  for (const m of mounts) top.set(m.mountPoint, m); // the last entry at a path is the one on top
  const out: TargetHealth[] = [];
  for (const pod of pods) {
    if (pod.metadata?.deletionTimestamp) continue;
    const mountPoint = mountPointOf(pod);
    const source = mountPoint ? top.get(mountPoint) : undefined;
    const serving = isPodReady(pod) && source?.fsType === JUICEFS_FS_TYPE ? source : undefined;
    for (const target of referencesOf(pod))
      out.push({
        volumeId: pod.metadata?.labels?.[MOUNT_POD_LABEL_VOLUME_ID] ?? '',
        target,
        podUid: kubeletPodUid(target) ?? '',
        healthy: !!serving && targetState(serving, top.get(target)) === 'ok',
      });
  }
  return out;
}

/** Registers the node's gauges and returns the counters the passes increment. */
export function registerNodeMetrics(
  metrics: CsiMetrics,
  pods: () => V1Pod[],
  heldFds: () => number,
): NodeRepairCounters {
  const live = () => pods().filter((p) => !p.metadata?.deletionTimestamp);
  metrics.gauge('jfs_sidecar_mount_pods', "This node's Mount Pods by readiness", ['ready'], (g) => {
    const all = live();
    const ready = all.filter((p) => isPodReady(p)).length;
    g.set({ ready: 'true' }, ready);
    g.set({ ready: 'false' }, all.length - ready);
  });
  metrics.gauge('jfs_sidecar_mount_pod_references', 'Targets using a Mount Pod of this node', [], (g) =>
    g.set(live().reduce((n, p) => n + referencesOf(p).length, 0)),
  );
  metrics.gauge('jfs_sidecar_fd_held', "Mount Pod clients' FUSE fds the node service holds", [], (g) =>
    g.set(heldFds()),
  );
  // The reference's gauge, with its labels: 1 when a target is bound to its Mount Pod's serving mount.
  metrics.gauge(
    'juicefs_volume_path_health',
    'Health of a volume target: 1 bound to its Mount Pod serving mount, 0 otherwise',
    ['volume_id', 'volume_path', 'pod_uid'],
    (g) => {
      for (const h of targetHealth(live(), readMounts()))
        g.set({ volume_id: h.volumeId, volume_path: h.target, pod_uid: h.podUid }, h.healthy ? 1 : 0);
    },
  );
  return {
    rebinds: metrics.counter('jfs_sidecar_target_rebinds_total', "Targets re-bound to their Mount Pod's mount", [
      'was',
    ]),
    fdReleased: metrics.counter('jfs_sidecar_fd_released_total', 'Held FUSE fds closed, by reason', ['reason']),
  };
}
