// NodeGetVolumeStats in Mount Pod mode: usage from statfs of the target, and
// the volume condition — abnormal while the target is not bound to its Mount
// Pod's live mount (client restarting, or a bind left on a dead connection).
import { statfs } from 'node:fs/promises';
import { MOUNT_POD_LABEL_VOLUME_ID } from '../contract/keys.js';
import { Code, CsiError } from '../csi/server.js';
import { JUICEFS_FS_TYPE, mountAt } from '../juicefs/mounts.js';
import { targetState } from './bind.js';
import { mountPointOf, referenceKey, volumeLabel } from './mount-pod.js';
import type { MountPodReferences } from './mount-pod-references.js';

const STATFS_TIMEOUT_MS = 5000;

export interface Usage {
  total: bigint;
  available: bigint;
  used: bigint;
}

export interface VolumeStats {
  abnormal: boolean;
  message: string;
  bytes?: Usage;
  inodes?: Usage;
}

/**
 * Usage and condition of a published target, for NodeGetVolumeStats. A
 * target that is not published here, or not for this volume, is NOT_FOUND;
 * one left on a dead connection is reported abnormal without touching it.
 */
export async function volumeStats(
  references: MountPodReferences,
  volumeId: string,
  target: string,
): Promise<VolumeStats> {
  const bound = mountAt(target);
  const pod = bound
    ? (await references.podsOnNode()).find((p) => p.metadata?.annotations?.[referenceKey(target)] === target)
    : undefined;
  if (!bound || !pod || pod.metadata?.labels?.[MOUNT_POD_LABEL_VOLUME_ID] !== volumeLabel(volumeId)) {
    throw new CsiError(Code.NOT_FOUND, `volume ${volumeId} is not published at ${target}`);
  }
  const mountPoint = mountPointOf(pod);
  const source = mountPoint ? mountAt(mountPoint) : undefined;
  if (source?.fsType !== JUICEFS_FS_TYPE || targetState(source, bound) !== 'ok') {
    return {
      abnormal: true,
      message: `Mount Pod ${pod.metadata.name} is not serving this target (client restarting or target stale); it is re-bound once the client is back`,
    };
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('statfs timed out')), STATFS_TIMEOUT_MS);
  });
  try {
    const st = await Promise.race([statfs(target, { bigint: true }), timeout]);
    return {
      abnormal: false,
      message: 'mounted',
      bytes: {
        total: st.blocks * st.bsize,
        available: st.bavail * st.bsize,
        used: (st.blocks - st.bfree) * st.bsize,
      },
      inodes: { total: st.files, available: st.ffree, used: st.files - st.ffree },
    };
  } catch (err) {
    return { abnormal: true, message: `statfs ${target}: ${(err as Error).message}` };
  } finally {
    clearTimeout(timer);
  }
}
