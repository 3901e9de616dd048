// The baseline of the provisioning benchmark: a CSI controller whose CreateVolume does no filesystem work
// (no mount, no directory, no quota, no record), so the same csi-provisioner + control plane harness shows
// how fast provisioning can be at all. Answers like the real controller (volume id = name, capacity in
// whole GiB, the subdirectory in the context), so the PVs it yields are the same shape.
import { pino } from 'pino';
import { identityService } from '../src/csi/identity-service.js';
import { requiredString, startCsiServer } from '../src/csi/server.js';

const endpoint = process.argv[2];
if (!endpoint) throw new Error('usage: noop-csi-controller <unix:///path/to/csi.sock>');
const GIB = 2 ** 30;
const log = pino({ level: 'warn' });
const server = await startCsiServer(
  endpoint,
  {
    Identity: identityService('bench-noop', true),
    Controller: {
      CreateVolume: async (req) => {
        const name = requiredString(req, 'name');
        const range = (req.capacity_range ?? {}) as { required_bytes?: string };
        const quota = Math.max(1, Math.ceil(Number(range.required_bytes ?? 0) / GIB)) * GIB;
        return { volume: { volume_id: name, capacity_bytes: String(quota), volume_context: { subPath: name } } };
      },
      DeleteVolume: async () => ({}),
      ControllerGetCapabilities: async () => ({ capabilities: [{ rpc: { type: 'CREATE_DELETE_VOLUME' } }] }),
    },
  },
  log,
);
process.once('SIGTERM', () => void server.close().then(() => process.exit(0)));
