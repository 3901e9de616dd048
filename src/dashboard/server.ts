// The dashboard's HTTP shell (Fastify): the page and its bundle, a JSON API of the informers' view, live updates
// over Server-Sent Events (one informer set for every browser), a container's log followed as SSE, and the write
// actions (create/pause/resume/abort a JuiceFSUpgrade, edit the ConfigMap), which act with the user's own token
// (ADR 0023). Every client error is a JSON answer with a plain message; nothing a browser sends crashes it.
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  Log,
  StorageV1Api,
  type KubeConfig,
} from '@kubernetes/client-node';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import path from 'node:path';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import type { Logger } from 'pino';
import { ConfigError, parseGlobalConfig } from '../config/schema.js';
import { diagnose } from '../diagnose/diagnose.js';
import type { Cluster } from '../kubectl/cluster.js';
import { gatherDebug } from '../kubectl/gather.js';
import type { DashboardCache } from './cache.js';
import { parseConfigRequest, parseUpgradeRequest } from './requests.js';
import { apiFailure, bearerToken, isUpgradeAction, UserApi, userKubeConfig, UserFacingError } from './user-api.js';

export interface DashboardServerOptions {
  cache: DashboardCache;
  /** The dashboard's own (read-only) credentials: informers and logs. */
  kubeConfig: KubeConfig;
  systemNamespace: string;
  /** Whether write actions are offered at all (they still act with the user's token). */
  allowWrites: boolean;
  /** Folder of index.html, app.js and app.css (the bundle `npm run build` makes). */
  publicDir: string;
  log: Logger;
  /** Makes the client of one user's token (tests may point it elsewhere). */
  userApi?: (token: string) => UserApi;
}

/** The header every write request must carry: a cross-site form cannot set it (no CSRF through an auth proxy). */
export const WRITE_HEADER = 'x-jfs-dashboard';
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const LOG_TAIL_LINES = 500;
const DEBUG_KINDS = ['pod', 'pvc', 'pv'] as const;
const HEARTBEAT_MS = 15_000;

interface Asset {
  type: string;
  body: Buffer;
  gzip: Buffer;
}

function loadAssets(dir: string): Map<string, Asset> {
  const files: [string, string, string][] = [
    ['/', 'index.html', 'text/html; charset=utf-8'],
    ['/app.js', 'app.js', 'text/javascript; charset=utf-8'],
    ['/app.css', 'app.css', 'text/css; charset=utf-8'],
  ];
  const out = new Map<string, Asset>();
  for (const [route, file, type] of files) {
    const body = readFileSync(path.join(dir, file));
    out.set(route, { type, body, gzip: gzipSync(body, { level: 9 }) });
  }
  return out;
}

/** Starts an SSE answer on the raw response; Fastify no longer touches it. */
function openStream(reply: FastifyReply): ServerResponse {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.write('retry: 2000\n\n');
  return res;
}

/** client-node's log errors carry the response headers in their message: the status line is what a user needs. */
function logFailure(err: unknown): string {
  const m = /HTTP-Code: (\d+) Message: ([^]*?)(?: Body:|$)/.exec(err instanceof Error ? err.message : String(err));
  return m ? `the API server answered ${m[1]}: ${m[2].trim()}` : apiFailure(err).message;
}

const sse = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

