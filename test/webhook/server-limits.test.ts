// The webhook server's limits (issue 11 class 9): a slow body is cut off
// within the request time limit, the connection count is capped, a body over
// the size limit is a 413 and one nested too deep a 400, both JSON and both
// before JSON.parse; fields of the wrong type are a well-formed denial.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import t from 'tap';
import { DEFAULT_GLOBAL_CONFIG } from '../../src/config/schema.js';
import { parseManifests } from '../../src/offline/inject-manifests.js';
import { ObjectView } from '../../src/resolve/object-view.js';
import { buildServer, type ServerLimits } from '../../src/webhook/server.js';
import { TESTDATA } from '../golden/golden.js';

const objects = parseManifests(readFileSync(path.join(TESTDATA, 'one-pvc.yaml'), 'utf8'), 'one-pvc.yaml');
const pod = objects.find((o) => o.kind === 'Pod')!;

function server(limits: Partial<ServerLimits> = {}) {
  return buildServer({
    view: new ObjectView(objects),
    config: () => DEFAULT_GLOBAL_CONFIG,
    ready: () => true,
    onError: 'deny',
    log: pino({ level: 'silent' }),
    limits,
  });
}

const reviewOf = (object: unknown, request: Record<string, unknown> = {}) => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: 'u-1',
    kind: { group: '', version: 'v1', kind: 'Pod' },
    operation: 'CREATE',
    namespace: 'team-a',
    object,
    ...request,
  },
});

async function listening(limits: Partial<ServerLimits>) {
  const app = server(limits);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  return { app, port: typeof address === 'object' && address ? address.port : 0 };
}

/** Resolves with the ms after which the server closed the socket (and what it answered), or undefined at `giveUpMs`. */
function closedAfter(sock: net.Socket, giveUpMs: number): Promise<{ ms: number; answer: string } | undefined> {
  const t0 = Date.now();
  let answer = '';
  sock.on('data', (d: Buffer) => (answer += d.toString()));
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), giveUpMs);
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ ms: Date.now() - t0, answer });
    });
  });
}

t.test('a body that trickles in is cut off within the request time limit', async (t) => {
  const { app, port } = await listening({ requestTimeoutMs: 1000, headersTimeoutMs: 1000, idleTimeoutMs: 5000 });
  t.teardown(() => app.close());
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.write('POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{');
  const drip = setInterval(() => sock.writable && sock.write(' '), 200);
  const closed = await closedAfter(sock, 5000);
  clearInterval(drip);
  sock.destroy();
  t.ok(closed, 'the server closed the connection');
  t.ok(closed && closed.ms < 2500, `within the limit plus the check interval (${closed?.ms} ms)`);
  t.match(closed?.answer ?? '', /^HTTP\/1\.1 408/, 'answered 408 Request Timeout');
});

t.test('headers that never finish are cut off too', async (t) => {
  const { app, port } = await listening({ requestTimeoutMs: 1000, headersTimeoutMs: 1000, idleTimeoutMs: 5000 });
  t.teardown(() => app.close());
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.write('POST /mutate HTTP/1.1\r\nHost: x\r\n');
  const drip = setInterval(() => sock.writable && sock.write('X-A: b\r\n'), 200);
  const closed = await closedAfter(sock, 5000);
  clearInterval(drip);
  sock.destroy();
  t.ok(closed && closed.ms < 2500, `closed after ${closed?.ms} ms`);
});

t.test('a silent connection is closed after the idle limit', async (t) => {
  const { app, port } = await listening({ idleTimeoutMs: 500 });
  t.teardown(() => app.close());
  const sock = net.connect(port, '127.0.0.1');
  const closed = await closedAfter(sock, 5000);
  sock.destroy();
  t.ok(closed && closed.ms < 2000, `closed after ${closed?.ms} ms`);
});

t.test('connections beyond the cap are dropped', async (t) => {
  const { app, port } = await listening({ maxConnections: 3 });
  t.teardown(() => app.close());
  const socks = Array.from({ length: 6 }, () => net.connect(port, '127.0.0.1').on('error', () => undefined));
  await sleep(300);
  const held = await new Promise<number>((r) => app.server.getConnections((_e, n) => r(n)));
  for (const s of socks) s.destroy();
  t.equal(held, 3, 'the server holds no more than its cap');
});

t.test('the default limits are about 10 s and 3 MiB', async (t) => {
  const app = server();
  await app.ready();
  t.equal(app.server.requestTimeout, 10_000);
  t.equal(app.server.headersTimeout, 10_000);
  t.equal(app.server.keepAliveTimeout, 10_000);
  t.equal(app.server.timeout, 10_000);
  t.equal(app.server.maxConnections, 1024);
  t.equal(app.initialConfig.bodyLimit, 3 * 1024 * 1024);
});

t.test('a body over the size limit is 413 JSON, refused from its Content-Length', async (t) => {
  const app = server({ bodyLimitBytes: 64 * 1024 });
  const res = await app.inject({
    method: 'POST',
    url: '/mutate',
    payload: JSON.stringify(reviewOf({ ...pod, padding: 'x'.repeat(128 * 1024) })),
    headers: { 'content-type': 'application/json' },
  });
  t.equal(res.statusCode, 413);
  t.equal(res.json().error, 'PayloadTooLarge');
  t.type(res.json().message, 'string');
});

