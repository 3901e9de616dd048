// Self-managed certificates against a real API server: the shared Secret,
// the caBundle in the MutatingWebhookConfiguration, renewal with the old CA
// kept, and replicas racing to create the Secret.
import { AdmissionregistrationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { X509Certificate } from 'node:crypto';
import { pino } from 'pino';
import t from 'tap';
import { splitPem } from '../../src/certs/generate.js';
import { SecretCertSource } from '../../src/certs/manager.js';
import { registerLoopbackWebhook } from '../../src/local/webhook-stack.js';
import { startControlPlane } from '../env/harness.js';

t.test('self-managed certificates', async (t) => {
  const cp = await startControlPlane(t);
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  const admission = admin.makeApiClient(AdmissionregistrationV1Api);
  await registerLoopbackWebhook(admin, 1);
  const hosts = ['jfs-sidecar-webhook.juicefs-system.svc', '127.0.0.1'];
  const source = (renewBeforeDays: number, h = hosts) =>
    new SecretCertSource({
      kubeConfig: admin,
      namespace: 'juicefs-system',
      secretName: 'jfs-sidecar-webhook-certs',
      webhookConfigName: 'jfs-sidecar-webhook',
      hosts: h,
      validityDays: 30,
      renewBeforeDays,
      checkIntervalMs: 60_000,
      log: pino({ level: 'silent' }),
    });
  const bundleOf = async () => {
    const mwc = await admission.readMutatingWebhookConfiguration({ name: 'jfs-sidecar-webhook' });
    const bundles = new Set((mwc.webhooks ?? []).map((w) => w.clientConfig.caBundle));
    t.equal(bundles.size, 1, 'every webhook has the same caBundle');
    return Buffer.from([...bundles][0] ?? '', 'base64').toString();
  };

  // Two replicas start at once with no Secret: one creates it, the other adopts it.
  const [a, b] = await Promise.all([source(1).ensure(), source(1).ensure()]);
  t.equal(a.cert, b.cert, 'racing replicas end up with one certificate');
  const secret = await core.readNamespacedSecret({ name: 'jfs-sidecar-webhook-certs', namespace: 'juicefs-system' });
  t.same(Object.keys(secret.data!).sort(), ['ca-bundle.crt', 'ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
  let bundle = await bundleOf();
  t.equal(splitPem(bundle).length, 1, 'one CA in the bundle');
  const firstCa = new X509Certificate(splitPem(bundle)[0]);
  t.ok(new X509Certificate(a.cert).verify(firstCa.publicKey), 'the serving certificate is signed by the published CA');

  t.equal((await source(1).ensure()).cert, a.cert, 'a usable certificate is kept');

  // Renewal: due when inside the renew-before window.
  const renewed = await source(31).ensure();
  t.not(renewed.cert, a.cert, 'renewed inside the renew-before window');
  bundle = await bundleOf();
  const cas = splitPem(bundle).map((p) => new X509Certificate(p));
  t.equal(cas.length, 2, 'the bundle holds the new and the old CA');
  t.ok(new X509Certificate(renewed.cert).verify(cas[0].publicKey), 'new certificate: trusted through the new CA');
  t.ok(
    new X509Certificate(a.cert).verify(cas[1].publicKey),
    'old certificate (replicas not yet reloaded): still trusted',
  );

  // A change of hosts (e.g. the Service renamed) also renews.
  const moved = await source(1, [...hosts, 'jfs-sidecar-webhook.other.svc']).ensure();
  t.ok(new X509Certificate(moved.cert).checkHost('jfs-sidecar-webhook.other.svc'), 'new host covered');
});
