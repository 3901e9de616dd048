// Keeps, for each JuiceFS PVC in a namespace labelled for injection, a copy
// of its volume's Secret in the PVC's namespace (juicefs-<pvc>-secret, owned
// by the PVC), which the injected sidecar references, and seals it on the PVC
// (ADR 0010): the webhook admits a pod only when the seal verifies. Level-
// triggered: every event (the copies themselves are watched, so an edited copy
// is restored at once) and a periodic resync enqueue PVC keys; reconciling a
// key compares the desired copy with the stored one and writes only the
// difference. A Secret at the copy's name that the controller did not make is
// never adopted nor overwritten.
import {
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type CoreV1Event,
  type KubeConfig,
  type KubernetesObject,
  type V1Namespace,
  type V1PersistentVolume,
  type V1PersistentVolumeClaim,
  type V1Secret,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { namespaceMode } from '../config/options.js';
import { SECRET_COPY_LABEL, SECRET_COPY_SEAL_ANNOTATION } from '../contract/keys.js';
import { labelValue } from '../contract/names.js';
import {
  secretCopyData,
  secretCopyName,
  secretCopySeal,
  unfitSourceSecret,
  verifySecretCopySeal,
  type SealSubject,
} from '../contract/secret-copy.js';
import { unlessNotFound } from '../k8s/errors.js';
import { ResilientInformer } from '../k8s/informer.js';
import { VolumeInformers } from '../k8s/volume-informers.js';
import type { CredentialsMode } from '../contract/attributes.js';
import { credentialsOfPvc, sourceSecretOf } from '../resolve/resolve.js';

export interface SecretSyncOptions {
  kubeConfig: KubeConfig;
  /** Namespaces where the source Secrets live (as for the webhook). */
  secretNamespaces: string[];
  /** A volume's credentials mode when its PV / StorageClass sets none: no copy is made in broker mode (ADR 0010). */
  defaultCredentials?: CredentialsMode;
  resyncMs?: number;
  log: Logger;
}

const key = (ns: string, name: string) => `${ns}/${name}`;

/** The PVC (namespace/name) a copy belongs to, by its owner reference. */
function ownerKey(secret: V1Secret): string | undefined {
  const owner = secret.metadata?.ownerReferences?.find((o) => o.kind === 'PersistentVolumeClaim');
  return owner && secret.metadata?.namespace ? key(secret.metadata.namespace, owner.name) : undefined;
}

function sameData(a: Record<string, string> | undefined, b: Record<string, string>): boolean {
  const ka = Object.keys(a ?? {}).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a![k] === b[k]);
}

export class SecretSync {
  private readonly core: CoreV1Api;
  private readonly namespaces: ResilientInformer<V1Namespace>;
  private readonly volumes: VolumeInformers;
  /** The copies, cluster-wide, by their label: an edited or deleted copy is restored at once. */
  private readonly copies: ResilientInformer<V1Secret>;
  /** PVCs whose conflict has been reported (an Event once, not one per retry). */
  private readonly reported = new Set<string>();
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
    this.copies = new ResilientInformer({
      ...base,
      path: '/api/v1/secrets',
      labelSelector: SECRET_COPY_LABEL,
      list: () => this.core.listSecretForAllNamespaces({ labelSelector: SECRET_COPY_LABEL }),
    });
    const onCopy = (secret: V1Secret) => {
      const k = ownerKey(secret);
      if (k) this.enqueue(k);
    };
    this.copies.on('add', onCopy);
    this.copies.on('update', onCopy);
    this.copies.on('delete', onCopy);
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
    return [this.namespaces, this.copies, ...this.volumes.all()];
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

