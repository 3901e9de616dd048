// Prometheus metrics of the webhook, in a registry of its own (one per server,
// so tests and several servers in one process do not collide).
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface WebhookMetrics {
  registry: Registry;
  admissions: Counter<'path' | 'result'>;
  latency: Histogram<'path'>;
}

export function createMetrics(withDefaults = true): WebhookMetrics {
  const registry = new Registry();
  if (withDefaults) collectDefaultMetrics({ register: registry, prefix: 'jfs_sidecar_' });
  return {
    registry,
    admissions: new Counter({
      name: 'jfs_sidecar_admissions_total',
      help: 'Admission reviews by path and result (injected, skipped:<code>, denied:<code>, ignored, bad-request, error:allowed)',
      labelNames: ['path', 'result'],
      registers: [registry],
    }),
    latency: new Histogram({
      name: 'jfs_sidecar_admission_duration_seconds',
      help: 'Time to answer an admission review',
      labelNames: ['path'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
  };
}
