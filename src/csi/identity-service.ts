// The CSI Identity service, served beside the Controller and/or Node service on each socket.
import { CSI_DRIVER_NAME } from '../contract/keys.js';
import type { ServiceImpl } from './server.js';

/** GetPluginInfo, GetPluginCapabilities and Probe; `withController` advertises the Controller service. */
export function identityService(version: string, withController: boolean): ServiceImpl {
  return {
    GetPluginInfo: async () => ({ name: CSI_DRIVER_NAME, vendor_version: version, manifest: {} }),
    GetPluginCapabilities: async () => ({
      capabilities: [
        ...(withController ? [{ service: { type: 'CONTROLLER_SERVICE' } }] : []),
        ...(withController ? [{ volume_expansion: { type: 'ONLINE' } }] : []),
      ],
    }),
    Probe: async () => ({ ready: { value: true } }),
  };
}
