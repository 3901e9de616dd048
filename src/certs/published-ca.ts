// The CA bundle a self-managed certificate's owner publishes in a ConfigMap (SecretCertSource with caConfigMapName),
// as its clients' configuration reads it: an informer of that one ConfigMap, so a rotation reaches them without a
// restart and they need no read access to the Secret with the CA's key (the webhook injects the credential broker's
// CA this way, ADR 0010).
import { CoreV1Api, type KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { ResilientInformer } from '../k8s/informer.js';
import { CA_CONFIGMAP_KEYS } from './manager.js';
import { splitPem } from './generate.js';

export class PublishedCa {
  private readonly informer: ResilientInformer<V1ConfigMap>;

  constructor(private readonly opts: { kubeConfig: KubeConfig; namespace: string; name: string; log: Logger }) {
    const core = opts.kubeConfig.makeApiClient(CoreV1Api);
    const fieldSelector = `metadata.name=${opts.name}`;
    this.informer = new ResilientInformer({
      kubeConfig: opts.kubeConfig,
      log: opts.log,
      path: `/api/v1/namespaces/${opts.namespace}/configmaps`,
      list: () => core.listNamespacedConfigMap({ namespace: opts.namespace, fieldSelector }),
      fieldSelector,
    });
  }

  start(): Promise<void> {
    return this.informer.start();
  }

  stop(): Promise<void> {
    return this.informer.stop();
  }

  get synced(): boolean {
    return this.informer.synced;
  }

  /** The current bundle's PEM, or undefined while none is published (or it holds no certificate). */
  get caBundle(): string | undefined {
    return this.pem(CA_CONFIGMAP_KEYS.caBundle);
  }

  /** The bundle before the last rotation, if any. */
  get previousCaBundle(): string | undefined {
    return this.pem(CA_CONFIGMAP_KEYS.previousCaBundle);
  }

  private pem(key: string): string | undefined {
    const text = this.informer.get(this.opts.name, this.opts.namespace)?.data?.[key];
    return text && splitPem(text).length ? text : undefined;
  }
}
