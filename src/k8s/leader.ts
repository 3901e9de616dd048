// Leader election through a coordination.k8s.io Lease, as client-go's
// leaderelection does it: take the Lease when it is free or expired, renew it
// well before it expires, and stop leading (the caller exits) when renewal
// fails past the deadline. Writes are guarded by resourceVersion.
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { isStatus, unlessNotFound } from './errors.js';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LeaderOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSec?: number;
  renewIntervalMs?: number;
  log: Logger;
}

const now = () => new V1MicroTime();

export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private stopped = false;
  private leading = false;

  constructor(private readonly opts: LeaderOptions) {
    this.api = opts.kubeConfig.makeApiClient(CoordinationV1Api);
  }

  get isLeader(): boolean {
    return this.leading;
  }

  private get duration(): number {
    return this.opts.leaseDurationSec ?? 15;
  }

  /** One attempt to take or renew the Lease; true when we hold it afterwards. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.opts;
    const lease = await unlessNotFound(this.api.readNamespacedLease({ name, namespace }));
    if (!lease) {
      try {
        await this.api.createNamespacedLease({
          namespace,
          body: {
            metadata: { name, namespace },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds: this.duration,
              acquireTime: now(),
              renewTime: now(),
              leaseTransitions: 0,
            },
          },
        });
        return true;
      } catch (err) {
        if (isStatus(err, 409)) return false;
        throw err;
      }
    }
    const spec = lease.spec ?? {};
    const renewed = spec.renewTime ? new Date(spec.renewTime).getTime() : 0;
    const expired = renewed + (spec.leaseDurationSeconds ?? this.duration) * 1000 < Date.now();
    const mine = spec.holderIdentity === identity;
    if (!mine && !expired && spec.holderIdentity) return false;
    const body: V1Lease = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: this.duration,
        renewTime: now(),
        ...(mine ? {} : { acquireTime: now(), leaseTransitions: (spec.leaseTransitions ?? 0) + 1 }),
      },
    };
    try {
      await this.api.replaceNamespacedLease({ name, namespace, body });
      return true;
    } catch (err) {
      if (isStatus(err, 409)) return false;
      throw err;
    }
  }

  /** Blocks until leading, then keeps renewing; calls onLost once if leadership is lost. */
  async run(onStarted: () => void, onLost: () => void): Promise<void> {
    const interval = this.opts.renewIntervalMs ?? 2000;
    while (!this.stopped && !this.leading) {
      this.leading = await this.tryAcquireOrRenew().catch((err) => {
        this.opts.log.warn({ err: (err as Error).message }, 'lease attempt failed');
        return false;
      });
      if (!this.leading) await sleep(interval);
    }
    if (this.stopped) return;
    this.opts.log.info({ lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.opts.identity }, 'leading');
    onStarted();
    let lastRenew = Date.now();
    while (!this.stopped) {
      await sleep(interval);
      const ok = await this.tryAcquireOrRenew().catch(() => false);
      if (ok) lastRenew = Date.now();
      else if (Date.now() - lastRenew > (this.duration * 1000 * 2) / 3) {
        this.leading = false;
        this.opts.log.error('lost the lease');
        onLost();
        return;
      }
    }
  }

  stop(): void {
    this.stopped = true;
  }
}
