// The webhook's HTTP surface through fastify.inject: bad input never crashes
// it, denials are well-formed, readiness follows the caches.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { DEFAULT_GLOBAL_CONFIG } from '../../src/config/schema.js';
import { parseManifests } from '../../src/offline/inject-manifests.js';
import { ObjectView } from '../../src/resolve/object-view.js';
import type { ClusterView } from '../../src/resolve/resolve.js';
import { buildServer } from '../../src/webhook/server.js';
import { TESTDATA } from '../golden/golden.js';

const objects = parseManifests(readFileSync(path.join(TESTDATA, 'one-pvc.yaml'), 'utf8'), 'one-pvc.yaml');
const pod = objects.find((o) => o.kind === 'Pod')!;

function server(opts: { ready?: boolean; view?: ClusterView; onError?: 'deny' | 'allow' } = {}) {
  return buildServer({
    view: opts.view ?? new ObjectView(objects),
    config: () => DEFAULT_GLOBAL_CONFIG,
    ready: () => opts.ready ?? true,
    onError: opts.onError ?? 'deny',
    log: pino({ level: 'silent' }),
    limits: { bodyLimitBytes: 64 * 1024 },
  });
}

function reviewOf(object: unknown, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'u-1',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      operation: 'CREATE',
      namespace: 'team-a',
      object,
      ...extra,
    },
  };
}

t.test('a pod with a JuiceFS PVC gets a JSONPatch', async (t) => {
  const app = server();
  const res = await app.inject({ method: 'POST', url: '/mutate', payload: reviewOf(pod) });
  t.equal(res.statusCode, 200);
  const body = res.json();
  t.equal(body.apiVersion, 'admission.k8s.io/v1');
  t.equal(body.kind, 'AdmissionReview');
  t.equal(body.response.uid, 'u-1');
  t.equal(body.response.allowed, true);
  t.equal(body.response.patchType, 'JSONPatch');
  const ops = JSON.parse(Buffer.from(body.response.patch, 'base64').toString());
  t.ok(Array.isArray(ops) && ops.length > 0, 'patch has operations');
  t.ok(
    ops.every((op: { op: string; path: string }) => typeof op.op === 'string' && op.path.startsWith('/')),
    'JSON Patch operations',
  );
});

const badBodies: [string, { payload: string; headers?: Record<string, string> }][] = [
  ['invalid JSON', { payload: '{"apiVersion": ', headers: { 'content-type': 'application/json' } }],
  ['wrong content type', { payload: 'apiVersion: x', headers: { 'content-type': 'text/yaml' } }],
  ['not an object', { payload: '[1,2]', headers: { 'content-type': 'application/json' } }],
  [
    'not an AdmissionReview',
    { payload: JSON.stringify({ kind: 'Pod' }), headers: { 'content-type': 'application/json' } },
  ],
  [
    'admission v1beta1',
    {
      payload: JSON.stringify({ ...reviewOf(pod), apiVersion: 'admission.k8s.io/v1beta1' }),
      headers: { 'content-type': 'application/json' },
    },
  ],
  [
    'missing request',
    {
      payload: JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }),
      headers: { 'content-type': 'application/json' },
    },
  ],
  [
    'missing request.uid',
    {
      payload: JSON.stringify({ ...reviewOf(pod), request: { ...reviewOf(pod).request, uid: undefined } }),
      headers: { 'content-type': 'application/json' },
    },
  ],
];

for (const [name, req] of badBodies) {
  t.test(`${name} → 400 with a message`, async (t) => {
    const app = server();
    const res = await app.inject({ method: 'POST', url: '/mutate', ...req });
    t.equal(res.statusCode, 400);
    const body = res.json();
    t.equal(body.error, 'BadRequest');
    t.type(body.message, 'string');
    t.ok(body.message.length > 0);
    // And the server still answers.
    const ok = await app.inject({ method: 'GET', url: '/healthz' });
    t.equal(ok.statusCode, 200);
  });
}

