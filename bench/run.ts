// npm run bench: a printed report, not a pass/fail test.
// 1. The webhook alone (HTTPS, autocannon) with 100, 10,000 and 100,000
//    PVC/PV pairs in its cluster view: p50/p99 latency, admissions/s, RSS.
// 2. Pod CREATE latency through the local control plane with the webhook
//    registered vs an unlabelled namespace, interleaved in one run.
// 3. The webhook under slowloris and deep-nesting abuse (bench/webhook-abuse.ts).
// BENCH_ONLY=abuse runs only 3 (BENCH_ABUSE_SLOW, BENCH_ABUSE_DEEP, BENCH_ABUSE_SECONDS).
// 4. The real node (bench/real-node.ts; root): pod startup in sidecar and Mount Pod mode, Job completion
//    delay, volume back after the FUSE client is killed. BENCH_ONLY=real-node runs only 4
//    (BENCH_RN_PODS, BENCH_RN_JOBS, BENCH_RN_RECOVERY_CAP_MS).
// 5. The dashboard (bench/dashboard.ts): bundle size, time to render the pods page with 1,000 pods, RSS.
//    BENCH_ONLY=dashboard runs only 5 (BENCH_DASH_PODS).
import { CoreV1Api, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import autocannon from 'autocannon';
import { fork, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyObjects, readManifest } from '../src/local/components.js';
import { ControlPlane, ensureBinaries } from '../src/local/control-plane.js';
import { startControllerStack, type ControllerStack } from '../src/local/controller-stack.js';
import { startWebhookStack, type WebhookStack } from '../src/local/webhook-stack.js';
import { BENCH_NS, pairs, podUsing, reviewFor } from './fixtures.js';
import { abuse, abuseLines } from './webhook-abuse.js';
import { realNodeLines } from './real-node.js';
import { dashboardLines } from './dashboard.js';
import { setTimeout as sleep } from 'node:timers/promises';

const here = path.dirname(fileURLToPath(import.meta.url));
const SIZES = (process.env.BENCH_SIZES ?? '100,10000,100000').split(',').map(Number);
const SECONDS = Number(process.env.BENCH_SECONDS ?? '8');
const CREATES = Number(process.env.BENCH_CREATES ?? '200');

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

interface Row {
  pairs: number;
  rssIdle: number;
  rssAfter: number;
  loaded: autocannon.Result;
  /** Sequential requests on one keep-alive connection, timed with hrtime (autocannon rounds to whole ms). */
  single: { p50: number; p99: number; count: number };
}

async function sequentialLatency(
  port: number,
  bodies: string[],
  seconds: number,
): Promise<{ p50: number; p99: number; count: number }> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
  const samples: number[] = [];
  const deadline = Date.now() + seconds * 1000;
  for (let i = 0; Date.now() < deadline; i++) {
    const body = bodies[i % bodies.length];
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port,
          path: '/mutate',
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
          res.resume();
          res.on('end', () => resolve());
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  agent.destroy();
  return { p50: quantile(samples, 0.5), p99: quantile(samples, 0.99), count: samples.length };
}

async function webhookAlone(n: number): Promise<Row> {
  const child = fork(path.join(here, 'webhook-server.js'), [String(n)], {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    execArgv: ['--expose-gc'],
  });
  const first = await new Promise<{ port: number; rss: number }>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(JSON.parse(d.toString().split('\n')[0])));
    child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  const bodies = Array.from({ length: 1000 }, (_, i) => reviewFor(podUsing(`pvc-${(i * 7919) % n}`), `u-${i}`));
  let next = 0;
  const run = (connections: number, duration: number) =>
    autocannon({
      url: `https://127.0.0.1:${first.port}/mutate`,
      connections,
      duration,
      requests: [
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          setupRequest: (req) => ({ ...req, body: bodies[next++ % bodies.length] }),
        },
      ],
    });
  await run(4, 2); // warm-up: JIT and TLS sessions
  const loaded = await run(8, SECONDS);
  const single = await sequentialLatency(first.port, bodies, SECONDS);
  const rssAfter = await new Promise<number>((resolve) => {
    child.once('message', (m: { rss: number }) => resolve(m.rss));
    child.send('rss');
  });
  child.kill('SIGTERM');
  if (loaded.non2xx || loaded.errors)
    throw new Error(`bench errors: ${loaded.non2xx} non-2xx, ${loaded.errors} errors`);
  return { pairs: n, rssIdle: first.rss, rssAfter, loaded, single };
}

