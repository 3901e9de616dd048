// The dashboard process: its informers, then the HTTP server; stops both on close.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { loadKubeConfig } from '../k8s/kubeconfig.js';
import { DashboardCache } from './cache.js';
import { buildDashboardServer } from './server.js';

export interface DashboardRunOptions {
  kubeconfig?: string;
  host: string;
  port: number;
  /** Namespace of the ConfigMap (and the Mount Pods). */
  namespace: string;
  allowWrites: boolean;
  log: Logger;
}

/** Where `npm run build` puts the page and its bundle: beside this module in dist/ (scripts/build-dashboard.mjs). */
export const PUBLIC_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'public');

export async function runDashboard(opts: DashboardRunOptions): Promise<{ url: string; close(): Promise<void> }> {
  const kubeConfig = loadKubeConfig(opts.kubeconfig);
  const cache = new DashboardCache({ kubeConfig, systemNamespace: opts.namespace, log: opts.log });
  const app = await buildDashboardServer({
    cache,
    kubeConfig,
    systemNamespace: opts.namespace,
    allowWrites: opts.allowWrites,
    publicDir: PUBLIC_DIR,
    log: opts.log,
  });
  // The page answers at once (readyz says when the caches are in); the first view follows the first lists.
  const started = cache.start();
  started.catch((err: unknown) => opts.log.error({ err }, 'dashboard informers failed to start'));
  const url = await app.listen({ host: opts.host, port: opts.port });
  opts.log.info({ url, allowWrites: opts.allowWrites }, 'dashboard listening');
  return {
    url,
    async close() {
      await app.close();
      await cache.stop();
    },
  };
}