export async function buildDashboardServer(opts: DashboardServerOptions): Promise<FastifyInstance> {
  const assets = loadAssets(opts.publicDir);
  const app = Fastify({
    // As in the webhook: widened, or the instance type follows pino's Logger and no longer fits the return type.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    loggerInstance: opts.log as FastifyBaseLogger,
    bodyLimit: 1024 * 1024,
    disableRequestLogging: true,
  });
  const makeUserApi = opts.userApi ?? ((token: string) => new UserApi(userKubeConfig(opts.kubeConfig, token)));

  app.setErrorHandler((err: unknown, req, reply) => {
    const e = err instanceof UserFacingError ? err : undefined;
    const status = e?.statusCode ?? (err as { statusCode?: number }).statusCode ?? 500;
    if (status >= 500 && !e) req.log.error({ err }, 'dashboard request failed');
    void reply.code(status).send({ message: err instanceof Error ? err.message : String(err) });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ message: `nothing at ${req.method} ${req.url}` });
  });
  app.addHook('onSend', async (_req, reply, payload) => {
    // The page loads only its own script and style; no frames, no sniffing.
    reply.header(
      'content-security-policy',
      "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    );
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    return payload;
  });

  for (const [route, asset] of assets)
    app.get(route, async (req, reply) => {
      const gz = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
      void reply
        .header('content-type', asset.type)
        .header('cache-control', 'no-cache')
        .header('vary', 'accept-encoding');
      if (gz) void reply.header('content-encoding', 'gzip');
      return reply.send(gz ? asset.gzip : asset.body);
    });

  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_req, reply) =>
    reply.code(opts.cache.synced ? 200 : 503).send({ synced: opts.cache.synced }),
  );

  app.get('/api/view', async () => ({ ...opts.cache.view(), allowWrites: opts.allowWrites }));

  // Live view: the whole view at once, then again after each coalesced change; a slow browser gets only the newest.
  app.get('/api/stream', (req, reply) => {
    const res = openStream(reply);
    let waiting = false;
    const send = () => {
      if (res.writableNeedDrain) {
        waiting = true;
        return;
      }
      waiting = false;
      res.write(sse('view', { ...opts.cache.view(), allowWrites: opts.allowWrites }));
    };
    res.on('drain', () => waiting && send());
    const unsubscribe = opts.cache.subscribe(send);
    const beat = setInterval(() => res.write(': beat\n\n'), HEARTBEAT_MS);
    req.raw.on('close', () => {
      unsubscribe();
      clearInterval(beat);
    });
    send();
  });

  app.get<{ Params: { namespace: string; name: string } }>('/api/pods/:namespace/:name', async (req) => {
    const pod = opts.cache.pod(req.params.namespace, req.params.name);
    if (!pod) throw new UserFacingError(404, `no pod ${req.params.namespace}/${req.params.name}`);
    return pod;
  });

  // A container's log, followed: one SSE `line` event per line, `end` when the container's log ends.
  app.get<{ Params: { namespace: string; name: string; container: string }; Querystring: { tail?: string } }>(
    '/api/logs/:namespace/:name/:container',
    async (req, reply) => {
      const { namespace, name, container } = req.params;
      if (![namespace, name, container].every((s) => NAME.test(s)))
        throw new UserFacingError(400, 'namespace, pod and container must be Kubernetes names');
      const pod = opts.cache.pod(namespace, name);
      if (!pod) throw new UserFacingError(404, `no pod ${namespace}/${name}`);
      const names = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((c) => c.name);
      if (!names.includes(container))
        throw new UserFacingError(404, `pod ${namespace}/${name} has no container ${container}`);
      const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
      const status = statuses.find((c) => c.name === container);
      const started = status?.state?.running ?? status?.state?.terminated ?? status?.lastState?.terminated;
      if (!started) {
        // The kubelet has nothing to give yet: say so rather than pass on the API server's bare 400.
        const res = openStream(reply);
        const why = status?.state?.waiting?.reason ?? (pod.spec?.nodeName ? 'not started' : 'not scheduled');
        res.write(sse('end', `container ${container} has no log yet (${why})`));
        res.end();
        return;
      }
      const tail = Math.min(Math.max(Number(req.query.tail ?? LOG_TAIL_LINES) || LOG_TAIL_LINES, 1), 10_000);
      const res = openStream(reply);
      let rest = '';
      const sink = new Writable({
        write(chunk: Buffer, _enc, cb) {
          const lines = (rest + chunk.toString('utf8')).split('\n');
          rest = lines.pop() ?? '';
          for (const l of lines) res.write(sse('line', l));
          cb();
        },
      });
      const done = (err: unknown) => {
        if (rest) res.write(sse('line', rest));
        res.write(sse('end', err ? logFailure(err) : 'the log ended'));
        res.end();
      };
      try {
        const abort = await new Log(opts.kubeConfig).log(namespace, name, container, sink, done, {
          follow: true,
          tailLines: tail,
        });
        req.raw.on('close', () => abort.abort());
      } catch (err) {
        res.write(sse('end', logFailure(err)));
        res.end();
      }
    },
  );

  // The diagnosis of `kubectl jfs debug` (src/diagnose/), gathered on demand when a page asks (not on a timer): with
  // the user's token when the request carries one (what they may read), else with the dashboard's read-only identity
  // (no Secrets: their presence is then unknown). No exec: the dashboard never runs df in app containers.
  app.get<{ Params: { kind: string; namespace: string; name: string } }>(
    '/api/diagnose/:kind/:namespace/:name',
    async (req) => {
      const { kind, namespace, name } = req.params;
      const debugKind = DEBUG_KINDS.find((k) => k === kind);
      if (!debugKind) throw new UserFacingError(404, `no diagnosis of ${kind}: pod, pvc or pv`);
      if (!NAME.test(name) || (kind !== 'pv' && !NAME.test(namespace)))
        throw new UserFacingError(400, 'namespace and name must be Kubernetes names');
      const token = bearerToken(req.headers.authorization);
      const kc = token ? userKubeConfig(opts.kubeConfig, token) : opts.kubeConfig;
      const cluster: Cluster = {
        kc,
        core: kc.makeApiClient(CoreV1Api),
        storage: kc.makeApiClient(StorageV1Api),
        admission: kc.makeApiClient(AdmissionregistrationV1Api),
        custom: kc.makeApiClient(CustomObjectsApi),
        namespace: kind === 'pv' ? 'default' : namespace,
        allNamespaces: false,
      };
      const target = { kind: debugKind, namespace: debugKind === 'pv' ? undefined : namespace, name };
      try {
        const gathered = await gatherDebug(cluster, target, {
          systemNamespace: opts.systemNamespace,
          checkMounts: false,
        });
        return { ...diagnose(gathered), readAs: token ? 'your token' : "the dashboard's read-only account" };
      } catch (err) {
        throw apiFailure(err);
      }
    },
  );

  /** The user's API for a write request: refused before anything is sent when writes are off or no token came. */
  const userOf = (req: FastifyRequest): UserApi => {
    if (!opts.allowWrites)
      throw new UserFacingError(403, 'this dashboard is read-only (it runs without --allow-writes)');
    if (req.headers[WRITE_HEADER] !== '1')
      throw new UserFacingError(
        400,
        `write requests carry the ${WRITE_HEADER}: 1 header (the dashboard's page sends it)`,
      );
    const token = bearerToken(req.headers.authorization);
    if (!token)
      throw new UserFacingError(
        401,
        'write actions act with your own Kubernetes credentials: sign in with a bearer token ' +
          '(or reach the dashboard through an auth proxy that sets Authorization)',
      );
    return makeUserApi(token);
  };

  app.post('/api/upgrades', async (req, reply) => {
    const user = userOf(req);
    const { name, spec } = parseUpgradeRequest(req.body);
    const created = await user.createUpgrade(name, spec);
    return reply.code(201).send(created);
  });

  app.post<{ Params: { name: string; action: string } }>('/api/upgrades/:name/:action', async (req) => {
    const user = userOf(req);
    const { name, action } = req.params;
    if (!NAME.test(name)) throw new UserFacingError(400, 'the upgrade name must be a Kubernetes name');
    if (!isUpgradeAction(action)) throw new UserFacingError(404, `no action ${action}: pause, resume or abort`);
    return user.actOnUpgrade(name, action);
  });

  app.put('/api/config', async (req) => {
    const user = userOf(req);
    const { text, resourceVersion } = parseConfigRequest(req.body);
    try {
      parseGlobalConfig(text);
    } catch (err) {
      if (err instanceof ConfigError) throw new UserFacingError(400, `config.yaml is not valid: ${err.message}`);
      throw err;
    }
    const cm = await user.writeConfig(opts.systemNamespace, text, resourceVersion);
    return { resourceVersion: cm.metadata?.resourceVersion };
  });

  return app;
}
