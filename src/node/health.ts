// The node service's health endpoint (`--health-address`): /healthz, /readyz with the detail of the global
// ConfigMap as the last publish read it (its version, what of it is not applied, why a newer one was refused), as the
// webhook's /readyz gives it, and /metrics (src/csi/metrics.ts).
import type { ConfigStatus } from '../k8s/config-report.js';
import { startHealthServer, type HealthServer } from '../util/health-server.js';

export type NodeHealth = HealthServer;

export async function startNodeHealth(
  address: string,
  config: () => ConfigStatus | undefined,
  metrics?: () => Promise<{ contentType: string; body: string }>,
): Promise<NodeHealth> {
  return startHealthServer(address, { ready: () => ({ config: config() ?? null }), metrics });
}
