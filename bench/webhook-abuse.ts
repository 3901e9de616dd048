// The webhook under abuse (issue 11 class 9): N slowloris connections (TLS,
// headers of a POST /mutate announcing a 1 MB body, then one byte a second)
// and M workers sending deep-nesting bodies back to back, while a legitimate
// admission is sent once a second on a fresh connection. Reports connections
// the server holds, its RSS, what the abusers got back, and the latency of the
// legitimate admissions. `BENCH_ONLY=abuse npm run bench` runs only this.
import { fork } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { podUsing, reviewFor } from './fixtures.js';

const here = path.dirname(fileURLToPath(import.meta.url));

export interface AbuseOptions {
  slow: number;
  deepWorkers: number;
  seconds: number;
}

export interface AbuseReport {
  options: AbuseOptions;
  baselineMs: number;
  /** Server-side open connections, sampled each second. */
  connections: number[];
  rss: number[];
  /** Legitimate admissions during the abuse: ms, or undefined when it failed or took over 15 s. */
  legit: (number | undefined)[];
  slowClosedBy: { at: number[]; stillOpen: number; failedToConnect: Record<string, number> };
  deep: { sent: number; statuses: Record<string, number>; msPerBody: number };
}

interface AnswerBody {
  allowed?: boolean;
  status?: { code?: number };
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

/** POSTs a body on a fresh TLS connection; `answer` is the HTTP status, and for a 200 the admission verdict. */
function post(port: number, body: string, timeoutMs: number): Promise<{ status: number; ms: number; answer: string }> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path: '/mutate',
        method: 'POST',
        agent: false,
        rejectUnauthorized: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          let answer = String(status);
          if (status === 200) {
            try {
              const r = (JSON.parse(Buffer.concat(chunks).toString()) as { response?: AnswerBody }).response;
              answer = r?.allowed ? '200 allowed' : `200 denied ${r?.status?.code}`;
            } catch {
              answer = '200 unparsable';
            }
          }
          resolve({ status, ms: Number(process.hrtime.bigint() - t0) / 1e6, answer });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

/** Why slowloris connections failed before the TLS handshake completed (the server's backlog, not its limits). */
const slowErrors: Record<string, number> = {};

/** One slowloris connection: resolves with the second at which the server closed it (or never, until stop). */
function slowloris(port: number, started: number, stop: AbortSignal): Promise<number | undefined> {
  return new Promise((resolve) => {
    const sock = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      sock.write(
        'POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{',
      );
    });
    const tick = setInterval(() => sock.writable && sock.write(' '), 1000);
    let done = false;
    const finish = (at: number | undefined) => {
      if (done) return;
      done = true;
      clearInterval(tick);
      sock.destroy();
      resolve(at);
    };
    let connected = false;
    sock.once('secureConnect', () => (connected = true));
    sock.on('data', () => undefined);
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) slowErrors[err.code ?? err.message] = (slowErrors[err.code ?? err.message] ?? 0) + 1;
      finish((Date.now() - started) / 1000);
    });
    sock.on('close', () => finish((Date.now() - started) / 1000));
    stop.addEventListener('abort', () => finish(undefined));
  });
}

/** Bodies an attacker (or a broken client) can send: 1M-deep raw arrays, and a pod with a 100,000-deep field. */
function deepBodies(): string[] {
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
  const pod = JSON.stringify(podUsing('pvc-1')).replace('"spec":{', `"spec":{"x":${deep(100_000)},`);
  const review = reviewFor(podUsing('pvc-1'), 'deep').replace(JSON.stringify(podUsing('pvc-1')), pod);
  return [deep(1_000_000), review];
}

