// The upgrade reconciler (leader only): informers on JuiceFSUpgrade objects and on each actuator's pods;
// on any change, and every tick while a swap is under way, each upgrade is planned (src/upgrade/plan.ts),
// its pods' steps run through their kind's actuator, and the status is written through the status
// subresource. Serial: one pass at a time, so a pod's step never runs twice at once.
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import { isStatus } from '../k8s/errors.js';
import { describeError, ResilientInformer } from '../k8s/informer.js';
import { podKey, type PodObservation } from '../upgrade/clients.js';
import { plan } from '../upgrade/plan.js';
import {
  ACTIVE_PHASES,
  STEPPED_PHASES,
  UPGRADE_GROUP,
  UPGRADE_PLURAL,
  UPGRADE_VERSION,
  type JuiceFSUpgrade,
  type PodUpgradeProgress,
  type UpgradeKind,
} from '../upgrade/types.js';
import { UpgradeStepFailed, type UpgradeActuator } from './upgrade-actuator.js';

export interface UpgradeReconcilerOptions {
  kubeConfig: KubeConfig;
  actuators: UpgradeActuator[];
  log: Logger;
  /** How often upgrades with a swap under way are looked at again (ms). */
  tickMs?: number;
  now?: () => Date;
  /** Pods whose upgrade ended, by kind and result (Succeeded, Failed), counted once their status is written. */
  outcomes?: Counter<'kind' | 'result'>;
}

const CRD = { group: UPGRADE_GROUP, version: UPGRADE_VERSION, plural: UPGRADE_PLURAL };

export class UpgradeReconciler {
  private readonly upgrades: ResilientInformer<JuiceFSUpgrade>;
  private readonly podInformers = new Map<UpgradeKind, ResilientInformer<V1Pod>>();
  private readonly actuators = new Map<UpgradeKind, UpgradeActuator>();
  private readonly custom: CustomObjectsApi;
  /** The last status we wrote, by name, with the resourceVersion it replaced (the informer may lag behind it). */
  private readonly written = new Map<string, { replaced: string; obj: JuiceFSUpgrade }>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private dirty = false;
  private stopped = false;
  private readonly now: () => Date;

  constructor(private readonly opts: UpgradeReconcilerOptions) {
    this.custom = opts.kubeConfig.makeApiClient(CustomObjectsApi);
    const core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.now = opts.now ?? (() => new Date());
    const log = opts.log;
    this.upgrades = new ResilientInformer<JuiceFSUpgrade>({
      kubeConfig: opts.kubeConfig,
      path: `/apis/${UPGRADE_GROUP}/${UPGRADE_VERSION}/${UPGRADE_PLURAL}`,
      list: async () => (await this.custom.listClusterCustomObject(CRD)) as KubernetesListObject<JuiceFSUpgrade>,
      log,
    });
    for (const a of opts.actuators) {
      this.actuators.set(a.kind, a);
      const { labelSelector, namespace } = a.pods;
      const informer = new ResilientInformer<V1Pod>({
        kubeConfig: opts.kubeConfig,
        path: namespace ? `/api/v1/namespaces/${namespace}/pods` : '/api/v1/pods',
        list: () =>
          namespace
            ? core.listNamespacedPod({ namespace, labelSelector })
            : core.listPodForAllNamespaces({ labelSelector }),
        labelSelector,
        log,
      });
      this.podInformers.set(a.kind, informer);
    }
    for (const inf of [this.upgrades, ...this.podInformers.values()] as ResilientInformer<never>[])
      for (const verb of ['add', 'update', 'delete'] as const) inf.on(verb, () => this.kick());
  }

  async start(): Promise<void> {
    await Promise.all([this.upgrades.start(), ...[...this.podInformers.values()].map((i) => i.start())]);
    this.opts.log.info({ kinds: [...this.actuators.keys()] }, 'upgrade reconciler started');
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    await Promise.all([this.upgrades.stop(), ...[...this.podInformers.values()].map((i) => i.stop())]);
  }

  /** Something changed: run a pass soon (changes arriving together make one pass). */
  private kick(delayMs = 50): void {
    this.dirty = true;
    if (this.running || this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.runPass(), delayMs);
  }

  private runPass(): void {
    this.timer = undefined;
    this.dirty = false;
    this.running = this.reconcileAll()
      .catch((err) => this.opts.log.error({ err: describeError(err) }, 'upgrade pass failed'))
      .then((busy) => {
        this.running = undefined;
        if (this.stopped) return;
        if (this.dirty) this.kick();
        else if (busy !== false) this.timer = setTimeout(() => this.runPass(), this.opts.tickMs ?? 1000);
      });
  }

  /** One pass over every upgrade; true when one has a swap under way (look again after a tick). */
  private async reconcileAll(): Promise<boolean> {
    let busy = false;
    const all = this.upgrades.list().map((u) => this.latest(u));
    // A pod under way in one upgrade is not started by another.
    const claimed = (except: string) =>
      new Set(
        all
          .filter((u) => u.metadata?.name !== except)
          .flatMap((u) => (u.status?.pods ?? []).filter((r) => ACTIVE_PHASES.includes(r.phase)).map(podKey)),
      );
    for (const u of all) {
      try {
        busy = (await this.reconcile(u, claimed(u.metadata!.name!))) || busy;
      } catch (err) {
        busy = true;
        this.opts.log.warn({ upgrade: u.metadata?.name, err: describeError(err) }, 'upgrade reconcile failed');
      }
    }
    return busy;
  }