interface CreateSeries {
  injected: number[];
  calledNoPatch: number[];
  plain: number[];
  plainInjectedSize: number[];
}

async function createLatency(): Promise<CreateSeries> {
  const cp = await ControlPlane.start({ controllerManager: true });
  let webhook: WebhookStack | undefined;
  try {
    const admin = cp.adminKubeConfig();
    webhook = await startWebhookStack(cp, { secretNamespaces: ['juicefs-system'], withoutController: true });
    const objs = pairs(10);
    await applyObjects(admin, [
      {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: BENCH_NS, labels: { 'juicefs.com/enable-injection': 'true' } },
      },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: `${BENCH_NS}-plain` } },
      ...objs,
      ...objs
        .filter((o) => o.kind === 'PersistentVolumeClaim')
        .map((o) => ({ ...o, metadata: { ...o.metadata, namespace: `${BENCH_NS}-plain` } })),
    ]);
    const core = admin.makeApiClient(CoreV1Api);
    for (const ns of [BENCH_NS, `${BENCH_NS}-plain`]) {
      for (let i = 0; i < 100; i++) {
        try {
          await core.readNamespacedServiceAccount({ name: 'default', namespace: ns });
          break;
        } catch {
          await sleep(100);
        }
      }
    }
    const time = async (ns: string, pod: V1Pod) => {
      const t0 = process.hrtime.bigint();
      const created = await core.createNamespacedPod({
        namespace: ns,
        body: { ...pod, metadata: { ...pod.metadata, namespace: ns } },
      });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      return { ms, created, injected: (created.spec?.initContainers ?? []).some((c) => c.name === 'jfs-mount') };
    };
    const noVolumes: V1Pod = { ...podUsing('none'), spec: { containers: [{ name: 'app', image: 'busybox' }] } };
    // Warm-up, and proof that the labelled namespace injects and the other does not.
    for (let i = 0; i < 10; i++) {
      const a = await time(BENCH_NS, podUsing(`pvc-${i}`));
      const b = await time(`${BENCH_NS}-plain`, podUsing(`pvc-${i}`));
      if (i === 9 && (!a.injected || b.injected)) throw new Error('bench setup: injection did not behave');
    }
    const series: CreateSeries = { injected: [], calledNoPatch: [], plain: [], plainInjectedSize: [] };
    for (let i = 0; i < CREATES; i++) {
      const inj = await time(BENCH_NS, podUsing(`pvc-${i % 10}`));
      series.injected.push(inj.ms);
      series.calledNoPatch.push((await time(BENCH_NS, noVolumes)).ms);
      series.plain.push((await time(`${BENCH_NS}-plain`, podUsing(`pvc-${i % 10}`))).ms);
      // The injected pod as the client would send it, so object size is the same as stored with injection.
      const { metadata, spec } = inj.created;
      const big: V1Pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { generateName: 'app-', labels: metadata?.labels },
        spec,
      };
      series.plainInjectedSize.push((await time(`${BENCH_NS}-plain`, big)).ms);
    }
    return series;
  } finally {
    await webhook?.stop();
    await cp.stop();
  }
}