t.test('a missing PVC is a well-formed denial naming the object', async (t) => {
  const app = server();
  const bad = structuredClone(pod) as { spec: { volumes: { persistentVolumeClaim: { claimName: string } }[] } };
  bad.spec.volumes[0].persistentVolumeClaim.claimName = 'nope';
  const res = await app.inject({ method: 'POST', url: '/mutate', payload: reviewOf(bad) });
  t.equal(res.statusCode, 200);
  const { response } = res.json();
  t.equal(response.allowed, false);
  t.equal(response.uid, 'u-1');
  t.equal(response.status.code, 403);
  t.match(response.status.message, /PersistentVolumeClaim team-a\/nope/);
  t.match(response.status.message, /pvc-not-found/);
});

t.test('request.object that is not a pod is denied, not crashed on', async (t) => {
  const res = await server().inject({ method: 'POST', url: '/mutate', payload: reviewOf('a string') });
  t.equal(res.statusCode, 200);
  t.equal(res.json().response.allowed, false);
});

t.test('other kinds and operations pass unchanged', async (t) => {
  const app = server();
  for (const extra of [
    { operation: 'UPDATE' },
    { kind: { group: '', version: 'v1', kind: 'Service' } },
    { subResource: 'ephemeralcontainers' },
  ]) {
    const res = await app.inject({ method: 'POST', url: '/mutate', payload: reviewOf(pod, extra) });
    const { response } = res.json();
    t.equal(response.allowed, true);
    t.notOk(response.patch, `no patch for ${JSON.stringify(extra)}`);
  }
});

t.test('an internal failure follows the configured policy', async (t) => {
  const broken: ClusterView = {
    getPvc: () => {
      throw new TypeError('cache exploded');
    },
    getPv: () => undefined,
    getStorageClass: () => undefined,
    getSecret: () => undefined,
  };
  const denied = (
    await server({ view: broken, onError: 'deny' }).inject({ method: 'POST', url: '/mutate', payload: reviewOf(pod) })
  ).json();
  t.equal(denied.response.allowed, false);
  t.equal(denied.response.status.code, 500);
  t.match(denied.response.status.message, /cache exploded/);
  const allowed = (
    await server({ view: broken, onError: 'allow' }).inject({ method: 'POST', url: '/mutate', payload: reviewOf(pod) })
  ).json();
  t.equal(allowed.response.allowed, true);
  t.notOk(allowed.response.patch);
  t.match(allowed.response.warnings[0], /internal error/);
});

t.test('dry-run reviews are answered the same way (admission has no side effects)', async (t) => {
  const res = await server().inject({ method: 'POST', url: '/mutate', payload: reviewOf(pod, { dryRun: true }) });
  t.equal(res.json().response.allowed, true);
  t.ok(res.json().response.patch);
});

t.test('serverless path uses emptyDir', async (t) => {
  const res = await server().inject({ method: 'POST', url: '/mutate-serverless', payload: reviewOf(pod) });
  const ops = JSON.parse(Buffer.from(res.json().response.patch, 'base64').toString()) as {
    path: string;
    value?: unknown;
  }[];
  t.ok(JSON.stringify(ops).includes('"emptyDir"'), 'emptyDir in the patch');
  t.notOk(JSON.stringify(ops).includes('"hostPath"'), 'no hostPath');
});

t.test("the reference driver's webhook paths answer as ours do (its configuration works unedited)", async (t) => {
  const patchAt = async (url: string) => {
    const res = await server().inject({ method: 'POST', url, payload: reviewOf(pod) });
    t.equal(res.statusCode, 200, url);
    return res.json().response.patch as string;
  };
  t.equal(await patchAt('/juicefs/inject-v1-pod'), await patchAt('/mutate'), 'sidecar');
  t.equal(await patchAt('/juicefs/serverless/inject-v1-pod'), await patchAt('/mutate-serverless'), 'serverless');
  t.not(await patchAt('/mutate'), await patchAt('/mutate-serverless'), 'and the two modes differ');
});

