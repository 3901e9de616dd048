// The credential broker's self-managed certificate (ADR 0010), the parts that need no API server: the names it is
// signed for, its CA, the Secret it lives in never backing a volume, and rotation as the broker's decision sees it
// (a pod injected with the CA bundle before a rotation is still the injector's; a CA no bundle ever held is not).
// test/e2e/security-broker-manifests.test.ts proves the Secret, the ConfigMap and the webhook on a real API server.
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import { X509Certificate } from 'node:crypto';
import t from 'tap';
import { bundleIsUsable, generateBundle, mergeCaBundle, serviceHosts, splitPem } from '../../src/certs/generate.js';
import { configFromObjects } from '../../src/config/options.js';
import { CREDENTIALS_CERT_SECRET_NAME, CREDENTIALS_SERVICE_NAME } from '../../src/contract/keys.js';
import { unfitSourceSecret } from '../../src/contract/secret-copy.js';
import { decideCredentials } from '../../src/controller/broker-decision.js';
import { ObjectView } from '../../src/resolve/object-view.js';
import { GOLDEN_BROKER } from '../golden/golden.js';
import { brokerObjects, brokerReview, injectedBrokerPod } from './broker-fixtures.js';

const DAY = 24 * 3600 * 1000;

t.test('the certificate is signed for the broker Service’s names', async (t) => {
  const hosts = serviceHosts(CREDENTIALS_SERVICE_NAME, 'juicefs-system', ['127.0.0.1']);
  t.same(hosts, [
    'jfs-sidecar-credentials.juicefs-system.svc',
    'jfs-sidecar-credentials.juicefs-system.svc.cluster.local',
    'jfs-sidecar-credentials.juicefs-system',
    'jfs-sidecar-credentials',
    '127.0.0.1',
  ]);
  const bundle = await generateBundle({ hosts, validityDays: 365, caName: 'jfs-sidecar-credentials-ca' });
  t.match(new X509Certificate(bundle.caCert).subject, /CN=jfs-sidecar-credentials-ca/, 'a CA of its own name');
  t.ok(bundleIsUsable(bundle, hosts, 30 * DAY), 'usable for those names');
  t.notOk(bundleIsUsable(bundle, ['jfs-sidecar-webhook.juicefs-system.svc'], 30 * DAY), 'not for the webhook’s');
  t.notOk(bundleIsUsable(bundle, hosts, 30 * DAY, new Date(Date.now() + 340 * DAY)), 'due within 30 days of expiry');
  const next = await generateBundle({ hosts, validityDays: 365, caName: 'jfs-sidecar-credentials-ca' });
  const rotated = mergeCaBundle(next.caCert, bundle.caCert);
  t.same(splitPem(rotated), [next.caCert.trim(), bundle.caCert.trim()], 'after a rotation both CAs are trusted');
});

t.test('the broker’s certificate Secret never backs a volume', async (t) => {
  const data = { metaurl: Buffer.from('redis://r/1').toString('base64') };
  t.match(
    unfitSourceSecret({ namespace: 'juicefs-system', name: CREDENTIALS_CERT_SECRET_NAME, type: 'Opaque', data }),
    /credential broker's certificate Secret/,
  );
  t.equal(unfitSourceSecret({ namespace: 'juicefs-system', name: 'jfs-admin', type: 'Opaque', data }), undefined);
});

t.test('a rotation keeps pods injected with the previous bundle the injector’s, and no other CA', async (t) => {
  const objs: KubernetesObject[] = brokerObjects();
  const config = configFromObjects(objs);
  const hosts = serviceHosts(CREDENTIALS_SERVICE_NAME, 'juicefs-system');
  const [before, after, stranger] = await Promise.all(
    [1, 2, 3].map(() => generateBundle({ hosts, validityDays: 1 }).then((b) => b.caCert)),
  );
  const podWith = (caPem: string): V1Pod => injectedBrokerPod(objs, { config, broker: { ...GOLDEN_BROKER, caPem } });
  const review = brokerReview();
  const bundleNow = mergeCaBundle(after, before);
  const decide = (pod: V1Pod, previousCaPems: string[]) => {
    const d = decideCredentials({
      review,
      pod,
      pvcName: 'data',
      view: new ObjectView(objs),
      options: { config, broker: { ...GOLDEN_BROKER, caPem: bundleNow }, previousCaPems },
    });
    return d.allow ? 'allow' : d.code;
  };
  t.equal(decide(podWith(bundleNow), []), 'allow', 'a pod injected after the rotation');
  t.equal(decide(podWith(before), [before]), 'allow', 'a pod injected before it, with the previous bundle');
  t.equal(decide(podWith(before), []), 'foreign-container', 'without the previous bundle it is not recognised');
  t.equal(decide(podWith(stranger), [before]), 'foreign-container', 'a CA no bundle held is never the injector’s');
});
