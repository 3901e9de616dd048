// Where the serving certificate comes from, and how it is kept fresh:
// - FileCertSource: tls.crt/tls.key in --cert-dir (cert-manager and the like),
//   re-read when the files change;
// - SecretCertSource: self-managed. The CA and serving certificate live in a
//   Secret that every replica shares; the CA bundle is written into the
//   MutatingWebhookConfiguration; renewal happens before expiry, with the old
//   CA kept in the bundle so replicas still serving the old certificate stay trusted.
//   The credential broker (ADR 0010) uses the same source with no webhook configuration: its CA bundle goes into a
//   ConfigMap instead (public, so that the webhook needs no read access to the Secret).
import fjp from 'fast-json-patch';
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1ConfigMap,
  type V1Secret,
} from '@kubernetes/client-node';
import { existsSync, readFileSync, unwatchFile, watchFile } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { isStatus, unlessNotFound } from '../k8s/errors.js';
import { bundleIsUsable, generateBundle, mergeCaBundle, type CertBundle } from './generate.js';

export interface ServingCert {
  cert: string;
  key: string;
  /** Self-managed only: the CA bundle clients trust now, and the one before the last rotation (if any). */
  caBundle?: string;
  previousCaBundle?: string;
}

export interface CertSource {
  /** Loads (or creates) the certificate; resolves with it. */
  start(onChange: (cert: ServingCert) => void): Promise<ServingCert>;
  stop(): void;
}

export const CERT_FILE = 'tls.crt';
export const KEY_FILE = 'tls.key';

export class FileCertSource implements CertSource {
  private files: string[] = [];
  constructor(
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  static usable(dir: string | undefined): dir is string {
    return !!dir && existsSync(path.join(dir, CERT_FILE)) && existsSync(path.join(dir, KEY_FILE));
  }

  private read(): ServingCert {
    return {
      cert: readFileSync(path.join(this.dir, CERT_FILE), 'utf8'),
      key: readFileSync(path.join(this.dir, KEY_FILE), 'utf8'),
    };
  }

  async start(onChange: (cert: ServingCert) => void): Promise<ServingCert> {
    const first = this.read();
    let last = first.cert;
    this.files = [CERT_FILE, KEY_FILE].map((f) => path.join(this.dir, f));
    for (const file of this.files) {
      watchFile(file, { interval: 5000 }, () => {
        try {
          const next = this.read();
          if (next.cert === last) return;
          last = next.cert;
          this.log.info({ dir: this.dir }, 'serving certificate changed on disk; reloading');
          onChange(next);
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'could not reload the certificate files');
        }
      });
    }
    return first;
  }

  stop(): void {
    for (const f of this.files) unwatchFile(f);
  }
}

/** What both kinds of webhook configuration share, as far as the CA bundle goes. */
interface WebhookConfig {
  metadata?: { resourceVersion?: string };
  webhooks?: { clientConfig: { caBundle?: string } }[];
}

export interface SecretCertOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  secretName: string;
  /** MutatingWebhookConfiguration whose webhooks get the CA bundle; undefined to leave it alone. */
  webhookConfigName?: string;
  /** ValidatingWebhookConfiguration whose webhooks get the CA bundle too; undefined to leave it alone. */
  validatingWebhookConfigName?: string;
  /** ConfigMap (same namespace) that gets the CA bundle as `ca.crt` (and the previous one); undefined: none. */
  caConfigMapName?: string;
  /** Common name of the generated CA (default the webhook's). */
  caName?: string;
  hosts: string[];
  validityDays: number;
  renewBeforeDays: number;
  checkIntervalMs: number;
  log: Logger;
}

const KEYS = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  cert: CERT_FILE,
  key: KEY_FILE,
  caBundle: 'ca-bundle.crt',
  previousCaBundle: 'previous-ca-bundle.crt',
} as const;
/** Keys of the CA ConfigMap (caConfigMapName). */
export const CA_CONFIGMAP_KEYS = { caBundle: 'ca.crt', previousCaBundle: 'previous-ca.crt' } as const;
const DAY_MS = 24 * 3600 * 1000;

