// Optional client-certificate authentication (issue 11 class 9): with a
// client CA configured, the admission paths answer only a caller presenting a
// certificate that CA signed (with an accepted CN); the probes stay open.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { pino } from 'pino';
import { generate } from 'selfsigned';
import t from 'tap';
import { generateBundle } from '../../src/certs/generate.js';
import { DEFAULT_GLOBAL_CONFIG } from '../../src/config/schema.js';
import { parseManifests } from '../../src/offline/inject-manifests.js';
import { ObjectView } from '../../src/resolve/object-view.js';
import { buildServer } from '../../src/webhook/server.js';
import { TESTDATA } from '../golden/golden.js';

const objects = parseManifests(readFileSync(path.join(TESTDATA, 'one-pvc.yaml'), 'utf8'), 'one-pvc.yaml');
const pod = objects.find((o) => o.kind === 'Pod')!;
const body = JSON.stringify({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: { uid: 'u-1', kind: { group: '', version: 'v1', kind: 'Pod' }, operation: 'CREATE', namespace: 'team-a', object: pod },
}); // prettier-ignore

async function clientCert(ca: { caCert: string; caKey: string }, cn: string) {
  const c = await generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    ca: { key: ca.caKey, cert: ca.caCert },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'extKeyUsage', clientAuth: true },
    ],
  });
  return { cert: c.cert, key: c.private };
}

function request(port: number, method: string, url: string, client?: { cert: string; key: string }) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path: url,
        method,
        agent: false,
        rejectUnauthorized: false,
        ...client,
        headers: method === 'POST' ? { 'content-type': 'application/json' } : {},
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(method === 'POST' ? body : undefined);
  });
}

t.test('admission answers only the API server when a client CA is configured', async (t) => {
  const serving = await generateBundle({ hosts: ['127.0.0.1'], validityDays: 1 });
  const clientCa = await generateBundle({ hosts: ['unused'], validityDays: 1 });
  const otherCa = await generateBundle({ hosts: ['unused'], validityDays: 1 });
  const app = buildServer({
    view: new ObjectView(objects),
    config: () => DEFAULT_GLOBAL_CONFIG,
    ready: () => true,
    onError: 'deny',
    log: pino({ level: 'silent' }),
    tls: { cert: serving.cert, key: serving.key },
    clientAuth: { ca: clientCa.caCert, names: ['kube-apiserver'] },
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => app.close());
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  const apiServer = await request(port, 'POST', '/mutate', await clientCert(clientCa, 'kube-apiserver'));
  t.equal(apiServer.status, 200, 'the API server’s certificate is answered');
  t.match(JSON.parse(apiServer.body), { response: { uid: 'u-1', allowed: true, patchType: 'JSONPatch' } });

  for (const [who, cert] of [
    ['no certificate', undefined],
    ['a certificate of another CA', await clientCert(otherCa, 'kube-apiserver')],
    ['the right CA but another name', await clientCert(clientCa, 'someone-else')],
  ] as const) {
    const res = await request(port, 'POST', '/mutate', cert);
    t.equal(res.status, 401, who);
    t.same(JSON.parse(res.body), { error: 'Unauthorized', message: 'a client certificate is required' }, who);
  }
  t.equal((await request(port, 'GET', '/healthz')).status, 200, 'probes need no certificate');
  t.equal((await request(port, 'GET', '/readyz')).status, 200);
});
