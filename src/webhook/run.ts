// The webhook process: caches, certificates, HTTPS server, graceful shutdown.
import { readFileSync } from 'node:fs';
import { loadKubeConfig } from '../k8s/kubeconfig.js';
import type { Logger } from 'pino';
import { FileCertSource, SecretCertSource, type CertSource } from '../certs/manager.js';
import { serviceHosts } from '../certs/generate.js';
import { PublishedCa } from '../certs/published-ca.js';
import { CREDENTIALS_CA_CONFIGMAP_NAME } from '../contract/keys.js';
import { ClusterCache } from '../k8s/cluster-cache.js';
import { ServerVersionWatch } from '../k8s/server-version.js';
import { withServerVersion, type GlobalConfig, type ServerVersion } from '../config/schema.js';
import type { OnError } from './admission.js';
import { buildServer } from './server.js';
import type { V1Secret } from '@kubernetes/client-node';
import { JuicefsCli } from '../juicefs/cli.js';
import { credentialsFromSecrets, CredentialsError, metadataStatusProblem } from '../juicefs/volume.js';
import type { CredentialsMode } from '../contract/attributes.js';
import type { BrokerClientOptions } from '../mount/credentials.js';

export interface WebhookRunOptions {
  kubeconfig?: string;
  host: string;
  port: number;
  namespace: string;
  serviceName: string;
  webhookConfigName: string;
  /** ValidatingWebhookConfiguration to write the CA bundle into, beside the mutating one. */
  validatingWebhookConfigName?: string;
  certSecretName: string;
  certDir?: string;
  extraHosts: string[];
  secretNamespaces: string[];
  /** Admit a pod only once the controller has sealed each PVC's Secret copy (ADR 0010). */
  requireSecretCopySeal: boolean;
  /**
   * The validating webhook asks each marked Secret's metadata engine (`juicefs status`, with this binary) and
   * refuses the Secret when it does not answer; unset: format checks only.
   */
  validateSecretStatus?: { juicefsBinary: string };
  mountImage?: string;
  /** A volume's credentials mode when its PV / StorageClass sets none (ADR 0010). */
  defaultCredentials?: CredentialsMode;
  /**
   * The credential broker the injected fetch step asks. Its CA: the file's (read at start), else the bundle the
   * controller publishes in the ConfigMap `caConfigMapName` of `namespace` (watched). No CA: broker mode denied.
   */
  broker?: Omit<BrokerClientOptions, 'caPem'> & { caFile?: string; caConfigMapName?: string };
  /** PEM file of the CA that signs the API server's client certificate; unset: no client authentication. */
  clientCaFile?: string;
  /** Accepted client certificate CNs (empty: any the CA signed). */
  clientNames?: string[];
  onError: OnError;
  log: Logger;
}

export interface RunningWebhook {
  /** The port actually bound (useful with --port 0). */
  port: number;
  close(): Promise<void>;
}

