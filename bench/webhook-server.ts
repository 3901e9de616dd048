// Child process of the benchmark: the webhook server over HTTPS with N PVC/PV
// pairs in an in-memory cluster view (Maps keyed like the informer caches).
// argv[3]: `lean` (default: the objects as the API server sends them, through the informers' transforms),
// `whole` (the same objects kept whole, as before the transforms), `plain` (the bare fixtures).
// Prints its port and RSS on stdout; answers any IPC message with its RSS and
// open connections; exits on SIGTERM.
import { pino } from 'pino';
import { generateBundle } from '../src/certs/generate.js';
import { DEFAULT_GLOBAL_CONFIG } from '../src/config/schema.js';
import { ObjectView } from '../src/resolve/object-view.js';
import { buildServer } from '../src/webhook/server.js';
import type { KubernetesObject, V1StorageClass } from '@kubernetes/client-node';
import { leanPv, leanPvc, leanSecret, leanStorageClass } from '../src/k8s/lean-objects.js';
import { apiServerPairs, pairs } from './fixtures.js';

/** What an informer keeps of an object (the kind stays for ObjectView's sorting, as the cache's Map would). */
function lean(o: KubernetesObject): KubernetesObject {
  const kind = { kind: o.kind };
  if (o.kind === 'PersistentVolumeClaim') return { ...kind, ...leanPvc(o) };
  if (o.kind === 'PersistentVolume') return { ...kind, ...leanPv(o) };
  if (o.kind === 'StorageClass') return { ...kind, ...leanStorageClass(o as V1StorageClass) };
  if (o.kind === 'Secret') return { ...kind, ...leanSecret(o) };
  return o;
}

const n = Number(process.argv[2] ?? '100');
const shape = process.argv[3] ?? 'lean';
// Each object is made lean as it is made, as an informer does per object: the whole ones never all live at once.
const objects = shape === 'plain' ? pairs(n) : shape === 'whole' ? apiServerPairs(n) : apiServerPairs(n, lean);
const view = new ObjectView(objects);
objects.length = 0;
const tls = await generateBundle({ hosts: ['127.0.0.1'], validityDays: 1 });
const app = buildServer({
  view,
  config: () => DEFAULT_GLOBAL_CONFIG,
  ready: () => true,
  onError: 'deny',
  log: pino({ level: 'warn' }),
  tls: { cert: tls.cert, key: tls.key },
});
await app.listen({ host: '127.0.0.1', port: 0 });
const addr = app.server.address();
global.gc?.();
process.stdout.write(
  `${JSON.stringify({ port: typeof addr === 'object' && addr ? addr.port : 0, rss: process.memoryUsage().rss })}\n`,
);
process.on('message', () =>
  app.server.getConnections((_err, connections) => process.send?.({ rss: process.memoryUsage().rss, connections })),
);
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