function decodeSecret(
  secret: V1Secret | undefined,
): (CertBundle & { caBundle?: string; previousCaBundle?: string }) | undefined {
  const d = secret?.data;
  if (!d || !d[KEYS.caCert] || !d[KEYS.caKey] || !d[KEYS.cert] || !d[KEYS.key]) return undefined;
  const dec = (k: string) => Buffer.from(d[k], 'base64').toString('utf8');
  return {
    caCert: dec(KEYS.caCert),
    caKey: dec(KEYS.caKey),
    cert: dec(KEYS.cert),
    key: dec(KEYS.key),
    caBundle: d[KEYS.caBundle] ? dec(KEYS.caBundle) : undefined,
    previousCaBundle: d[KEYS.previousCaBundle] ? dec(KEYS.previousCaBundle) : undefined,
  };
}

export class SecretCertSource implements CertSource {
  private readonly core: CoreV1Api;
  private readonly admission: AdmissionregistrationV1Api;
  private timer: NodeJS.Timeout | undefined;
  private current: string | undefined;

  constructor(private readonly opts: SecretCertOptions) {
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.admission = opts.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
  }

  async start(onChange: (cert: ServingCert) => void): Promise<ServingCert> {
    const first = await this.ensure();
    this.current = first.cert;
    this.timer = setInterval(() => {
      this.ensure()
        .then((next) => {
          if (next.cert === this.current) return;
          this.current = next.cert;
          this.opts.log.info('serving certificate rotated; reloading');
          onChange(next);
        })
        .catch((err) => this.opts.log.error({ err: (err as Error).message }, 'certificate check failed; will retry'));
    }, this.opts.checkIntervalMs);
    this.timer.unref();
    return first;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /**
   * Reads the shared Secret, renews it when due (racing replicas settle through resourceVersion), and publishes the CA
   * bundle.
   */
  async ensure(): Promise<ServingCert> {
    const { namespace, secretName: name, hosts, log } = this.opts;
    for (let attempt = 0; attempt < 5; attempt++) {
      const existing = await unlessNotFound(this.core.readNamespacedSecret({ name, namespace }));
      const stored = decodeSecret(existing);
      if (stored && bundleIsUsable(stored, hosts, this.opts.renewBeforeDays * DAY_MS)) {
        const caBundle = stored.caBundle ?? stored.caCert;
        await this.publishCaBundle(caBundle);
        await this.publishCaConfigMap(caBundle, stored.previousCaBundle);
        return { cert: stored.cert, key: stored.key, caBundle, previousCaBundle: stored.previousCaBundle };
      }
      log.info(
        { secret: `${namespace}/${name}`, reason: stored ? 'due for renewal or hosts changed' : 'absent' },
        'generating certificates',
      );
      const fresh = await generateBundle({ hosts, validityDays: this.opts.validityDays, caName: this.opts.caName });
      const previousCaBundle = stored ? (stored.caBundle ?? stored.caCert) : undefined;
      const caBundle = mergeCaBundle(fresh.caCert, previousCaBundle);
      const enc = (s: string) => Buffer.from(s, 'utf8').toString('base64');
      const body: V1Secret = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name,
          namespace,
          resourceVersion: existing?.metadata?.resourceVersion,
          labels: { 'app.kubernetes.io/name': 'jfs-sidecar' },
        },
        type: 'Opaque',
        data: {
          [KEYS.caCert]: enc(fresh.caCert),
          [KEYS.caKey]: enc(fresh.caKey),
          [KEYS.cert]: enc(fresh.cert),
          [KEYS.key]: enc(fresh.key),
          [KEYS.caBundle]: enc(caBundle),
          ...(previousCaBundle ? { [KEYS.previousCaBundle]: enc(previousCaBundle) } : {}),
        },
      };
      try {
        if (existing) await this.core.replaceNamespacedSecret({ name, namespace, body });
        else await this.core.createNamespacedSecret({ namespace, body });
      } catch (err) {
        // Another replica got there first: use what it wrote.
        if (isStatus(err, 409)) continue;
        throw err;
      }
      await this.publishCaBundle(caBundle);
      await this.publishCaConfigMap(caBundle, previousCaBundle);
      return { cert: fresh.cert, key: fresh.key, caBundle, previousCaBundle };
    }
    throw new Error(`could not settle the certificate Secret ${namespace}/${name} after 5 attempts`);
  }

  /** The CA bundle (public) in a ConfigMap beside the Secret, for clients' configuration (the webhook's injection). */
  private async publishCaConfigMap(caBundle: string, previousCaBundle: string | undefined): Promise<void> {
    const name = this.opts.caConfigMapName;
    if (!name) return;
    const { namespace } = this.opts;
    const data: Record<string, string> = {
      [CA_CONFIGMAP_KEYS.caBundle]: caBundle,
      ...(previousCaBundle ? { [CA_CONFIGMAP_KEYS.previousCaBundle]: previousCaBundle } : {}),
    };
    for (let attempt = 0; attempt < 5; attempt++) {
      const existing = await unlessNotFound(this.core.readNamespacedConfigMap({ name, namespace }));
      if (existing && JSON.stringify(existing.data ?? {}) === JSON.stringify(data)) return;
      const body: V1ConfigMap = {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: {
          name,
          namespace,
          resourceVersion: existing?.metadata?.resourceVersion,
          labels: { 'app.kubernetes.io/name': 'jfs-sidecar' },
        },
        data,
      };
      try {
        if (existing) await this.core.replaceNamespacedConfigMap({ name, namespace, body });
        else await this.core.createNamespacedConfigMap({ namespace, body });
        this.opts.log.info({ configMap: `${namespace}/${name}` }, 'CA bundle published');
        return;
      } catch (err) {
        // Another replica wrote in between: look again.
        if (!isStatus(err, 409)) throw err;
      }
    }
    throw new Error(`could not write the CA bundle into ConfigMap ${namespace}/${name} after 5 attempts`);
  }

  private async publishCaBundle(caBundle: string): Promise<void> {
    const { webhookConfigName: mutating, validatingWebhookConfigName: validating } = this.opts;
    const a = this.admission;
    if (mutating)
      await this.writeCaBundle(caBundle, 'MutatingWebhookConfiguration', mutating, {
        read: (name) => a.readMutatingWebhookConfiguration({ name }),
        patch: (name, body) =>
          a.patchMutatingWebhookConfiguration(
            { name, body },
            setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
          ),
      });
    if (validating)
      await this.writeCaBundle(caBundle, 'ValidatingWebhookConfiguration', validating, {
        read: (name) => a.readValidatingWebhookConfiguration({ name }),
        patch: (name, body) =>
          a.patchValidatingWebhookConfiguration(
            { name, body },
            setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
          ),
      });
  }

  /** The bundle into every webhook of one configuration, by a JSON patch diffed from it and guarded by its version. */
  private async writeCaBundle<C extends WebhookConfig>(
    caBundle: string,
    kind: string,
    name: string,
    api: { read(name: string): Promise<C>; patch(name: string, body: object[]): Promise<unknown> },
  ): Promise<void> {
    const encoded = Buffer.from(caBundle, 'utf8').toString('base64');
    for (let attempt = 0; attempt < 5; attempt++) {
      const config = await unlessNotFound(api.read(name));
      if (!config) {
        this.opts.log.warn({ name }, `${kind} not found; caBundle not written`);
        return;
      }
      const webhooks = config.webhooks ?? [];
      if (webhooks.every((w) => w.clientConfig.caBundle === encoded)) return;
      const wanted = {
        webhooks: webhooks.map((w) => ({ ...w, clientConfig: { ...w.clientConfig, caBundle: encoded } })),
      };
      // A concurrent writer (another replica) makes the version test fail, and we look again.
      const ops = [
        { op: 'test', path: '/metadata/resourceVersion', value: config.metadata?.resourceVersion },
        ...fjp.compare({ webhooks }, wanted),
      ];
      try {
        await api.patch(name, ops);
        this.opts.log.info({ name, webhooks: webhooks.length }, `caBundle written into the ${kind}`);
        return;
      } catch (err) {
        // 422: the resourceVersion test failed; 409: a conflict. Either way someone else wrote in between.
        if (!isStatus(err, 422, 409)) throw err;
      }
    }
    throw new Error(`could not write the caBundle into ${kind} ${name} after 5 attempts`);
  }
}
