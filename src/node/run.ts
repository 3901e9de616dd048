// The node process: CSI Identity + Node on a Unix socket.
import type { Logger } from 'pino';
import { identityService } from '../controller/controller-service.js';
import { startCsiServer, type CsiServer } from '../csi/server.js';
import { PACKAGE_VERSION } from '../local/project-root.js';
import { nodeService } from './node-service.js';

export async function runNode(opts: { endpoint: string; nodeId: string; log: Logger }): Promise<CsiServer> {
  return startCsiServer(
    opts.endpoint,
    { Identity: identityService(PACKAGE_VERSION, false), Node: nodeService({ nodeId: opts.nodeId, log: opts.log }) },
    opts.log,
  );
}
