// The readiness gate's first value (ADR 0017): a pod admitted with the upgrade gate is not Ready until its
// condition is True, so every controller replica (not only the leader) sets it True on pods that have none
// yet. Only an absent condition is written: False belongs to the upgrader (a swap under way, or one that
// failed), and the patch's resourceVersion test keeps a replica with a stale cache from overwriting it.
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { LABEL_INJECTION_DONE } from '../contract/keys.js';
import { isStatus } from '../k8s/errors.js';
import { describeError, ResilientInformer } from '../k8s/informer.js';
import { gatePatch } from '../upgrade/patches.js';
import { UPGRADE_READY_CONDITION } from '../upgrade/types.js';

/** Whether a pod waits for its first gate value: it has the gate and nobody has set the condition. */
export function needsFirstGate(pod: V1Pod): boolean {
  if (pod.metadata?.deletionTimestamp || ['Succeeded', 'Failed'].includes(pod.status?.phase ?? '')) return false;
  if (!(pod.spec?.readinessGates ?? []).some((g) => g.conditionType === UPGRADE_READY_CONDITION)) return false;
  return !(pod.status?.conditions ?? []).some((c) => c.type === UPGRADE_READY_CONDITION);
}

export class UpgradeGateKeeper {
  private readonly informer: ResilientInformer<V1Pod>;
  private readonly core: CoreV1Api;
  private readonly inFlight = new Set<string>();

  constructor(private readonly opts: { kubeConfig: KubeConfig; log: Logger }) {
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    const labelSelector = `${LABEL_INJECTION_DONE}=true`;
    this.informer = new ResilientInformer<V1Pod>({
      kubeConfig: opts.kubeConfig,
      path: '/api/v1/pods',
      list: () => this.core.listPodForAllNamespaces({ labelSelector }),
      labelSelector,
      log: opts.log,
    });
    this.informer.on('add', (p) => this.seed(p));
    this.informer.on('update', (p) => this.seed(p));
  }

  async start(): Promise<void> {
    await this.informer.start();
    for (const p of this.informer.list()) this.seed(p);
  }

  async stop(): Promise<void> {
    await this.informer.stop();
  }

  private seed(pod: V1Pod): void {
    if (!needsFirstGate(pod)) return;
    const key = pod.metadata!.uid!;
    if (this.inFlight.has(key)) return;
    this.inFlight.add(key);
    const ops = gatePatch(pod, true, 'Admitted', 'no client swap under way', new Date());
    this.core
      .patchNamespacedPodStatus(
        { name: pod.metadata!.name!, namespace: pod.metadata!.namespace!, body: ops },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      )
      .catch((err) => {
        if (isStatus(err, 404)) return;
        // 422/409: the pod moved on meanwhile (its update may have come while this write was in flight).
        if (!isStatus(err, 409, 422))
          this.opts.log.warn(
            { pod: `${pod.metadata?.namespace}/${pod.metadata?.name}`, err: describeError(err) },
            'gate',
          );
        const retry = () => {
          const now = this.informer.get(pod.metadata!.name!, pod.metadata!.namespace);
          if (now) this.seed(now);
        };
        setTimeout(retry, 500).unref();
      })
      .finally(() => this.inFlight.delete(key));
  }
}
