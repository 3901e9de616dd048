// npm run bench: a printed report, not a pass/fail test.
// 1. The webhook alone (HTTPS, autocannon) with 100, 10,000 and 100,000
//    PVC/PV pairs in its cluster view: p50/p99 latency, admissions/s, RSS.
// 2. Pod CREATE latency through the local control plane with the webhook
//    registered vs an unlabelled namespace, interleaved in one run.
// 3. The webhook under slowloris and deep-nesting abuse (bench/webhook-abuse.ts).
// 5. Dynamic provisioning (bench/provision.ts): BENCH_PVCS PVCs to Bound, the real controller vs. a
//    CreateVolume doing no filesystem work, in the same run. BENCH_ONLY=provision runs only 5.
// BENCH_ONLY=webhook runs only 1, BENCH_ONLY=create only 2, BENCH_ONLY=provision-ops the per-volume work of 5 alone.
// BENCH_ONLY=abuse runs only 3 (BENCH_ABUSE_SLOW, BENCH_ABUSE_DEEP, BENCH_ABUSE_SECONDS).
// 4. The real node (bench/real-node.ts; root): pod startup in sidecar and Mount Pod mode, Job completion
//    delay, volume back after the FUSE client is killed. BENCH_ONLY=real-node runs only 4
//    (BENCH_RN_PODS, BENCH_RN_JOBS, BENCH_RN_RECOVERY_CAP_MS).
// 6. The dashboard (bench/dashboard.ts): bundle size, time to render the pods page with 1,000 pods, RSS.
//    BENCH_ONLY=dashboard runs only 6 (BENCH_DASH_PODS).
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import autocannon from 'autocannon';
import { fork, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyObjects } from '../src/local/components.js';
import { ControlPlane } from '../src/local/control-plane.js';
import { startWebhookStack, type WebhookStack } from '../src/local/webhook-stack.js';
import { BENCH_NS, pairs, podUsing, reviewFor } from './fixtures.js';
import { abuse, abuseLines } from './webhook-abuse.js';
import { realNodeLines } from './real-node.js';
import { provisionLines, provisionThroughput } from './provision.js';
import { provisionOpsLines } from './provision-ops.js';
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
  shape: string;
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

async function webhookAlone(n: number, shape = 'lean'): Promise<Row> {
  const child = fork(path.join(here, 'webhook-server.js'), [String(n), shape], {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    execArgv: ['--expose-gc'],
  });
  const first = await new Promise<{ port: number; rss: number }>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(JSON.parse(d.toString().split('\n')[0])));
    child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  const bodies = Array.from({ length: 1000 }, (_, i) => reviewFor(podUsing(`pvc-${(i * 7919) % n}`), `u-${i}`));
  // The figures are for injections: one review first must come back allowed with a patch (not a denial).
  const probe = await new Promise<string>((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: first.port,
        path: '/mutate',
        method: 'POST',
        rejectUnauthorized: false,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve(text));
      },
    );
    req.on('error', reject);
    req.end(bodies[0]);
  });
  const answer = (JSON.parse(probe) as { response?: { allowed?: boolean; patch?: string } }).response;
  if (!answer?.allowed || !answer.patch) {
    child.kill('SIGTERM');
    throw new Error(`bench setup: the webhook did not inject (${probe.slice(0, 300)})`);
  }
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
  return { pairs: n, shape, rssIdle: first.rss, rssAfter, loaded, single };
}

interface CreateSeries {
  /** RSS of the real `jfs-sidecar webhook` process (real informers, 10 pairs): ready and idle, and after. */
  webhookRss: { idle: number; after: number };
  /** TCP connections to the webhook's port after the run: open, and closed ones (TIME-WAIT on either side). */
  connections: { established: number; timeWait: number };
  injected: number[];
  calledNoPatch: number[];
  plain: number[];
  plainInjectedSize: number[];
}

