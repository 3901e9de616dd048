// CSI Node service. NodePublishVolume (Mount Pods, bind mounts) arrives with
// the Mount Pod mode work; until then the RPC is absent and answers
// UNIMPLEMENTED, while the calls below are complete in themselves.
import { execFile } from 'node:child_process';
import { existsSync, rmdirSync } from 'node:fs';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { Code, CsiError, type ServiceImpl } from '../csi/server.js';
import { mountAt } from '../juicefs/mounts.js';

const run = promisify(execFile);

export interface NodeOptions {
  nodeId: string;
  log: Logger;
}

/** Unmounts a target (lazily when busy) and removes its folder; nothing there is success. */
export async function unmountTarget(target: string): Promise<void> {
  while (mountAt(target)) {
    await run('umount', [target]).catch(() => run('umount', ['-l', target]));
  }
  // Only an empty folder is removed: whatever else is there is not ours to delete.
  if (existsSync(target)) rmdirSync(target);
}

export function nodeService(opts: NodeOptions): ServiceImpl {
  return {
    NodeGetInfo: async () => ({ node_id: opts.nodeId, max_volumes_per_node: '0' }),
    NodeGetCapabilities: async () => ({ capabilities: [] }),
    NodeUnpublishVolume: async (req) => {
      const id = typeof req.volume_id === 'string' ? req.volume_id : '';
      const target = typeof req.target_path === 'string' ? req.target_path : '';
      if (!id) throw new CsiError(Code.INVALID_ARGUMENT, 'volume_id is required');
      if (!target) throw new CsiError(Code.INVALID_ARGUMENT, 'target_path is required');
      await unmountTarget(target);
      opts.log.info({ volume: id, target }, 'target unpublished');
      return {};
    },
  };
}