/** 1,000 PVCs of a JuiceFS StorageClass to Bound: csi-provisioner + controller + a real JuiceFS volume. */
async function provisionThroughput(
  count: number,
): Promise<{ seconds: number; perSecond: number; p50: number; p99: number }> {
  const cp = await ControlPlane.start({ controllerManager: true });
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-bench-prov-'));
  const volDir = path.join(dir, 'vol');
  const { juicefs } = ensureBinaries(['juicefs']);
  const metaurl = `sqlite3://${volDir}/meta.db`;
  mkdirSync(volDir, { recursive: true });
  const fmt = spawnSync(juicefs, ['format', '--storage=file', `--bucket=${volDir}/data/`, metaurl, 'bench'], {
    encoding: 'utf8',
  });
  if (fmt.status !== 0) throw new Error(`juicefs format failed: ${fmt.stderr}`);
  let stack: ControllerStack | undefined;
  try {
    const admin = cp.adminKubeConfig();
    const core = admin.makeApiClient(CoreV1Api);
    await applyObjects(admin, [
      ...readManifest('namespace.yaml'),
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'prov' } },
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'juicefs-secret', namespace: 'juicefs-system' },
        stringData: { name: 'bench', metaurl },
      } as KubernetesObject,
      {
        apiVersion: 'storage.k8s.io/v1',
        kind: 'StorageClass',
        metadata: { name: 'jfs' },
        provisioner: 'csi.juicefs.com',
        reclaimPolicy: 'Delete',
        parameters: {
          'csi.storage.k8s.io/provisioner-secret-name': 'juicefs-secret',
          'csi.storage.k8s.io/provisioner-secret-namespace': 'juicefs-system',
          'csi.storage.k8s.io/node-publish-secret-name': 'juicefs-secret',
          'csi.storage.k8s.io/node-publish-secret-namespace': 'juicefs-system',
        },
      } as KubernetesObject,
    ]);
    stack = await startControllerStack(cp, { dir, secretNamespaces: ['juicefs-system'] });
    const created = new Map<string, number>();
    const boundAt = new Map<string, number>();
    const t0 = Date.now();
    for (let i = 0; i < count; i++) {
      const name = `pvc-${i}`;
      created.set(name, Date.now());
      await core.createNamespacedPersistentVolumeClaim({
        namespace: 'prov',
        body: {
          metadata: { name },
          spec: {
            accessModes: ['ReadWriteMany'],
            storageClassName: 'jfs',
            resources: { requests: { storage: '1Gi' } },
          },
        },
      });
    }
    const deadline = Date.now() + 30 * 60_000;
    while (boundAt.size < count) {
      if (Date.now() > deadline) throw new Error(`only ${boundAt.size} of ${count} PVCs Bound after 30 minutes`);
      const list = await core.listNamespacedPersistentVolumeClaim({ namespace: 'prov' });
      for (const pvc of list.items)
        if (pvc.status?.phase === 'Bound' && !boundAt.has(pvc.metadata!.name!))
          boundAt.set(pvc.metadata!.name!, Date.now());
      await sleep(250);
    }
    const seconds = (Date.now() - t0) / 1000;
    const lat = [...boundAt].map(([n, at]) => (at - created.get(n)!) / 1000);
    return { seconds, perSecond: count / seconds, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99) };
  } finally {
    await stack?.stop();
    await cp.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const abuseOptions = {
  slow: Number(process.env.BENCH_ABUSE_SLOW ?? '500'),
  deepWorkers: Number(process.env.BENCH_ABUSE_DEEP ?? '4'),
  seconds: Number(process.env.BENCH_ABUSE_SECONDS ?? '20'),
};
if (process.env.BENCH_ONLY === 'abuse') {
  process.stdout.write(`${abuseLines(await abuse(abuseOptions)).join('\n')}\n`);
  process.exit(0);
}

if (process.env.BENCH_ONLY === 'dashboard') {
  process.stdout.write(`${(await dashboardLines()).join('\n')}\n`);
  process.exit(0);
}

if (process.env.BENCH_ONLY === 'real-node') {
  process.stdout.write(`${(await realNodeLines()).join('\n')}\n`);
  process.exit(0);
}

const rows: Row[] = [];
for (const n of SIZES) rows.push(await webhookAlone(n));
const creates = await createLatency();
const PVCS = Number(process.env.BENCH_PVCS ?? '1000');
const prov = PVCS > 0 ? await provisionThroughput(PVCS) : undefined;

const lines: string[] = [];
lines.push('# jfs-sidecar benchmark report');
lines.push(
  `date: ${new Date().toISOString()}  node: ${process.version}  cpus: ${(await import('node:os')).cpus().length}`,
);
lines.push('');
lines.push('## Webhook alone: POST /mutate over HTTPS, one pod with one JuiceFS PVC, one Node.js process (= one core)');
lines.push(
  `(in-memory cluster view keyed like the informer caches; ${SECONDS}s per run; autocannon in another process)`,
);
lines.push('');
lines.push(
  '| PVC/PV pairs | admissions/s (8 conns) | p50 / p99 ms (8 conns) | p50 / p99 ms (1 conn) | RSS idle | RSS after |',
);
lines.push('| ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  lines.push(
    `| ${r.pairs.toLocaleString('en')} | ${Math.round(r.loaded.requests.average).toLocaleString('en')} | ${r.loaded.latency.p50} / ${r.loaded.latency.p99} | ${r.single.p50.toFixed(3)} / ${r.single.p99.toFixed(3)} | ${mb(r.rssIdle)} | ${mb(r.rssAfter)} |`,
  );
}
const base = rows[0].loaded.requests.average;
lines.push('');
lines.push(
  `throughput ratio vs ${rows[0].pairs} pairs: ${rows.map((r) => `${r.pairs}: ${(r.loaded.requests.average / base).toFixed(2)}`).join(', ')}`,
);
const at10k = rows.find((r) => r.pairs === 10000);
if (at10k) {
  lines.push(
    `targets at 10,000 pairs: p99 ≤ 2 ms (1 conn: ${at10k.single.p99.toFixed(3)} ms → ${at10k.single.p99 <= 2 ? 'met' : 'NOT met'}); ≥ 3,000 admissions/s per core (${Math.round(at10k.loaded.requests.average)} → ${at10k.loaded.requests.average >= 3000 ? 'met' : 'NOT met'})`,
  );
}
lines.push('');
lines.push(`## Pod CREATE through kube-apiserver (${CREATES} each, interleaved, sequential)`);
const mi = quantile(creates.injected, 0.5);
const mp = quantile(creates.plain, 0.5);
lines.push('| namespace | median ms | p99 ms |');
lines.push('| --- | ---: | ---: |');
const row = (name: string, xs: number[]) =>
  lines.push(`| ${name} | ${quantile(xs, 0.5).toFixed(2)} | ${quantile(xs, 0.99).toFixed(2)} |`);
