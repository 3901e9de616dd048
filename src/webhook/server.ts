// The Fastify adapter: HTTPS, /mutate and /mutate-serverless, health, readiness
// and metrics. Every client error is a 400 (413 for a body over the limit) with
// a JSON body; nothing a client sends can crash the process, and no client can
// hold it: every request must arrive within a time limit, the number of open
// connections is capped, and bodies are bounded in size and nesting before
// they are parsed (docs/security/webhook-server.md).
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
} from 'fastify';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { GlobalConfig } from '../config/schema.js';
import type { InjectMode, InjectOptions } from '../inject/types.js';
import type { ClusterView } from '../resolve/resolve.js';
import type { BrokerClientOptions } from '../mount/credentials.js';
import { reviewAwaitingSeal, type AdmissionResult, type OnError } from './admission.js';
import { JsonDepthScanner, MAX_JSON_DEPTH } from './json-guard.js';
import { createMetrics, type WebhookMetrics } from './metrics.js';
import { validationReview, type ValidationDeps } from './validation-review.js';

export const MUTATE_PATHS: Record<string, InjectMode> = {
  '/mutate': 'sidecar',
  '/mutate-serverless': 'serverless',
  // The reference driver's paths: its MutatingWebhookConfiguration, pointed at this Service, works unedited
  // (docs/migration.md).
  '/juicefs/inject-v1-pod': 'sidecar',
  '/juicefs/serverless/inject-v1-pod': 'serverless',
};

/** The validating webhook (ours, and the reference driver's two paths, which its configuration names). */
export const VALIDATE_PATHS = ['/validate', '/juicefs/validate-secret', '/juicefs/validate-pv'] as const;

export interface WebhookServerOptions {
  view: ClusterView;
  /** The current global config (hot-reloaded by the caller). */
  config: () => GlobalConfig;
  /** Whether the caches have synced: /readyz answers 503 until then. */
  ready: () => boolean;
  /** Extra readiness detail (e.g. which ConfigMap version is loaded, or why it was rejected). */
  readyDetail?: () => Record<string, unknown>;
  defaultMountImage?: string;
  /** The jfs-sidecar image, which runs the FUSE fd holder container of native sidecars (InjectOptions.projectImage). */
  projectImage?: string;
  /** The credential broker for volumes in broker mode (ADR 0010). */
  broker?: BrokerClientOptions | (() => BrokerClientOptions | undefined);
  onError: OnError;
  log: Logger;
  tls?: { cert: string; key: string };
  /**
   * Optional proof that the caller is the API server: admission paths answer only a client certificate signed by
   * `ca` (and, when `names` is not empty, whose subject CN is one of them); others get a 401 and nothing else.
   * Health, readiness and metrics stay open to the kubelet's probes and Prometheus, which present no certificate.
   */
  clientAuth?: { ca: string; names: string[] };
  /** Defaults: SERVER_LIMITS; tests shorten them. */
  limits?: Partial<ServerLimits>;
  metrics?: WebhookMetrics;
  /** The validating webhook's inputs (VALIDATE_PATHS); unset: those paths allow everything. */
  validation?: Omit<ValidationDeps, 'log'>;
}

export interface ServerLimits {
  /** Largest body read; Content-Length over it is refused before reading (413). */
  bodyLimitBytes: number;
  /** Deepest JSON nesting accepted, checked on the raw bytes before JSON.parse (400). */
  maxJsonDepth: number;
  /** The whole request, headers and body, must arrive within this (Node answers 408 and closes). */
  requestTimeoutMs: number;
  /** The headers must arrive within this. */
  headersTimeoutMs: number;
  /** A connection with no traffic for this long is closed, idle keep-alive included. */
  idleTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** Connections beyond this are dropped on accept. */
  maxConnections: number;
}

/**
 * The API server's objects are at most 1.5 MiB (etcd's request limit), so an
 * AdmissionReview of the largest pod is about 3 MiB with its JSON framing. The
 * API server waits at most the webhook's timeoutSeconds (10 s in manifests/)
 * for an answer, so a request that has not arrived in 10 s is useless to it.
 * Each open TLS connection costs tens of KiB: 1,024 bound them well inside
 * the container's 512 MiB while leaving the API servers (a few connections
 * each) ample room.
 */
export const SERVER_LIMITS: ServerLimits = {
  bodyLimitBytes: 3 * 1024 * 1024,
  maxJsonDepth: MAX_JSON_DEPTH,
  requestTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 10_000,
  keepAliveTimeoutMs: 10_000,
  maxConnections: 1024,
};

/** A body refused while it is read: the answer closes the connection, so the rest is never read. */
class BodyRefused extends Error {
  constructor(
    readonly statusCode: 400 | 413,
    message: string,
  ) {
    super(message);
  }
}