/** VmRSS of a process, in bytes (0 when unknown). */
function rssOf(pid: number | undefined): number {
  if (!pid) return 0;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Whether the API server reuses its connections to the webhook: `ss` on the webhook's port. */
function connectionsTo(port: number): { established: number; timeWait: number } {
  const count = (state: string) =>
    (
      spawnSync('ss', ['-Htn', 'state', state, `( sport = :${port} or dport = :${port} )`], { encoding: 'utf8' })
        .stdout ?? ''
    )
      .split('\n')
      .filter((l) => l.trim()).length;
  return { established: count('established'), timeWait: count('time-wait') };
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
    const idle = rssOf(webhook.webhook.pid);
    const series: CreateSeries = {
      webhookRss: { idle, after: 0 },
      connections: { established: 0, timeWait: 0 },
      injected: [],
      calledNoPatch: [],
      plain: [],
      plainInjectedSize: [],
    };
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
    series.webhookRss.after = rssOf(webhook.webhook.pid);
    series.connections = connectionsTo(webhook.port);
    return series;
  } finally {
    await webhook?.stop();
    await cp.stop();
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

const PVCS = Number(process.env.BENCH_PVCS ?? '1000');
/** Both modes in one run (the ratio is the figure); BENCH_PROV_MODES=real skips the baseline. */
async function provisioning(): Promise<string[]> {
  const modes = (process.env.BENCH_PROV_MODES ?? 'noop,real').split(',');
  // Each result on stderr as it comes: a long run that fails later still shows the first.
  const noop = modes.includes('noop') ? await provisionThroughput(PVCS, 'noop') : undefined;
  if (noop) process.stderr.write(`provisioning, no filesystem work: ${JSON.stringify(noop)}\n`);
  const real = modes.includes('real') ? await provisionThroughput(PVCS, 'real') : undefined;
  if (real) process.stderr.write(`provisioning, real controller: ${JSON.stringify(real)}\n`);
  return real ? provisionLines(real, noop) : noop ? provisionLines(noop, undefined) : [];
}
if (process.env.BENCH_ONLY === 'provision-ops') {
  process.stdout.write(`${(await provisionOpsLines()).join('\n')}\n`);
  process.exit(0);
}
if (process.env.BENCH_ONLY === 'provision') {
  process.stdout.write(`${(await provisioning()).join('\n')}\n`);
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

function webhookLines(rows: Row[]): string[] {
  const out: string[] = [];
  out.push('## Webhook alone: POST /mutate over HTTPS, one pod with one JuiceFS PVC, one Node.js process (= one core)');
  out.push(
    `(in-memory cluster view keyed like the informer caches, objects shaped as the API server sends them: lean = ` +
      `as the informers keep them, whole = before the transforms; ${SECONDS}s per run; autocannon in another process)`,
  );
  out.push('');
  out.push(
    '| PVC/PV pairs | cached objects | admissions/s (8 conns) | p50 / p99 ms (8 conns) | p50 / p99 ms (1 conn) | RSS idle | RSS after |',
  );
  out.push('| ---: | --- | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    out.push(
      `| ${r.pairs.toLocaleString('en')} | ${r.shape} | ${Math.round(r.loaded.requests.average).toLocaleString('en')} | ${r.loaded.latency.p50} / ${r.loaded.latency.p99} | ${r.single.p50.toFixed(3)} / ${r.single.p99.toFixed(3)} | ${mb(r.rssIdle)} | ${mb(r.rssAfter)} |`,
    );
  }
  const lean = rows.filter((r) => r.shape === 'lean');
  const base = lean[0].loaded.requests.average;
  out.push('');
  out.push(
    `throughput ratio vs ${lean[0].pairs} pairs: ${lean.map((r) => `${r.pairs}: ${(r.loaded.requests.average / base).toFixed(2)}`).join(', ')}`,
  );
  const at10k = lean.find((r) => r.pairs === 10000);
  if (at10k) {
    out.push(
      `targets at 10,000 pairs: p99 ≤ 2 ms (1 conn: ${at10k.single.p99.toFixed(3)} ms → ${at10k.single.p99 <= 2 ? 'met' : 'NOT met'}); ≥ 3,000 admissions/s per core (${Math.round(at10k.loaded.requests.average)} → ${at10k.loaded.requests.average >= 3000 ? 'met' : 'NOT met'})`,
    );
  }
  return out;
}

async function webhookRows(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const n of SIZES) rows.push(await webhookAlone(n));
  // The largest size again with whole objects: what the caches held before they kept lean ones.
  rows.push(await webhookAlone(SIZES[SIZES.length - 1], 'whole'));
  return rows;
}
function createLines(creates: CreateSeries): string[] {
  const out: string[] = [];
  out.push(`## Pod CREATE through kube-apiserver (${CREATES} each, interleaved, sequential)`);
  const mi = quantile(creates.injected, 0.5);
  const mp = quantile(creates.plain, 0.5);
  out.push('| namespace | median ms | p99 ms |');
  out.push('| --- | ---: | ---: |');
  const row = (name: string, xs: number[]) =>
    out.push(`| ${name} | ${quantile(xs, 0.5).toFixed(2)} | ${quantile(xs, 0.99).toFixed(2)} |`);
  row('labelled, JuiceFS PVC (webhook injects)', creates.injected);
  row('labelled, no PVC (webhook called, no patch)', creates.calledNoPatch);
  row('unlabelled, JuiceFS PVC (no webhook call)', creates.plain);
  row('unlabelled, the injected pod sent as is (same stored size, no call)', creates.plainInjectedSize);
  const mb2 = quantile(creates.plainInjectedSize, 0.5);
  out.push(
    `median ratio with/without injection: ${(mi / mp).toFixed(2)} (target ≤ 1.2 → ${mi / mp <= 1.2 ? 'met' : 'NOT met'})`,
  );
  out.push(
    `median ratio vs the same pod stored without a webhook call: ${(mi / mb2).toFixed(2)} (the webhook round trip alone)`,
  );
  const mn = quantile(creates.calledNoPatch, 0.5);
  const added = mi - mp;
  out.push(
    `added by the webhook (median with minus without, one PVC): ${added.toFixed(2)} ms (target ≤ 1.0 → ${added <= 1 ? 'met' : 'NOT met'}); ` +
      `of which: a call with no patch ${(mn - mp).toFixed(2)} ms, the larger stored object ${(mb2 - mp).toFixed(2)} ms, ` +
      `the patch (our work on it + the API server applying it) ${(mi - mn - (mb2 - mp)).toFixed(2)} ms`,
  );
  out.push(
    `real webhook process (jfs-sidecar webhook, informers on this control plane): RSS ${mb(creates.webhookRss.idle)} ready and idle ` +
      `(target ≤ 64 MiB → ${creates.webhookRss.idle <= 64 * 2 ** 20 ? 'met' : 'NOT met'}), ${mb(creates.webhookRss.after)} after the run; ` +
      `connections from the API server after ${CREATES * 2 + 20} calls: ${creates.connections.established} open, ` +
      `${creates.connections.timeWait} closed (TIME-WAIT): ${creates.connections.timeWait <= 2 ? 'reused (keep-alive)' : 'NOT reused'}`,
  );
  return out;
}

if (process.env.BENCH_ONLY === 'create') {
  process.stdout.write(`${createLines(await createLatency()).join('\n')}\n`);
  process.exit(0);
}
if (process.env.BENCH_ONLY === 'webhook') {
  process.stdout.write(`${webhookLines(await webhookRows()).join('\n')}\n`);
  process.exit(0);
}

const rows = await webhookRows();
const creates = await createLatency();
const prov = PVCS > 0 ? await provisioning() : [];

const lines: string[] = [];
lines.push('# jfs-sidecar benchmark report');
lines.push(
  `date: ${new Date().toISOString()}  node: ${process.version}  cpus: ${(await import('node:os')).cpus().length}`,
);
lines.push('');
lines.push(...webhookLines(rows));
lines.push('');
lines.push(...createLines(creates));
if (prov.length) lines.push('', ...prov);
lines.push('');
lines.push(...abuseLines(await abuse(abuseOptions)));
lines.push('');
lines.push(...(await realNodeLines()));
lines.push('');
lines.push(...(await dashboardLines()));
process.stdout.write(`${lines.join('\n')}\n`);
