// Mount Pod mode on one node: NodePublishVolume finds or creates the PV's
// Mount Pod (reused while its settings hash matches), records the target as a
// reference annotation, waits for the mount, and bind-mounts it into the
// target; NodeUnpublishVolume drops the reference and deletes the Mount Pod
// at zero references.
import {
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Pod,
} from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { parseGlobalConfig } from '../config/schema.js';
import { parseDuration } from '../contract/duration.js';
import {
  ATTR,
  CONFIG_MAP_KEY,
  CONFIG_MAP_NAME,
  MOUNT_POD_ANN_DELETE_AT,
  MOUNT_POD_ANN_DELETE_DELAY,
  MOUNT_POD_APP_VALUE,
  MOUNT_POD_LABEL_APP,
} from '../contract/keys.js';
import { secretCopyData, summariseSecret } from '../contract/secret-copy.js';
import { Code, CsiError } from '../csi/server.js';
import { isStatus, unlessNotFound } from '../k8s/errors.js';
import type { ResolvedVolume } from '../inject/types.js';
import { isJuicefsMount, mountAt } from '../juicefs/mounts.js';
import { KeyedLock } from '../util/keyed-lock.js';
import { bindMount } from './bind.js';
import { planMountPod, referenceKey, referencesOf } from './mount-pod.js';
import { unmountTarget } from './node-service.js';

export interface MountPodManagerOptions {
  kubeConfig: KubeConfig;
  nodeName: string;
  /** Namespace of Mount Pods, their Secrets and the global ConfigMap. */
  namespace: string;
  defaultMountImage?: string;
  readyTimeoutMs?: number;
  log: Logger;
}

export interface PublishRequest {
  volumeId: string;
  targetPath: string;
  readOnly: boolean;
  volumeContext: Record<string, string>;
  mountFlags: string[];
  secrets: Record<string, string>;
}

/** A JSON Pointer token (RFC 6901). */
const pointer = (key: string) => key.replaceAll('~', '~0').replaceAll('/', '~1');

export class MountPodManager {
  private readonly core: CoreV1Api;
  // One publish/unpublish per volume at a time on this node: they share the volume's Mount Pod.
  private readonly lock = new KeyedLock();

  constructor(private readonly opts: MountPodManagerOptions) {
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
  }

  private async globalConfig() {
    const cm = await unlessNotFound(this.core.readNamespacedConfigMap({ name: CONFIG_MAP_NAME, namespace: this.opts.namespace }));
    return parseGlobalConfig(cm?.data?.[CONFIG_MAP_KEY]);
  }