t.test('readiness follows the caches; metrics count results', async (t) => {
  t.equal((await server({ ready: false }).inject({ method: 'GET', url: '/readyz' })).statusCode, 503);
  const app = server({ ready: true });
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
  await app.inject({ method: 'POST', url: '/mutate', payload: reviewOf(pod) });
  await app.inject({ method: 'POST', url: '/mutate', payload: '{', headers: { 'content-type': 'application/json' } });
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  t.match(metrics, /jfs_sidecar_admissions_total\{path="\/mutate",result="injected"\} 1/);
  t.match(metrics, /jfs_sidecar_admissions_total\{path="\/mutate",result="bad-request"\} 1/);
  t.match(metrics, /jfs_sidecar_admission_duration_seconds_bucket/);
});

t.test('unknown paths are 404', async (t) => {
  t.equal((await server().inject({ method: 'GET', url: '/nope' })).statusCode, 404);
});

t.test('the validating paths: Secrets and PVs judged, anything else allowed, bad input a 400', async (t) => {
  const existing = {
    metadata: { name: 'pv-a' },
    spec: { csi: { driver: 'csi.juicefs.com', volumeHandle: 'vol-1' } },
  };
  const statusAsked: string[] = [];
  const app = buildServer({
    view: new ObjectView(objects),
    config: () => DEFAULT_GLOBAL_CONFIG,
    ready: () => true,
    onError: 'deny',
    log: pino({ level: 'silent' }),
    validation: {
      pvs: () => [existing],
      secretStatus: async (s) => {
        statusAsked.push(s.metadata?.name ?? '');
        return s.metadata?.name === 'unreachable' ? 'juicefs status failed: exit 1' : undefined;
      },
    },
  });
  const ask = async (url: string, object: unknown, kind: string, operation = 'CREATE') => {
    const res = await app.inject({
      method: 'POST',
      url,
      payload: reviewOf(object, { kind: { group: '', version: 'v1', kind }, operation }),
    });
    t.equal(res.statusCode, 200, `${url} ${kind} ${operation}`);
    return res.json().response as { allowed: boolean; status?: { message: string }; warnings?: string[] };
  };
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const twin = { metadata: { name: 'pv-b' }, spec: { csi: { driver: 'csi.juicefs.com', volumeHandle: 'vol-1' } } };
  t.match(await ask('/validate', twin, 'PersistentVolume'), { allowed: false, status: { message: /already/ } });
  t.match(await ask('/juicefs/validate-pv', twin, 'PersistentVolume'), { allowed: false }, "the reference's path");
  t.match(await ask('/validate', twin, 'PersistentVolume', 'UPDATE'), { allowed: true }, 'only PV CREATE');
  const bad = { metadata: { name: 'bad' }, type: 'Opaque', data: { metaurl: b64('http://x') } };
  t.match(await ask('/juicefs/validate-secret', bad, 'Secret', 'UPDATE'), {
    allowed: false,
    status: { message: /Secret team-a\/bad: metaurl scheme "http"/ },
  });
  t.same(statusAsked, [], 'a malformed Secret is refused before its metadata engine is asked');
  const down = { metadata: { name: 'unreachable' }, type: 'Opaque', data: { metaurl: b64('redis://r/1') } };
  t.match(await ask('/validate', down, 'Secret'), { allowed: false, status: { message: /juicefs status failed/ } });
  const good = { metadata: { name: 'good' }, type: 'Opaque', data: { metaurl: b64('redis://r/1') } };
  t.match(await ask('/validate', good, 'Secret'), { allowed: true });
  t.same(statusAsked, ['unreachable', 'good']);
  t.match(await ask('/validate', pod, 'Pod'), { allowed: true }, 'another kind: allowed unchanged');
  for (const payload of [
    'nope',
    { kind: 'AdmissionReview' },
    { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} },
  ]) {
    const res = await app.inject({ method: 'POST', url: '/validate', payload });
    t.equal(res.statusCode, 400, JSON.stringify(payload));
  }
});
