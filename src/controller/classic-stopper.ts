// The classic-placement stopper's shell (the decision is ./classic-stop.ts):
// an informer of injected pods that are Running with restartPolicy Never or
// OnFailure; when a pod's apps are done, it execs STOP_COMMAND in each of its
// running classic sidecars. The sidecar's entrypoint then stops as on any
// SIGTERM (ADR 0013): no file is open, so it exits 0 in about a second and the
// pod completes.
import { CoreV1Api, Exec, type KubeConfig, type V1Pod, type V1Status } from '@kubernetes/client-node';
import { PassThrough } from 'node:stream';
import type { Logger } from 'pino';
import { LABEL_INJECTION_DONE } from '../contract/keys.js';
import { ResilientInformer } from '../k8s/informer.js';
import { sidecarsToStop, STOP_COMMAND } from './classic-stop.js';

export interface ClassicStopperOptions {
  kubeConfig: KubeConfig;
  log: Logger;
  /** A sidecar still running this long after its stop was sent gets it again. */
  retryMs?: number;
  /** How long one exec may take. */
  execTimeoutMs?: number;
}

export class ClassicStopper {
  private readonly informer: ResilientInformer<V1Pod>;
  /** `<pod uid>/<container>` → when its stop was last sent. */
  private readonly sent = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private readonly retryMs: number;

  constructor(private readonly opts: ClassicStopperOptions) {
    const core = opts.kubeConfig.makeApiClient(CoreV1Api);
    const labelSelector = `${LABEL_INJECTION_DONE}=true`;
    // Only pods whose sidecar can need it: a Running pod that does not restart its apps for ever.
    const fieldSelector = 'status.phase=Running,spec.restartPolicy!=Always';
    this.informer = new ResilientInformer<V1Pod>({
      kubeConfig: opts.kubeConfig,
      path: '/api/v1/pods',
      list: () => core.listPodForAllNamespaces({ labelSelector, fieldSelector }),
      labelSelector,
      fieldSelector,
      log: opts.log,
    });
    this.retryMs = opts.retryMs ?? 10_000;
  }

  async start(): Promise<void> {
    this.informer.on('add', (pod) => this.consider(pod));
    this.informer.on('update', (pod) => this.consider(pod));
    this.informer.on('delete', (pod) => this.forget(pod));
    await this.informer.start();
    // An exec that failed (the API server or the kubelet briefly away) is tried again; the pod may not change.
    this.timer = setInterval(() => {
      for (const pod of this.informer.list()) this.consider(pod);
    }, this.retryMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.informer.stop();
  }

  private forget(pod: V1Pod): void {
    const prefix = `${pod.metadata?.uid}/`;
    for (const key of this.sent.keys()) if (key.startsWith(prefix)) this.sent.delete(key);
  }

  private consider(pod: V1Pod): void {
    const now = Date.now();
    for (const container of sidecarsToStop(pod)) {
      const key = `${pod.metadata?.uid}/${container}`;
      const last = this.sent.get(key);
      if (last !== undefined && now - last < this.retryMs) continue;
      this.sent.set(key, now);
      void this.sendStop(pod, container);
    }
  }

  private async sendStop(pod: V1Pod, container: string): Promise<void> {
    const namespace = pod.metadata!.namespace!;
    const name = pod.metadata!.name!;
    const log = this.opts.log.child({ pod: `${namespace}/${name}`, container });
    const t0 = Date.now();
    const stderr = new PassThrough();
    let err = '';
    stderr.on('data', (d: Buffer) => (err += d.toString()));
    try {
      const status = await new Promise<V1Status>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('exec timed out')), this.opts.execTimeoutMs ?? 15_000);
        new Exec(this.opts.kubeConfig)
          .exec(namespace, name, container, STOP_COMMAND, null, stderr, null, false, (s) => {
            clearTimeout(timer);
            resolve(s);
          })
          .catch((e: unknown) => {
            clearTimeout(timer);
            reject(e instanceof Error ? e : new Error(describe(e)));
          });
      });
      if (status.status !== 'Success') throw new Error(`${status.message ?? status.status} ${err}`.trim());
      log.info({ ms: Date.now() - t0 }, 'apps done: classic sidecar sent SIGTERM');
    } catch (e) {
      // Tried again after retryMs while the sidecar still runs (consider()).
      log.warn({ err: (e as Error).message }, 'could not stop the classic sidecar');
    }
  }
}

/** What a failed exec says: the WebSocket library rejects with an event (its `message`, or an `error` inside). */
function describe(e: unknown): string {
  if (typeof e !== 'object' || e === null) return String(e);
  const { message, error } = e as { message?: unknown; error?: unknown };
  if (typeof message === 'string' && message) return message;
  if (error instanceof Error) return error.message;
  return JSON.stringify(e);
}
