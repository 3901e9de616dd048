// Keeps, for each JuiceFS PVC in a namespace labelled for injection, a copy
// of its volume's Secret in the PVC's namespace (juicefs-<pvc>-secret, owned
// by the PVC), which the injected sidecar references. Level-triggered: every
// event and a periodic resync enqueue PVC keys; reconciling a key compares the
// desired copy with the stored one and writes only the difference.
import {
  CoreV1Api,
  type KubeConfig,
  type KubernetesObject,
  type V1Namespace,
  type V1PersistentVolume,
  type V1PersistentVolumeClaim,
  type V1Secret,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { namespaceMode } from '../config/options.js';
import { SECRET_COPY_LABEL } from '../contract/keys.js';
import { labelValue } from '../contract/names.js';
import { secretCopyData, secretCopyName } from '../contract/secret-copy.js';
import { unlessNotFound } from '../k8s/errors.js';
import { ResilientInformer } from '../k8s/informer.js';
import { VolumeInformers } from '../k8s/volume-informers.js';
import { sourceSecretOf } from '../resolve/resolve.js';

export interface SecretSyncOptions {
  kubeConfig: KubeConfig;
  /** Namespaces where the source Secrets live (as for the webhook). */
  secretNamespaces: string[];
  resyncMs?: number;
  log: Logger;
}

const key = (ns: string, name: string) => `${ns}/${name}`;

function sameData(a: Record<string, string> | undefined, b: Record<string, string>): boolean {
  const ka = Object.keys(a ?? {}).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a![k] === b[k]);
}

export class SecretSync {
  private readonly core: CoreV1Api;
  private readonly namespaces: ResilientInformer<V1Namespace>;
  private readonly volumes: VolumeInformers;
  private readonly queue = new Set<string>();
  private readonly retries = new Map<string, number>();
  private draining = false;
  private resync: NodeJS.Timeout | undefined;
  private started = false;

  constructor(private readonly opts: SecretSyncOptions) {
    const kc = opts.kubeConfig;
    this.core = kc.makeApiClient(CoreV1Api);
    const base = { kubeConfig: kc, log: opts.log };
    this.namespaces = new ResilientInformer({
      ...base,
      path: '/api/v1/namespaces',
      list: () => this.core.listNamespace(),
    });
    this.volumes = new VolumeInformers(opts);
    const onPvc = (pvc: V1PersistentVolumeClaim) => this.enqueue(key(pvc.metadata!.namespace!, pvc.metadata!.name!));
    this.volumes.pvcs.on('add', onPvc);
    this.volumes.pvcs.on('update', onPvc);
    const onPv = (pv: V1PersistentVolume) => {
      const ref = pv.spec?.claimRef;
      if (ref?.namespace && ref.name) this.enqueue(key(ref.namespace, ref.name));
    };
    this.volumes.pvs.on('add', onPv);
    this.volumes.pvs.on('update', onPv);
    const onNamespace = (ns: V1Namespace) => this.enqueueAll(ns.metadata?.name);
    this.namespaces.on('add', onNamespace);
    this.namespaces.on('update', onNamespace);
    for (const inf of this.volumes.secrets.values()) {
      inf.on('add', () => this.enqueueAll());
      inf.on('update', () => this.enqueueAll());
    }
  }

  private informers(): ResilientInformer<KubernetesObject>[] {
    return [this.namespaces, ...this.volumes.all()];
  }

  async start(): Promise<void> {
    await Promise.all(this.informers().map((i) => i.start()));
    this.started = true;
    this.enqueueAll();
    this.resync = setInterval(() => this.enqueueAll(), this.opts.resyncMs ?? 5 * 60_000);
    this.resync.unref();
  }

  async stop(): Promise<void> {
    if (this.resync) clearInterval(this.resync);
    await Promise.all(this.informers().map((i) => i.stop()));
  }

  private enqueueAll(namespace?: string): void {
    for (const pvc of this.volumes.pvcs.list(namespace))
      this.enqueue(key(pvc.metadata!.namespace!, pvc.metadata!.name!));
  }

  private enqueue(k: string): void {
    this.queue.add(k);
    if (this.started) void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.queue.size) {
        const [k] = this.queue;
        this.queue.delete(k);
        try {
          await this.reconcile(k);
          this.retries.delete(k);
        } catch (err) {
          const n = (this.retries.get(k) ?? 0) + 1;
          this.retries.set(k, n);
          const delay = Math.min(30_000, 200 * 2 ** n);
          this.opts.log.warn({ pvc: k, err: (err as Error).message, retryInMs: delay }, 'secret copy failed');
          setTimeout(() => this.enqueue(k), delay).unref();
        }
      }
    } finally {
      this.draining = false;
    }
  }

  /** Makes the copy for one PVC what it should be (present and equal, or absent). */
  async reconcile(k: string): Promise<void> {
    const [namespace, name] = k.split('/');
    const pvc = this.volumes.pvcs.get(name, namespace);
    if (!pvc) return; // deleted: the garbage collector removes the copy through its owner reference
    const copyName = secretCopyName(name);
    const wanted = namespaceMode(this.namespaces.get(namespace)) !== undefined;
    const ref = wanted
      ? sourceSecretOf(pvc, {
          getPv: (n) => this.volumes.pvs.get(n),
          getStorageClass: (n) => this.volumes.classes.get(n),
        })
      : undefined;
    const existing = await unlessNotFound(this.core.readNamespacedSecret({ name: copyName, namespace }));
    if (!ref) {
      if (existing?.metadata?.labels?.[SECRET_COPY_LABEL] !== undefined) {
        await this.core.deleteNamespacedSecret({ name: copyName, namespace });
        this.opts.log.info({ pvc: k }, 'secret copy removed');
      }
      return;
    }
    const source = this.volumes.getSecret(ref.namespace, ref.name);
    if (!source)
      throw new Error(`source Secret ${ref.namespace}/${ref.name} not found (or its namespace is not watched)`);
    const data = secretCopyData(source.data);
    const label = labelValue(`${ref.namespace}.${ref.name}`);
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: {
        name: copyName,
        namespace,
        labels: { [SECRET_COPY_LABEL]: label },
        ownerReferences: [
          {
            apiVersion: 'v1',
            kind: 'PersistentVolumeClaim',
            name,
            uid: pvc.metadata!.uid!,
            controller: true,
            blockOwnerDeletion: false,
          },
        ],
        resourceVersion: existing?.metadata?.resourceVersion,
      },
      data,
    };
    if (!existing) {
      await this.core.createNamespacedSecret({ namespace, body });
      this.opts.log.info({ pvc: k, secret: copyName, source: `${ref.namespace}/${ref.name}` }, 'secret copy created');
    } else if (existing.metadata?.labels?.[SECRET_COPY_LABEL] === undefined) {
      throw new Error(
        `Secret ${namespace}/${copyName} exists and is not a copy made by jfs-sidecar; not overwriting it`,
      );
    } else if (!sameData(existing.data, data) || existing.metadata?.ownerReferences?.[0]?.uid !== pvc.metadata!.uid) {
      await this.core.replaceNamespacedSecret({ name: copyName, namespace, body });
      this.opts.log.info({ pvc: k, secret: copyName }, 'secret copy updated');
    }
  }
}