  /** The informer's object, or the one we wrote when the informer has not seen our write yet. */
  private latest(u: JuiceFSUpgrade): JuiceFSUpgrade {
    const w = this.written.get(u.metadata!.name!);
    return w && w.replaced === u.metadata?.resourceVersion ? w.obj : u;
  }

  private async reconcile(upgrade: JuiceFSUpgrade, busyElsewhere: ReadonlySet<string>): Promise<boolean> {
    const name = upgrade.metadata!.name!;
    const actuator = this.actuators.get(upgrade.spec?.kind);
    if (!actuator) {
      const message = `no actuator for kind ${upgrade.spec?.kind} in this build`;
      if (upgrade.status?.message !== message)
        await this.writeStatus(upgrade, { ...upgrade.status, phase: 'Invalid', message });
      return false;
    }
    const podsByKey = new Map(
      this.podInformers
        .get(actuator.kind)!
        .list()
        .filter((p) => !p.metadata?.deletionTimestamp)
        .map((p) => [`${p.metadata!.namespace}/${p.metadata!.name}`, p]),
    );
    const observed = [...podsByKey.values()].map((p) => actuator.observe(p));
    const settingsImages = actuator.settingsImages
      ? (o: PodObservation) => {
          const pod = podsByKey.get(podKey(o));
          return pod ? actuator.settingsImages!(pod) : undefined;
        }
      : undefined;
    const result = plan({
      upgrade,
      pods: observed.filter((o) => !busyElsewhere.has(podKey(o))),
      settingsImages,
      now: this.now(),
    });
    const status = result.status;
    const records = status.pods ?? [];
    // The I/O steps of every started pod, side by side (maxUnavailable of them at most).
    const finished: PodUpgradeProgress[] = [...result.finished];
    await Promise.all(
      records
        .filter((r) => STEPPED_PHASES.includes(r.phase))
        .map(async (rec) => {
          const pod = podsByKey.get(podKey(rec));
          if (!pod) return;
          try {
            // Steps follow each other in one pass until one has to wait (or the swap is left to the kubelet).
            for (let n = 0; n < STEPPED_PHASES.length && STEPPED_PHASES.includes(rec.phase); n++) {
              const from = rec.phase;
              const change = await actuator.step(pod, rec, upgrade);
              Object.assign(rec, change);
              if ('message' in change && change.message === undefined) delete rec.message;
              if (rec.phase === from) break;
            }
          } catch (err) {
            if (!(err instanceof UpgradeStepFailed)) {
              rec.message = `retrying: ${describeError(err)}`;
              return;
            }
            Object.assign(rec, { phase: 'Failed', message: err.message, finishedAt: this.now().toISOString() });
            finished.push(rec);
          }
        }),
    );
    for (const rec of finished) {
      const pod = podsByKey.get(podKey(rec));
      if (pod)
        await actuator.finish(pod, rec).catch((err) => {
          rec.message = `${rec.message ? `${rec.message}; ` : ''}finishing: ${describeError(err)}`;
        });
    }
    // A step that failed in this pass stops the rollout now, not on the next pass.
    if (records.some((r) => r.phase === 'Failed') && status.phase !== 'Failed') {
      const again = plan({ upgrade: { ...upgrade, status }, pods: observed, settingsImages, now: this.now() }).status;
      Object.assign(status, {
        phase: again.phase,
        message: again.message,
        conditions: again.conditions,
        counts: again.counts,
      });
    }
    if (JSON.stringify(status) !== JSON.stringify(upgrade.status)) await this.writeStatus(upgrade, status);
    for (const rec of finished) this.opts.outcomes?.inc({ kind: actuator.kind, result: rec.phase });
    if (result.start.length) this.opts.log.info({ upgrade: name, started: result.start.map(podKey) }, 'pods started');
    return records.some((r) => ACTIVE_PHASES.includes(r.phase));
  }

  private async writeStatus(upgrade: JuiceFSUpgrade, status: JuiceFSUpgrade['status']): Promise<void> {
    const name = upgrade.metadata!.name!;
    let base = upgrade;
    for (let attempt = 0; ; attempt++) {
      try {
        const body: JuiceFSUpgrade = { ...base, status };
        const obj = (await this.custom.replaceClusterCustomObjectStatus({ ...CRD, name, body })) as JuiceFSUpgrade;
        this.written.set(name, { replaced: base.metadata!.resourceVersion!, obj });
        return;
      } catch (err) {
        if (isStatus(err, 404)) return;
        // The spec changed meanwhile (pause, abort): the records must still say what this pass did to the pods
        // (a drained gate, a patched image), so they go onto the newer object; the next pass replans on it.
        if (!isStatus(err, 409) || attempt >= 2) throw err;
        base = (await this.custom.getClusterCustomObject({ ...CRD, name })) as JuiceFSUpgrade;
        this.kick(100);
      }
    }
  }
}
