// The credential broker's HTTPS shell (ADR 0010): `POST /v1/credentials {"pvc": name}` with the pod's projected
// ServiceAccount token as bearer. It reviews the token (TokenReview, the broker's audience), reads the token's pod,
// and lets the pure decision (./broker-decision.ts) say whether to answer; only then does it read the volume's
// source Secret from its informer and answer with that volume's credentials. Values are never logged.
// Its serving certificate comes from files (--credentials-cert-dir, e.g. cert-manager) or is self-managed like the
// webhook's (src/certs/): a Secret in the controller's namespace, renewed before expiry, its public CA bundle
// published in a ConfigMap the webhook injects from; either way reloaded without a restart.
import { AuthenticationV1Api, CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { FileCertSource, SecretCertSource, type CertSource, type ServingCert } from '../certs/manager.js';
import { PublishedCa } from '../certs/published-ca.js';
import type { CredentialsMode } from '../contract/attributes.js';
import { CREDENTIALS_AUDIENCE, CREDENTIALS_PATH } from '../contract/keys.js';
import { SecretFormatError } from '../contract/secret-copy.js';
import { ClusterCache } from '../k8s/cluster-cache.js';
import { unlessNotFound } from '../k8s/errors.js';
import { credentialValues, type BrokerClientOptions } from '../mount/credentials.js';
import { decideCredentials, tokenPod, type TokenReviewResult } from './broker-decision.js';

export interface CredentialsBrokerOptions {
  kubeConfig: KubeConfig;
  host: string;
  port: number;
  /** tls.crt and tls.key of the serving certificate (signed by the CA of client.caFile); unset: self-managed. */
  certDir?: string;
  /** What the webhook injects with: the fetch image, this endpoint's URL and (with certDir) the CA's PEM file. */
  client: Omit<BrokerClientOptions, 'caPem'> & { caFile?: string };
  /** Without certDir: where the self-managed certificate lives and what it is valid for. */
  selfManaged?: SelfManagedBrokerCert;
  secretNamespaces: string[];
  /** Namespace of the global ConfigMap (the same settings the webhook injects with). */
  configNamespace: string;
  defaultCredentials: CredentialsMode;
  defaultMountImage?: string;
  /** The controller's started cluster cache, shared with its other parts; unset: the broker keeps its own. */
  view?: ClusterCache;
  log: Logger;
}

export interface SelfManagedBrokerCert {
  namespace: string;
  secretName: string;
  caConfigMapName: string;
  /** DNS names (and IPs) of the broker's Service. */
  hosts: string[];
}

function certSource(opts: CredentialsBrokerOptions): CertSource {
  const dir = opts.certDir;
  if (dir) {
    const missing = `no tls.crt and tls.key in ${dir}`;
    if (!FileCertSource.usable(dir)) throw new Error(missing);
    if (!opts.client.caFile) throw new Error('a broker certificate from files needs the CA file of its signer');
    return new FileCertSource(dir, opts.log);
  }
  if (!opts.selfManaged) throw new Error('the credential broker needs a certificate directory or self-management');
  return new SecretCertSource({
    kubeConfig: opts.kubeConfig,
    namespace: opts.selfManaged.namespace,
    secretName: opts.selfManaged.secretName,
    caConfigMapName: opts.selfManaged.caConfigMapName,
    caName: 'jfs-sidecar-credentials-ca',
    hosts: opts.selfManaged.hosts,
    validityDays: 365,
    renewBeforeDays: 30,
    checkIntervalMs: 10 * 60 * 1000,
    log: opts.log,
  });
}

export interface CredentialsBroker {
  port: number;
  close(): Promise<void>;
}

type TlsServer = { setSecureContext(o: { cert: string; key: string }): void };

const bearer = (header: string | undefined) => /^Bearer ([^\s]+)$/.exec(header ?? '')?.[1];

export async function startCredentialsBroker(opts: CredentialsBrokerOptions): Promise<CredentialsBroker> {
  const { log } = opts;
  const core = opts.kubeConfig.makeApiClient(CoreV1Api);
  const auth = opts.kubeConfig.makeApiClient(AuthenticationV1Api);
  const ownView = opts.view
    ? undefined
    : new ClusterCache({
        kubeConfig: opts.kubeConfig,
        secretNamespaces: opts.secretNamespaces,
        configNamespace: opts.configNamespace,
        requireSecretCopySeal: false,
        defaultCredentials: opts.defaultCredentials,
        log,
      });
  await ownView?.start();
  const view = opts.view ?? ownView!;
  const certs = certSource(opts);
  // A rotation by one replica reaches the webhook through the ConfigMap within seconds, the other replicas' own
  // certificate check only within minutes: they watch the ConfigMap too, so pods injected with the new bundle match.
  const published =
    opts.selfManaged &&
    new PublishedCa({
      kubeConfig: opts.kubeConfig,
      namespace: opts.selfManaged.namespace,
      name: opts.selfManaged.caConfigMapName,
      log,
    });
  // What the webhook injected with: the CA file's PEM, or the self-managed bundle (and the one before its rotation).
  let own: { caPem: string; previous: string[] } = { caPem: '', previous: [] };
  const trust = (cert: ServingCert) => {
    own = opts.client.caFile
      ? { caPem: readFileSync(opts.client.caFile, 'utf8'), previous: [] }
      : { caPem: cert.caBundle ?? '', previous: cert.previousCaBundle ? [cert.previousCaBundle] : [] };
  };
  const trusted = () => {
    const now = published?.caBundle;
    const earlier = [published?.previousCaBundle, own.caPem, ...own.previous];
    return {
      caPem: now ?? own.caPem,
      previous: [...new Set(earlier.filter((p): p is string => !!p && p !== now))],
    };
  };
  // Assigned once the certificate is there; the reload callback reads it.
  // eslint-disable-next-line prefer-const
  let app: FastifyInstance | undefined;
  const tls = await certs.start((next) => {
    trust(next);
    // New connections use the new certificate; open ones finish with the old.
    if (app) (app.server as unknown as TlsServer).setSecureContext({ cert: next.cert, key: next.key });
  });
  trust(tls);
  await published?.start();
  app = Fastify({
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    loggerInstance: log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 4096,
    requestTimeout: 10_000,
    connectionTimeout: 10_000,
    https: { cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' as const },
  });
  app.get('/healthz', () => ({ ok: true }));
  app.post(CREDENTIALS_PATH, async (req, reply) => {
    const body = req.body as { pvc?: unknown } | undefined;
    const pvcName = typeof body?.pvc === 'string' ? body.pvc : undefined;
    const token = bearer(req.headers.authorization);
    if (!pvcName) return reply.code(400).send({ code: 'bad-request', message: 'the body must be {"pvc": "<name>"}' });
    if (!token) return reply.code(401).send({ code: 'unauthenticated', message: 'a bearer token is required' });
    const status = await auth
      .createTokenReview({ body: { spec: { token, audiences: [CREDENTIALS_AUDIENCE] } } })
      .then((r) => r.status ?? {});
    const review: TokenReviewResult = {
      authenticated: status.authenticated,
      audiences: status.audiences,
      error: status.error,
      user: { username: status.user?.username, extra: status.user?.extra },
    };
    const who = tokenPod(review);
    let pod: V1Pod | undefined;
    if (!('allow' in who))
      pod = await unlessNotFound(core.readNamespacedPod({ namespace: who.namespace, name: who.name }));
    const ca = trusted();
    const decision = decideCredentials({
      review,
      pod,
      pvcName,
      view,
      options: {
        config: view.globalConfig,
        defaultMountImage: opts.defaultMountImage,
        broker: { image: opts.client.image, url: opts.client.url, caPem: ca.caPem },
        // The webhook's fd holder runs the same jfs-sidecar image: the derivation must add it as the webhook does.
        projectImage: opts.client.image,
        previousCaPems: ca.previous,
      },
    });
    const podName = 'allow' in who ? undefined : `${who.namespace}/${who.name}`;
    if (!decision.allow) {
      log.warn({ pod: podName, pvc: pvcName, code: decision.code }, decision.message);
      return reply
        .code(decision.code === 'unauthenticated' ? 401 : 403)
        .send({ code: decision.code, message: decision.message });
    }
    const secret = view.getSecret(decision.secret.namespace, decision.secret.name);
    if (!secret)
      return reply.code(503).send({ code: 'secret-not-found', message: 'the volume Secret is not in the cache yet' });
    try {
      const values = credentialValues(secret.data);
      log.info({ pod: podName, pvc: pvcName, keys: Object.keys(values).sort() }, 'credentials given');
      return { pvc: pvcName, values };
    } catch (err) {
      if (err instanceof SecretFormatError)
        return reply.code(500).send({ code: 'invalid-secret', message: err.message });
      throw err;
    }
  });
  await app.listen({ host: opts.host, port: opts.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  log.info({ port }, 'credential broker listening');
  return {
    port,
    close: async () => {
      certs.stop();
      await app.close();
      await published?.stop();
      await ownView?.stop();
    },
  };
}
