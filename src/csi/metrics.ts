// Prometheus metrics of the controller and the node service (issue 14 item 5), in a registry of their own as the
// webhook's (src/webhook/metrics.ts). Every CSI call by method and result, with its latency; the reference driver's
// own error counters under its names (juicefs_provision_errors on the controller, juicefs_volume_errors and
// juicefs_volume_del_errors on the node), so its documented alerts keep working; the node's Mount Pods, references,
// held fds, target health and recoveries; the controller's upgrade outcomes.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The reference's counter for each CSI method it counts failures of. */
const REFERENCE_ERRORS: Record<string, { name: string; help: string }> = {
  CreateVolume: { name: 'juicefs_provision_errors', help: 'Volume provision (CreateVolume) failures' },
  NodePublishVolume: { name: 'juicefs_volume_errors', help: 'Volume mount (NodePublishVolume) failures' },
  NodeUnpublishVolume: { name: 'juicefs_volume_del_errors', help: 'Volume unmount (NodeUnpublishVolume) failures' },
};

export interface CsiMetricsOptions {
  /** Which reference counters this process exposes (each process only its own, as the reference does). */
  role: 'controller' | 'node' | 'both';
  /** Process metrics (CPU, memory, event loop) too; off in tests that build many registries. */
  withDefaults?: boolean;
}

export class CsiMetrics {
  readonly registry = new Registry();
  private readonly operations: Counter<'method' | 'code'>;
  private readonly latency: Histogram<'method'>;
  private readonly referenceErrors = new Map<string, Counter>();

  constructor(opts: CsiMetricsOptions) {
    if (opts.withDefaults !== false) collectDefaultMetrics({ register: this.registry, prefix: 'jfs_sidecar_' });
    this.operations = new Counter({
      name: 'jfs_sidecar_csi_operations_total',
      help: 'CSI calls by method and gRPC result code (OK, NOT_FOUND, INTERNAL, ...)',
      labelNames: ['method', 'code'],
      registers: [this.registry],
    });
    this.latency = new Histogram({
      name: 'jfs_sidecar_csi_operation_duration_seconds',
      help: 'Time to answer a CSI call',
      labelNames: ['method'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers: [this.registry],
    });
    const wanted = (method: string) =>
      opts.role === 'both' || (opts.role === 'controller') === (method === 'CreateVolume');
    for (const [method, spec] of Object.entries(REFERENCE_ERRORS))
      if (wanted(method))
        this.referenceErrors.set(method, new Counter({ name: spec.name, help: spec.help, registers: [this.registry] }));
  }

  /** One CSI call answered: `code` is the gRPC status name. */
  observe(method: string, code: string, seconds: number): void {
    this.operations.inc({ method, code });
    this.latency.observe({ method }, seconds);
    if (code !== 'OK') this.referenceErrors.get(method)?.inc();
  }

  /** A gauge whose value is read at scrape time (counts from the informer caches: no work between scrapes). */
  gauge<L extends string>(name: string, help: string, labelNames: L[], read: (g: Gauge<L>) => void): Gauge<L> {
    return new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect() {
        this.reset();
        read(this);
      },
    });
  }

  counter<L extends string>(name: string, help: string, labelNames: L[]): Counter<L> {
    return new Counter<L>({ name, help, labelNames, registers: [this.registry] });
  }

  /** The text exposition format, as /metrics serves it. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
