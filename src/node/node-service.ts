// CSI Node service. With a Kubernetes API (Mount Pod mode) it publishes
// volumes through shared Mount Pods; without one, NodePublishVolume is not
// served (UNIMPLEMENTED) and the other calls still work. NodeGetVolumeStats
// reports usage from statfs and whether the target is bound to a live client.
import type { Logger } from 'pino';
import { Code, CsiError, requiredString, type ServiceImpl } from '../csi/server.js';
import { unmountTarget } from './bind.js';
import type { MountPodManager } from './mount-pod-manager.js';
import type { Usage } from './volume-stats.js';

export interface NodeOptions {
  nodeId: string;
  log: Logger;
  mountPods?: MountPodManager;
}

export function nodeService(opts: NodeOptions): ServiceImpl {
  const publish: ServiceImpl = {};
  const manager = opts.mountPods;
  if (manager) {
    publish.NodeGetVolumeStats = async (req) => {
      const id = requiredString(req, 'volume_id');
      const target = requiredString(req, 'volume_path');
      const stats = await manager.volumeStats(id, target);
      const usage = (u: Usage | undefined, unit: string) =>
        u ? [{ total: String(u.total), available: String(u.available), used: String(u.used), unit }] : [];
      return {
        usage: [...usage(stats.bytes, 'BYTES'), ...usage(stats.inodes, 'INODES')],
        volume_condition: { abnormal: stats.abnormal, message: stats.message },
      };
    };
    publish.NodePublishVolume = async (req) => {
      const id = requiredString(req, 'volume_id');
      const target = requiredString(req, 'target_path');
      const cap = req.volume_capability as {
        mount?: { mount_flags?: string[] };
        block?: unknown;
        access_mode?: { mode?: string };
      } | null;
      if (!cap) throw new CsiError(Code.INVALID_ARGUMENT, 'volume_capability is required');
      if (cap.block)
        throw new CsiError(Code.INVALID_ARGUMENT, 'JuiceFS volumes are filesystems; block access is not supported');
      const readOnly =
        req.readonly === true ||
        cap.access_mode?.mode === 'MULTI_NODE_READER_ONLY' ||
        cap.access_mode?.mode === 'SINGLE_NODE_READER_ONLY';
      await manager.publish({
        volumeId: id,
        targetPath: target,
        readOnly,
        volumeContext: (req.volume_context ?? {}) as Record<string, string>,
        mountFlags: cap.mount?.mount_flags ?? [],
        secrets: (req.secrets ?? {}) as Record<string, string>,
      });
      return {};
    };
  }
  return {
    ...publish,
    NodeGetInfo: async () => ({ node_id: opts.nodeId, max_volumes_per_node: '0' }),
    NodeGetCapabilities: async () => ({
      capabilities: manager ? ['GET_VOLUME_STATS', 'VOLUME_CONDITION'].map((type) => ({ rpc: { type } })) : [],
    }),
    NodeUnpublishVolume: async (req) => {
      const id = requiredString(req, 'volume_id');
      const target = requiredString(req, 'target_path');
      if (manager) await manager.unpublish(id, target);
      else await unmountTarget(target);
      opts.log.info({ volume: id, target }, 'target unpublished');
      return {};
    },
  };
}