  /** The Mount Pod's Secret in our namespace, named by volume and content, created when absent. */
  private async ensureSecret(volumeId: string, secrets: Record<string, string>): Promise<{ name: string; data: Record<string, string> }> {
    const source = Object.fromEntries(Object.entries(secrets).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')]));
    const digest = createHash('sha256').update(JSON.stringify(Object.entries(source).sort())).digest('hex').slice(0, 8);
    const name = `juicefs-${volumeId}`.slice(0, 230).replace(/[^a-z0-9.-]/g, '-') + `-${digest}-secret`;
    const data = secretCopyData(source);
    try {
      await this.core.createNamespacedSecret({
        namespace: this.opts.namespace,
        body: { metadata: { name, namespace: this.opts.namespace, labels: { [MOUNT_POD_LABEL_APP]: MOUNT_POD_APP_VALUE } }, type: 'Opaque', data },
      });
    } catch (err) {
      if (!isStatus(err, 409)) throw err; // same name, same content
    }
    return { name, data: source };
  }

  async publish(req: PublishRequest): Promise<void> {
    // Anything already mounted at the target is this publish done before (the CO retries).
    if (mountAt(req.targetPath)) return;
    if (!req.secrets.metaurl) throw new CsiError(Code.INVALID_ARGUMENT, 'secrets: key "metaurl" is missing (set nodePublishSecretRef on the PV)');
    await this.lock.run(req.volumeId, async () => {
      const secret = await this.ensureSecret(req.volumeId, req.secrets);
      const volume: ResolvedVolume = {
        podVolumeName: 'data',
        pvcName: '',
        pvcLabels: {},
        pvcAnnotations: {},
        pvName: req.volumeId,
        subdir: req.volumeContext[ATTR.subPath],
        readOnly: req.readOnly,
        attributes: req.volumeContext,
        mountOptions: req.mountFlags,
        secret: { name: secret.name, ...summariseSecret(secret.data) },
      };
      let plan;
      try {
        plan = planMountPod({
          nodeName: this.opts.nodeName,
          namespace: this.opts.namespace,
          volume,
          options: { mode: 'sidecar', config: await this.globalConfig(), defaultMountImage: this.opts.defaultMountImage },
        });
      } catch (err) {
        throw new CsiError(Code.INVALID_ARGUMENT, (err as Error).message);
      }
      const name = plan.pod.metadata!.name!;
      const key = referenceKey(req.targetPath);
      await this.addReference(plan.pod, key, req.targetPath);
      await this.waitReady(name, plan.mountPoint);
      await bindMount(plan.mountPoint, req.targetPath, req.readOnly);
      this.opts.log.info({ volume: req.volumeId, target: req.targetPath, mountPod: name }, 'published');
    });
  }

  private async addReference(pod: V1Pod, key: string, target: string): Promise<void> {
    const name = pod.metadata!.name!;
    const namespace = this.opts.namespace;
    for (let attempt = 0; attempt < 30; attempt++) {
      const existing = await unlessNotFound(this.core.readNamespacedPod({ name, namespace }));
      if (existing?.metadata?.deletionTimestamp) {
        // The previous Mount Pod is on its way out: wait, then make a new one.
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      if (!existing) {
        const body = structuredClone(pod);
        body.metadata!.annotations = { ...body.metadata!.annotations, [key]: target };
        try {
          await this.core.createNamespacedPod({ namespace, body });
          this.opts.log.info({ mountPod: name }, 'Mount Pod created');
          return;
        } catch (err) {
          if (isStatus(err, 409)) continue;
          throw err;
        }
      }
      const annotations = existing.metadata?.annotations;
      const pendingDelete = annotations?.[MOUNT_POD_ANN_DELETE_AT] !== undefined;
      if (annotations?.[key] === target && !pendingDelete) return;
      const ops: object[] = [
        { op: 'test', path: '/metadata/resourceVersion', value: existing.metadata!.resourceVersion },
        annotations ? { op: 'add', path: `/metadata/annotations/${pointer(key)}`, value: target } : { op: 'add', path: '/metadata/annotations', value: { [key]: target } },
      ];
      // A new reference within the delete delay keeps the Mount Pod.
      if (pendingDelete) ops.push({ op: 'remove', path: `/metadata/annotations/${pointer(MOUNT_POD_ANN_DELETE_AT)}` });
      try {
        await this.patchPod(name, ops);
        return;
      } catch (err) {
        if (!isStatus(err, 422, 409)) throw err;
      }
    }
    throw new CsiError(Code.ABORTED, `could not add a reference to Mount Pod ${name}`);
  }

  private async waitReady(name: string, mountPoint: string): Promise<void> {
    const deadline = Date.now() + (this.opts.readyTimeoutMs ?? 120_000);
    for (;;) {
      const pod = await this.core.readNamespacedPod({ name, namespace: this.opts.namespace }).catch(() => undefined);
      const ready = pod?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      if (ready && isJuicefsMount(mountPoint)) return;
      if (Date.now() > deadline) throw new CsiError(Code.DEADLINE_EXCEEDED, `Mount Pod ${name} not ready (mount at ${mountPoint}) in time`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** The Mount Pods of this node. */
  private async podsOnNode(): Promise<V1Pod[]> {
    const list = await this.core.listNamespacedPod({
      namespace: this.opts.namespace,
      labelSelector: `${MOUNT_POD_LABEL_APP}=${MOUNT_POD_APP_VALUE}`,
      fieldSelector: `spec.nodeName=${this.opts.nodeName}`,
    });
    return list.items;
  }

  /** A JSON patch of a Mount Pod; guard it with a `test` op where a concurrent writer matters. */
  private async patchPod(name: string, ops: object[]): Promise<void> {
    await this.core.patchNamespacedPod({ name, namespace: this.opts.namespace, body: ops }, setHeaderOptions('Content-Type', PatchStrategy.JsonPatch));
  }

  private async deletePod(name: string): Promise<void> {
    await unlessNotFound(this.core.deleteNamespacedPod({ name, namespace: this.opts.namespace }));
  }

  /** Deletes Mount Pods of this node whose delete delay has run out with still no reference. */
  async sweep(now = Date.now()): Promise<void> {
    for (const pod of await this.podsOnNode()) {
      const at = pod.metadata?.annotations?.[MOUNT_POD_ANN_DELETE_AT];
      if (!at || referencesOf(pod).length > 0 || Date.parse(at) > now) continue;
      const volumeId = pod.metadata?.labels?.['volume-id'] ?? pod.metadata!.name!;
      await this.lock.run(volumeId, async () => {
        // Looked at again under the volume's lock: a publish may have just taken it back.
        const fresh = await unlessNotFound(this.core.readNamespacedPod({ name: pod.metadata!.name!, namespace: this.opts.namespace }));
        if (fresh?.metadata?.annotations?.[MOUNT_POD_ANN_DELETE_AT] !== at || referencesOf(fresh).length > 0) return;
        await this.deletePod(pod.metadata!.name!);
        this.opts.log.info({ mountPod: pod.metadata!.name }, 'delete delay over: Mount Pod deleted');
      });
    }
  }

  /** Runs sweep() periodically. */
  startSweeping(intervalMs = 2000): () => void {
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      this.sweep()
        .catch((err) => this.opts.log.warn({ err: (err as Error).message }, 'sweep failed'))
        .finally(() => (busy = false));
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** Unmounts the target, drops its reference, and deletes Mount Pods left with none. */
  async unpublish(volumeId: string, target: string): Promise<void> {
    await unmountTarget(target);
    await this.lock.run(volumeId, async () => {
      const key = referenceKey(target);
      for (const pod of await this.podsOnNode()) {
        if (pod.metadata?.annotations?.[key] !== target) continue;
        const name = pod.metadata!.name!;
        const remaining = referencesOf(pod).filter((t) => t !== target);
        const delayMs = parseDuration(pod.metadata?.annotations?.[MOUNT_POD_ANN_DELETE_DELAY] ?? '') ?? 0;
        if (remaining.length === 0 && delayMs <= 0) {
          await this.deletePod(name);
          this.opts.log.info({ mountPod: name }, 'last reference gone: Mount Pod deleted');
          continue;
        }
        const ops: object[] = [
          { op: 'test', path: `/metadata/annotations/${pointer(key)}`, value: target },
          { op: 'remove', path: `/metadata/annotations/${pointer(key)}` },
        ];
        if (remaining.length === 0) {
          // juicefs/mount-delete-delay: keep it a while for a pod that comes back; the sweep deletes it after.
          const at = new Date(Date.now() + delayMs).toISOString();
          ops.push({ op: 'add', path: `/metadata/annotations/${pointer(MOUNT_POD_ANN_DELETE_AT)}`, value: at });
          this.opts.log.info({ mountPod: name, deleteAt: at }, 'last reference gone: Mount Pod deletion delayed');
        }
        await this.patchPod(name, ops);
      }
    });
  }
}
