// Child process of the benchmark: the webhook server over HTTPS with N PVC/PV
// pairs in an in-memory cluster view (Maps keyed like the informer caches).
// Prints its port and RSS on stdout; answers any IPC message with its RSS and
// open connections; exits on SIGTERM.
import { pino } from 'pino';
import { generateBundle } from '../src/certs/generate.js';
import { DEFAULT_GLOBAL_CONFIG } from '../src/config/schema.js';
import { ObjectView } from '../src/resolve/object-view.js';
import { buildServer } from '../src/webhook/server.js';
import { pairs } from './fixtures.js';

const n = Number(process.argv[2] ?? '100');
const view = new ObjectView(pairs(n));
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
