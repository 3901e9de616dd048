// The Fastify adapter: HTTPS, /mutate and /mutate-serverless, health, readiness
// and metrics. Every client error is a 400 with a JSON body; nothing a client
// sends can crash the process.
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { GlobalConfig } from '../config/schema.js';
import type { InjectMode, InjectOptions } from '../inject/types.js';
import type { ClusterView } from '../resolve/resolve.js';
import { reviewAwaitingSeal, type OnError } from './admission.js';
import { createMetrics, type WebhookMetrics } from './metrics.js';

export const MUTATE_PATHS: Record<string, InjectMode> = {
  '/mutate': 'sidecar',
  '/mutate-serverless': 'serverless',
};

export interface WebhookServerOptions {
  view: ClusterView;
  /** The current global config (hot-reloaded by the caller). */
  config: () => GlobalConfig;
  /** Whether the caches have synced: /readyz answers 503 until then. */
  ready: () => boolean;
  /** Extra readiness detail (e.g. which ConfigMap version is loaded, or why it was rejected). */
  readyDetail?: () => Record<string, unknown>;
  defaultMountImage?: string;
  onError: OnError;
  log: Logger;
  tls?: { cert: string; key: string };
  bodyLimitBytes?: number;
  metrics?: WebhookMetrics;
}

export function buildServer(opts: WebhookServerOptions): FastifyInstance {
  const metrics = opts.metrics ?? createMetrics();
  const app = Fastify({
    // Without the widening, Fastify's instance type is inferred from pino's Logger and no longer fits the return type.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    loggerInstance: opts.log as FastifyBaseLogger,
    // One log line per admission comes from the handler; per-request access logs would double it.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimitBytes ?? 3 * 1024 * 1024,
    ...(opts.tls ? { https: { cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.2' as const } } : {}),
    // Requests in flight finish on close; new connections are refused.
    forceCloseConnections: 'idle',
  });

  app.setErrorHandler((err: FastifyError, _req, res) => {
    const status = err.statusCode && err.statusCode < 500 ? 400 : 500;
    if (status === 500) opts.log.error({ err: err.message }, 'request failed');
    metrics.admissions.inc({
      path: _req.routeOptions.url ?? 'unknown',
      result: status === 400 ? 'bad-request' : 'error',
    });
    void res.code(status).send({ error: status === 400 ? 'BadRequest' : 'InternalError', message: err.message });
  });
  app.setNotFoundHandler((req, res) => {
    void res.code(404).send({ error: 'NotFound', message: `${req.method} ${req.url} is not served` });
  });

  for (const [path, mode] of Object.entries(MUTATE_PATHS)) {
    app.post(path, async (req, res) => {
      const end = metrics.latency.startTimer({ path });
      const options = (): InjectOptions => ({ mode, config: opts.config(), defaultMountImage: opts.defaultMountImage });
      const result = await reviewAwaitingSeal(req.body, {
        view: opts.view,
        options,
        onError: opts.onError,
        log: opts.log,
      });
      end();
      if (result.kind === 'bad-request') {
        metrics.admissions.inc({ path, result: 'bad-request' });
        opts.log.warn({ path, reason: result.message }, 'bad admission request');
        return res.code(400).send({ error: 'BadRequest', message: result.message });
      }
      metrics.admissions.inc({ path, result: result.result });
      return res.code(200).send(result.review);
    });
  }

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, res) => {
    const detail = opts.readyDetail?.() ?? {};
    if (!opts.ready()) return res.code(503).send({ status: 'caches not synced', ...detail });
    return { status: 'ready', ...detail };
  });
  app.get('/metrics', async (_req, res) => {
    res.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  return app;
}