t.test('a body nested too deep is 400 JSON, before JSON.parse', async (t) => {
  const app = server();
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
  const podJson = JSON.stringify(pod);
  for (const [name, payload] of [
    ['10,000-deep array', deep(10_000)],
    ['1,000,000-deep array', deep(1_000_000)],
    [
      'a pod with a 10,000-deep field',
      JSON.stringify(reviewOf(pod)).replace(podJson, podJson.replace('"spec":{', `"spec":{"x":${deep(10_000)},`)),
    ],
    ['deep objects', '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000)],
  ]) {
    const t0 = Date.now();
    const res = await app.inject({
      method: 'POST',
      url: '/mutate',
      payload,
      headers: { 'content-type': 'application/json' },
    });
    t.equal(res.statusCode, 400, name);
    t.equal(res.json().error, 'BadRequest', name);
    t.match(res.json().message, /deeper than 100/, name);
    t.ok(Date.now() - t0 < 1000, `${name}: answered in ${Date.now() - t0} ms`);
  }
  // Brackets inside strings are not nesting.
  const inString = structuredClone(pod) as { metadata: { annotations?: Record<string, string> } };
  inString.metadata.annotations = { a: '['.repeat(10_000) + '\\"{'.repeat(100) };
  const res = await app.inject({ method: 'POST', url: '/mutate', payload: reviewOf(inString) });
  t.equal(res.statusCode, 200, 'brackets in strings do not count');
  t.equal(res.json().response.allowed, true);
});

type Json = Record<string, unknown>;
const edit = (f: (p: Json) => void) => {
  const p = structuredClone(pod) as unknown as Json;
  f(p);
  return p;
};
const spec = (p: Json) => p.spec as Json;
const container = (p: Json) => (spec(p).containers as Json[])[0];

const malformed: [string, Json, RegExp][] = [
  ['metadata.labels a string', edit((p) => ((p.metadata as Json).labels = 'a=b')), /metadata\.labels must be a map/],
  ['metadata a list', edit((p) => (p.metadata = [])), /metadata must be an object, not a list/],
  [
    'metadata.annotations values numbers',
    edit((p) => ((p.metadata as Json).annotations = { a: 1 })),
    /annotations\["a"\] must be a string/,
  ],
  ['metadata.name a number', edit((p) => ((p.metadata as Json).name = 7)), /metadata\.name must be a string/],
  ['spec a string', edit((p) => (p.spec = 'x')), /spec must be an object/],
  ['spec.volumes an object', edit((p) => (spec(p).volumes = { data: {} })), /spec\.volumes must be a list/],
  ['spec.volumes[0] null', edit((p) => (spec(p).volumes = [null])), /spec\.volumes\[0\] must be an object, not null/],
  [
    'claimName a number',
    edit((p) => (((spec(p).volumes as Json[])[0].persistentVolumeClaim as Json).claimName = 1)),
    /claimName must be a string/,
  ],
  ['containers a map', edit((p) => (spec(p).containers = { app: {} })), /spec\.containers must be a list/],
  ['env a string', edit((p) => (container(p).env = 'A=1')), /containers\[0\]\.env must be a list/],
  [
    'env value a number',
    edit((p) => (container(p).env = [{ name: 'A', value: 1 }])),
    /env\[0\]\.value must be a string/,
  ],
  ['volumeMounts an object', edit((p) => (container(p).volumeMounts = {})), /volumeMounts must be a list/],
  [
    'securityContext a boolean',
    edit((p) => (container(p).securityContext = true)),
    /securityContext must be an object/,
  ],
  ['initContainers null', edit((p) => (spec(p).initContainers = null)), /initContainers must be a list, not null/],
  ['nodeSelector a list', edit((p) => (spec(p).nodeSelector = ['a'])), /nodeSelector must be a map/],
  ['hostNetwork a string', edit((p) => (spec(p).hostNetwork = 'true')), /hostNetwork must be a boolean/],
];

for (const [name, object, message] of malformed) {
  t.test(`${name} → a well-formed denial`, async (t) => {
    const res = await server().inject({ method: 'POST', url: '/mutate', payload: reviewOf(object) });
    t.equal(res.statusCode, 200);
    const body = res.json();
    t.equal(body.kind, 'AdmissionReview');
    t.equal(body.response.uid, 'u-1');
    t.equal(body.response.allowed, false);
    t.equal(body.response.status.code, 400);
    t.match(body.response.status.message, /invalid-pod/);
    t.match(body.response.status.message, message);
  });
}

t.test('a null creationTimestamp, as the API server sends it, is fine', async (t) => {
  const p = edit((p) => ((p.metadata as Json).creationTimestamp = null));
  const res = await server().inject({ method: 'POST', url: '/mutate', payload: reviewOf(p) });
  t.equal(res.json().response.allowed, true);
  t.ok(res.json().response.patch);
});

t.test('request.object missing, uid a number, request a string', async (t) => {
  const app = server();
  const missing = await app.inject({ method: 'POST', url: '/mutate', payload: reviewOf(undefined) });
  t.equal(missing.statusCode, 200);
  t.equal(missing.json().response.allowed, false);
  t.equal(missing.json().response.status.code, 400);
  const uid = await app.inject({ method: 'POST', url: '/mutate', payload: reviewOf(pod, { uid: 42 }) });
  t.equal(uid.statusCode, 400);
  t.match(uid.json(), { error: 'BadRequest', message: /request\.uid/ });
  const request = await app.inject({
    method: 'POST',
    url: '/mutate',
    payload: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: 'x' },
  });
  t.equal(request.statusCode, 400);
  t.equal(request.json().error, 'BadRequest');
});