export async function runWebhook(opts: WebhookRunOptions): Promise<RunningWebhook> {
  const { log } = opts;
  const clientAuth = opts.clientCaFile
    ? { ca: readFileSync(opts.clientCaFile, 'utf8'), names: opts.clientNames ?? [] }
    : undefined;
  const kubeConfig = loadKubeConfig(opts.kubeconfig);
  const cache = new ClusterCache({
    kubeConfig,
    secretNamespaces: opts.secretNamespaces.length ? opts.secretNamespaces : [opts.namespace],
    configNamespace: opts.namespace,
    requireSecretCopySeal: opts.requireSecretCopySeal,
    defaultCredentials: opts.defaultCredentials,
    log,
  });
  const brokerCaPem = opts.broker?.caFile ? readFileSync(opts.broker.caFile, 'utf8') : undefined;
  const publishedCa =
    opts.broker && !brokerCaPem
      ? new PublishedCa({
          kubeConfig,
          namespace: opts.namespace,
          name: opts.broker.caConfigMapName ?? CREDENTIALS_CA_CONFIGMAP_NAME,
          log,
        })
      : undefined;
  const broker = (): BrokerClientOptions | undefined => {
    const caPem = brokerCaPem ?? publishedCa?.caBundle;
    return opts.broker && caPem ? { url: opts.broker.url, image: opts.broker.image, caPem } : undefined;
  };
  const hosts = serviceHosts(opts.serviceName, opts.namespace, opts.extraHosts);
  const certs: CertSource = FileCertSource.usable(opts.certDir)
    ? new FileCertSource(opts.certDir, log)
    : new SecretCertSource({
        kubeConfig,
        namespace: opts.namespace,
        secretName: opts.certSecretName,
        webhookConfigName: opts.webhookConfigName,
        validatingWebhookConfigName: opts.validatingWebhookConfigName,
        hosts,
        validityDays: 365,
        renewBeforeDays: 30,
        checkIntervalMs: 10 * 60 * 1000,
        log,
      });
  // enableNativeSidecar left unset follows the API server's version, read now and rechecked.
  const serverVersion = new ServerVersionWatch(kubeConfig, log);
  // Caches start in the background: /readyz says when they have synced.
  const cacheStart = Promise.all([cache.start(), publishedCa?.start(), serverVersion.start()]).catch((err) =>
    log.error({ err: (err as Error).message }, 'caches failed to start'),
  );
  // One resolved object per (config, version) pair: admissions reuse it.
  let resolved: { from: GlobalConfig; version: ServerVersion | undefined; config: GlobalConfig } | undefined;
  const effectiveConfig = (): GlobalConfig => {
    const from = cache.globalConfig;
    const version = serverVersion.current;
    if (resolved?.from !== from || resolved.version !== version)
      resolved = { from, version, config: withServerVersion(from, version) };
    return resolved.config;
  };
  // Assigned once the certificate is there; the reload callback registered first reads it.
  // eslint-disable-next-line prefer-const
  let app: ReturnType<typeof buildServer> | undefined;
  const tls = await certs.start((next) => {
    // New connections use the new certificate; open ones finish with the old.
    (
      app?.server as unknown as { setSecureContext(o: { cert: string; key: string; ca?: string }): void }
    )?.setSecureContext({
      cert: next.cert,
      key: next.key,
      ...(clientAuth ? { ca: clientAuth.ca } : {}),
    });
  });
  const statusCli = opts.validateSecretStatus
    ? new JuicefsCli(opts.validateSecretStatus.juicefsBinary, log)
    : undefined;
  app = buildServer({
    view: cache,
    config: () => effectiveConfig(),
    ready: () => cache.synced && (publishedCa?.synced ?? true),
    readyDetail: () => ({
      config: cache.globalConfigStatus,
      nativeSidecar: effectiveConfig().enableNativeSidecar,
      serverVersion: serverVersion.current?.gitVersion,
    }),
    defaultMountImage: opts.mountImage,
    // The same jfs-sidecar image as the broker's fetch step (--credentials-image, $JFS_SIDECAR_IMAGE).
    projectImage: opts.broker?.image,
    broker,
    onError: opts.onError,
    log,
    tls,
    clientAuth,
    validation: {
      pvs: () => cache.pvs(),
      ...(statusCli && {
        secretStatus: async (secret: V1Secret) => {
          const text = Object.fromEntries(
            Object.entries({ ...secret.data }).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]),
          );
          for (const [k, v] of Object.entries(secret.stringData ?? {})) text[k] = v;
          try {
            return await metadataStatusProblem(statusCli, credentialsFromSecrets(text));
          } catch (err) {
            if (err instanceof CredentialsError) return err.message;
            throw err;
          }
        },
      }),
    },
  });
  await app.listen({ host: opts.host, port: opts.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  log.info({ port, secretNamespaces: opts.secretNamespaces }, 'webhook listening');
  let closing: Promise<void> | undefined;
  return {
    port,
    close: () =>
      (closing ??= (async () => {
        certs.stop();
        serverVersion.stop();
        await app.close(); // drains requests in flight
        await cacheStart;
        await cache.stop();
        await publishedCa?.stop();
      })()),
  };
}