row('labelled, JuiceFS PVC (webhook injects)', creates.injected);
row('labelled, no PVC (webhook called, no patch)', creates.calledNoPatch);
row('unlabelled, JuiceFS PVC (no webhook call)', creates.plain);
row('unlabelled, the injected pod sent as is (same stored size, no call)', creates.plainInjectedSize);
const mb2 = quantile(creates.plainInjectedSize, 0.5);
lines.push(
  `median ratio with/without injection: ${(mi / mp).toFixed(2)} (target ≤ 1.2 → ${mi / mp <= 1.2 ? 'met' : 'NOT met'})`,
);
lines.push(
  `median ratio vs the same pod stored without a webhook call: ${(mi / mb2).toFixed(2)} (the webhook round trip alone)`,
);
if (prov) {
  lines.push('');
  lines.push(
    `## Dynamic provisioning: ${PVCS.toLocaleString('en')} PVCs created back to back → Bound (csi-provisioner + controller + real JuiceFS volume, SQLite metadata)`,
  );
  lines.push(
    `all Bound in ${prov.seconds.toFixed(1)} s → ${prov.perSecond.toFixed(1)} PVCs/s; time to Bound per PVC: median ${prov.p50.toFixed(1)} s, p99 ${prov.p99.toFixed(1)} s`,
  );
}
lines.push('');
lines.push(...abuseLines(await abuse(abuseOptions)));
lines.push('');
lines.push(...(await realNodeLines()));
process.stdout.write(`${lines.join('\n')}\n`);