export async function abuse(opts: AbuseOptions): Promise<AbuseReport> {
  const child = fork(path.join(here, 'webhook-server.js'), ['100'], {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    execArgv: ['--expose-gc'],
  });
  const first = await new Promise<{ port: number; rss: number }>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(JSON.parse(d.toString().split('\n')[0])));
    child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  const { port } = first;
  const sample = () =>
    new Promise<{ rss: number; connections: number }>((resolve) => {
      child.once('message', (m: { rss: number; connections: number }) => resolve(m));
      child.send('rss');
    });
  const legitBody = reviewFor(podUsing('pvc-1'), 'legit');
  for (let i = 0; i < 5; i++) await post(port, legitBody, 15_000); // warm-up
  const base: number[] = [];
  for (let i = 0; i < 20; i++) base.push((await post(port, legitBody, 15_000)).ms);

  const stop = new AbortController();
  setMaxListeners(opts.slow + 10, stop.signal);
  const started = Date.now();
  const slow: Promise<number | undefined>[] = [];
  for (let i = 0; i < opts.slow; i++) {
    slow.push(slowloris(port, started, stop.signal));
    if (i % 50 === 49) await sleep(10); // do not trip our own client's TLS handshakes
  }
  const bodies = deepBodies();
  const statuses: Record<string, number> = {};
  let sent = 0;
  let deepMs = 0;
  const workers = Array.from({ length: opts.deepWorkers }, async (_, w) => {
    for (let i = w; !stop.signal.aborted; i++) {
      const t0 = Date.now();
      try {
        const r = await post(port, bodies[i % bodies.length], 15_000);
        statuses[r.answer] = (statuses[r.answer] ?? 0) + 1;
      } catch (err) {
        const key = (err as Error).message;
        statuses[key] = (statuses[key] ?? 0) + 1;
      }
      sent++;
      deepMs += Date.now() - t0;
    }
  });
  const connections: number[] = [];
  const rss: number[] = [];
  const legit: (number | undefined)[] = [];
  for (let s = 0; s < opts.seconds; s++) {
    const tick = sleep(1000);
    const m = await sample();
    connections.push(m.connections);
    rss.push(m.rss);
    legit.push(
      await post(port, legitBody, 15_000).then(
        (r) => (r.status === 200 ? r.ms : undefined),
        () => undefined,
      ),
    );
    await tick;
  }
  stop.abort();
  const closed = await Promise.all(slow);
  await Promise.all(workers);
  child.kill('SIGTERM');
  const at = closed.filter((x): x is number => x !== undefined);
  return {
    options: opts,
    baselineMs: quantile(base, 0.5),
    connections,
    rss,
    legit,
    slowClosedBy: { at, stillOpen: closed.length - at.length, failedToConnect: { ...slowErrors } },
    deep: { sent, statuses, msPerBody: sent ? deepMs / sent : 0 },
  };
}

export function abuseLines(r: AbuseReport): string[] {
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  const ok = r.legit.filter((x): x is number => x !== undefined);
  const failed = r.legit.length - ok.length;
  const lines = [
    `## Webhook under abuse: ${r.options.slow} slowloris connections + ${r.options.deepWorkers} deep-nesting senders, ${r.options.seconds} s`,
    '(slowloris: TLS, POST /mutate headers announcing 1 MB, then 1 byte/s; deep: a 1,000,000-deep `[[…]]` body and an AdmissionReview whose pod has a 100,000-deep field, back to back)',
    '',
    `legitimate admission before the abuse: median ${r.baselineMs.toFixed(1)} ms`,
    `legitimate admissions during the abuse (1/s, fresh TLS connection): ${ok.length} ok, ${failed} failed or > 15 s; median ${ok.length ? quantile(ok, 0.5).toFixed(1) : '-'} ms, max ${ok.length ? Math.max(...ok).toFixed(1) : '-'} ms`,
    `connections held by the server (each second): ${r.connections.join(' ')}`,
    `RSS (each second): first ${mb(r.rss[0])}, max ${mb(Math.max(...r.rss))}, last ${mb(r.rss[r.rss.length - 1])}`,
    `slowloris connections closed by the server: ${r.slowClosedBy.at.length} (after ${r.slowClosedBy.at.length ? `${Math.min(...r.slowClosedBy.at).toFixed(1)}–${Math.max(...r.slowClosedBy.at).toFixed(1)} s` : '-'}); still open at the end: ${r.slowClosedBy.stillOpen}; failed before the TLS handshake completed: ${JSON.stringify(r.slowClosedBy.failedToConnect)}`,
    `deep bodies: ${r.deep.sent} sent, ${r.deep.msPerBody.toFixed(0)} ms each on average; answers: ${JSON.stringify(r.deep.statuses)}`,
  ];
  return lines;
}