  /** Makes the copy for one PVC what it should be (present, equal and sealed, or absent). */
  async reconcile(k: string): Promise<void> {
    const [namespace, name] = k.split('/');
    // Read, not cached: the seal this loop wrote a moment ago must be seen, or the copy would look foreign.
    const pvc = await unlessNotFound(this.core.readNamespacedPersistentVolumeClaim({ name, namespace }));
    if (!pvc) return; // deleted: the garbage collector removes the copy through its owner reference
    const copyName = secretCopyName(name);
    const volumeView = {
      getPv: (n: string) => this.volumes.pvs.get(n),
      getStorageClass: (n: string) => this.volumes.classes.get(n),
      defaultCredentials: this.opts.defaultCredentials,
    };
    // Broker mode: the sidecar fetches its credentials from the controller, so no copy (and an earlier one goes).
    const wanted =
      namespaceMode(this.namespaces.get(namespace)) !== undefined && credentialsOfPvc(pvc, volumeView) !== 'broker';
    const ref = wanted ? sourceSecretOf(pvc, volumeView) : undefined;
    const existing = await unlessNotFound(this.core.readNamespacedSecret({ name: copyName, namespace }));
    const source = ref && this.volumes.getSecret(ref.namespace, ref.name);
    if (ref && !source)
      throw new Error(`source Secret ${ref.namespace}/${ref.name} not found (or its namespace is not watched)`);
    const unfit = ref && source && unfitSourceSecret({ ...ref, type: source.type, data: source.data });
    if (!ref || !source || unfit) {
      if (unfit) await this.report(pvc, 'SecretNotCopied', `${unfit}: no copy is made`);
      if (existing?.metadata?.labels?.[SECRET_COPY_LABEL] !== undefined) {
        await this.core.deleteNamespacedSecret({ name: copyName, namespace });
        this.opts.log.info({ pvc: k }, 'secret copy removed');
      }
      await this.writeSeal(pvc, undefined);
      return;
    }
    const subject: SealSubject = {
      sourceUid: source.metadata?.uid ?? '',
      namespace,
      pvcName: name,
      pvcUid: pvc.metadata!.uid!,
      copyName,
    };
    const sealedUid = verifySecretCopySeal(pvc.metadata?.annotations?.[SECRET_COPY_SEAL_ANNOTATION], subject);
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: {
        name: copyName,
        namespace,
        labels: { [SECRET_COPY_LABEL]: labelValue(`${ref.namespace}.${ref.name}`) },
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
      },
      data: secretCopyData(source.data),
      // Not even the user who can edit Secrets here can change its data; they can only delete it (ADR 0010).
      immutable: true,
    };
    const mine = existing !== undefined && existing.metadata?.uid === sealedUid;
    if (existing && !mine) {
      if (existing.metadata?.labels?.[SECRET_COPY_LABEL] === undefined && sealedUid === undefined) {
        // A Secret the controller never made sits at the copy's name: never adopt nor overwrite it, and leave the
        // PVC unsealed so that no pod is admitted with it.
        await this.writeSeal(pvc, undefined);
        await this.report(
          pvc,
          'SecretCopyConflict',
          `Secret ${namespace}/${copyName} exists and was not made by jfs-sidecar: it is neither adopted nor used; ` +
            'pods of this PVC are refused until it is deleted',
        );
        throw new Error(
          `Secret ${namespace}/${copyName} exists and is not a copy made by jfs-sidecar; not adopting it`,
        );
      }
      // Labelled as a copy, or at the name of a copy this controller sealed, yet not the one it made (replaced,
      // forged, or from a version before seals): it goes, and a copy of the controller's own takes its place.
      await this.deleteCopy(existing);
      await this.report(
        pvc,
        'SecretCopyReplaced',
        `Secret ${namespace}/${copyName} was not the copy jfs-sidecar made: replaced`,
      );
    } else if (existing && (!sameData(existing.data, body.data!) || existing.immutable !== true)) {
      // The copy is immutable (its data cannot be edited, not even by the controller): new data is a new copy.
      await this.deleteCopy(existing);
      this.opts.log.info({ pvc: k, secret: copyName }, 'secret copy renewed (source changed)');
    } else if (
      existing &&
      (existing.metadata?.labels?.[SECRET_COPY_LABEL] !== body.metadata!.labels![SECRET_COPY_LABEL] ||
        existing.metadata?.ownerReferences?.length !== 1 ||
        existing.metadata.ownerReferences[0].uid !== pvc.metadata!.uid)
    ) {
      // Someone stripped the label or the owner (metadata stays mutable): put them back.
      body.metadata!.resourceVersion = existing.metadata?.resourceVersion;
      body.metadata!.uid = existing.metadata?.uid;
      await this.core.replaceNamespacedSecret({ name: copyName, namespace, body });
      this.opts.log.info({ pvc: k, secret: copyName }, 'secret copy restored');
      this.reported.delete(k);
      return;
    }
    if (!mine || existing.immutable !== true || !sameData(existing.data, body.data!)) {
      const created = await this.core.createNamespacedSecret({ namespace, body });
      await this.writeSeal(pvc, secretCopySeal(subject, created.metadata!.uid!));
      this.opts.log.info({ pvc: k, secret: copyName, source: `${ref.namespace}/${ref.name}` }, 'secret copy created');
    }
    this.reported.delete(k);
  }

  /** Deletes exactly this object (uid precondition): never a Secret that took its place meanwhile. */
  private async deleteCopy(existing: V1Secret): Promise<void> {
    await unlessNotFound(
      this.core.deleteNamespacedSecret({
        name: existing.metadata!.name!,
        namespace: existing.metadata!.namespace!,
        body: { preconditions: { uid: existing.metadata!.uid! } },
      }),
    );
  }

  /** Sets (or, with undefined, removes) the seal annotation on the PVC when it differs. */
  private async writeSeal(pvc: V1PersistentVolumeClaim, seal: string | undefined): Promise<void> {
    if (pvc.metadata?.annotations?.[SECRET_COPY_SEAL_ANNOTATION] === seal) return;
    await this.core.patchNamespacedPersistentVolumeClaim(
      {
        name: pvc.metadata!.name!,
        namespace: pvc.metadata!.namespace!,
        body: { metadata: { annotations: { [SECRET_COPY_SEAL_ANNOTATION]: seal ?? null } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  /** A Warning Event on the PVC (once per PVC until its copy is right) and a log line. */
  private async report(pvc: V1PersistentVolumeClaim, reason: string, message: string): Promise<void> {
    const namespace = pvc.metadata!.namespace!;
    const k = key(namespace, pvc.metadata!.name!);
    this.opts.log.warn({ pvc: k, reason }, message);
    if (this.reported.has(k)) return;
    this.reported.add(k);
    const now = new Date();
    const event: CoreV1Event = {
      metadata: { generateName: `${pvc.metadata!.name}.`, namespace },
      involvedObject: {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        name: pvc.metadata!.name,
        namespace,
        uid: pvc.metadata!.uid,
      },
      reason,
      message,
      type: 'Warning',
      source: { component: 'jfs-sidecar-controller' },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    await this.core
      .createNamespacedEvent({ namespace, body: event })
      .catch((err: Error) => this.opts.log.warn({ pvc: k, err: err.message }, 'event not recorded'));
  }
}