export function buildServer(opts: WebhookServerOptions): FastifyInstance {
  const metrics = opts.metrics ?? createMetrics();
  const limits = { ...SERVER_LIMITS, ...opts.limits };
  // Node checks requestTimeout and headersTimeout only every connectionsCheckingInterval (30 s by default).
  const nodeServerOptions = {
    connectionsCheckingInterval: Math.min(1000, Math.ceil(limits.requestTimeoutMs / 4)),
    headersTimeout: Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs),
    requestTimeout: limits.requestTimeoutMs,
  };
  const app = Fastify({
    // Without the widening, Fastify's instance type is inferred from pino's Logger and no longer fits the return type.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    loggerInstance: opts.log as FastifyBaseLogger,
    // One log line per admission comes from the handler; per-request access logs would double it.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: limits.bodyLimitBytes,
    requestTimeout: limits.requestTimeoutMs,
    connectionTimeout: limits.idleTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    ...(opts.tls
      ? {
          https: {
            cert: opts.tls.cert,
            key: opts.tls.key,
            minVersion: 'TLSv1.2' as const,
            ...nodeServerOptions,
            // Asked for, not required at the handshake: the probes on the same port have no certificate.
            ...(opts.clientAuth ? { ca: opts.clientAuth.ca, requestCert: true, rejectUnauthorized: false } : {}),
          },
        }
      : { http: nodeServerOptions }),
    // Requests in flight finish on close; new connections are refused.
    forceCloseConnections: 'idle',
  });

  app.server.maxConnections = limits.maxConnections;

  // JSON bodies are read here, not by Fastify: size and nesting are checked on each chunk as it arrives, and a
  // body over either bound is refused at once; then Fastify's own parser (which refuses __proto__ and constructor).
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', (req, payload, done) => {
    const tooLarge = () => new BodyRefused(413, `body is larger than ${limits.bodyLimitBytes} bytes`);
    const declared = Number(req.headers['content-length']);
    if (declared > limits.bodyLimitBytes) {
      done(tooLarge(), undefined);
      return;
    }
    const scanner = new JsonDepthScanner(limits.maxJsonDepth);
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (err: Error | null) => {
      if (settled) return;
      settled = true;
      payload.removeAllListeners('data');
      if (err) {
        payload.pause();
        done(err, undefined);
        return;
      }
      void parseJson(req, Buffer.concat(chunks, size).toString('utf8'), done);
    };
    payload.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limits.bodyLimitBytes) settle(tooLarge());
      else if (scanner.feed(chunk))
        settle(new BodyRefused(400, `body nests deeper than ${limits.maxJsonDepth} levels`));
      else chunks.push(chunk);
    });
    payload.on('end', () => settle(null));
    payload.on('error', (err) => settle(err));
  });

  app.setErrorHandler((err: FastifyError, _req, res) => {
    const status = err.statusCode === 413 ? 413 : err.statusCode && err.statusCode < 500 ? 400 : 500;
    if (status === 500) opts.log.error({ err: err.message }, 'request failed');
    metrics.admissions.inc({
      path: _req.routeOptions.url ?? 'unknown',
      result: status === 500 ? 'error' : 'bad-request',
    });
    const error = { 400: 'BadRequest', 413: 'PayloadTooLarge', 500: 'InternalError' }[status];
    // The rest of a refused body is not worth reading: the connection closes after the answer.
    if (err instanceof BodyRefused) void res.header('connection', 'close');
    void res.code(status).send({ error, message: err.message });
  });
  const clientAuth = opts.clientAuth;
  if (clientAuth) {
    app.addHook('onRequest', async (req, res) => {
      const url = req.routeOptions.url;
      if (!(url && (url in MUTATE_PATHS || (VALIDATE_PATHS as readonly string[]).includes(url)))) return;
      const socket = req.raw.socket as TLSSocket;
      const cn = socket.authorized ? socket.getPeerCertificate().subject?.CN : undefined;
      const name = Array.isArray(cn) ? cn[0] : cn;
      if (name !== undefined && (!clientAuth.names.length || clientAuth.names.includes(name))) return;
      metrics.admissions.inc({ path: req.routeOptions.url, result: 'unauthenticated' });
      opts.log.warn(
        { path: req.routeOptions.url, remote: req.ip, cn: name },
        'admission request without an accepted client certificate',
      );
      await res.code(401).send({ error: 'Unauthorized', message: 'a client certificate is required' });
    });
  }
  app.setNotFoundHandler((req, res) => {
    void res.code(404).send({ error: 'NotFound', message: `${req.method} ${req.url} is not served` });
  });

  /** A review's HTTP answer, counted: 400 for a malformed one, else the AdmissionReview. */
  const answer = (res: FastifyReply, path: string, result: AdmissionResult) => {
    if (result.kind === 'bad-request') {
      metrics.admissions.inc({ path, result: 'bad-request' });
      opts.log.warn({ path, reason: result.message }, 'bad admission request');
      return res.code(400).send({ error: 'BadRequest', message: result.message });
    }
    metrics.admissions.inc({ path, result: result.result });
    return res.code(200).send(result.review);
  };

  for (const [path, mode] of Object.entries(MUTATE_PATHS)) {
    app.post(path, async (req, res) => {
      const end = metrics.latency.startTimer({ path });
      const options = (): InjectOptions => ({
        mode,
        config: opts.config(),
        defaultMountImage: opts.defaultMountImage,
        projectImage: opts.projectImage,
        broker: typeof opts.broker === 'function' ? opts.broker() : opts.broker,
      });
      const result = await reviewAwaitingSeal(req.body, {
        view: opts.view,
        options,
        onError: opts.onError,
        log: opts.log,
      });
      end();
      return answer(res, path, result);
    });
  }

  for (const path of VALIDATE_PATHS) {
    app.post(path, async (req, res) => {
      const end = metrics.latency.startTimer({ path });
      const result = await validationReview(req.body, {
        pvs: opts.validation?.pvs ?? (() => []),
        secretStatus: opts.validation?.secretStatus,
        log: opts.log,
      });
      end();
      return answer(res, path, result);
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
