import { X509Certificate } from 'node:crypto';
import t from 'tap';
import { bundleIsUsable, generateBundle, mergeCaBundle, splitPem } from '../../src/certs/generate.js';
import { setTimeout as sleep } from 'node:timers/promises';

const hosts = ['jfs-sidecar-webhook.juicefs-system.svc', '127.0.0.1'];

t.test('a generated bundle is a CA and a serving certificate for the hosts', async (t) => {
  const b = await generateBundle({ hosts, validityDays: 30 });
  const ca = new X509Certificate(b.caCert);
  const cert = new X509Certificate(b.cert);
  t.ok(ca.ca, 'CA certificate has cA set');
  t.notOk(cert.ca, 'serving certificate is not a CA');
  t.ok(cert.verify(ca.publicKey), 'serving certificate is signed by the CA');
  t.ok(cert.checkHost(hosts[0]), 'covers the service DNS name');
  t.ok(cert.checkIP('127.0.0.1'), 'covers loopback');
  t.ok(bundleIsUsable(b, hosts, 24 * 3600 * 1000), 'usable');
  t.notOk(bundleIsUsable(b, ['other.example'], 0), 'not usable for a host it does not cover');
  t.notOk(bundleIsUsable(b, hosts, 31 * 24 * 3600 * 1000), 'due for renewal within the renew-before window');
});

t.test('the CA bundle keeps the previous CA during a rotation', async (t) => {
  const a = await generateBundle({ hosts, validityDays: 30 });
  const b = await generateBundle({ hosts, validityDays: 30 });
  const merged = mergeCaBundle(b.caCert, a.caCert);
  const pems = splitPem(merged);
  t.equal(pems.length, 2);
  t.equal(pems[0].trim(), b.caCert.trim(), 'new CA first');
  t.equal(splitPem(mergeCaBundle(b.caCert, merged)).length, 2, 'no duplicate when merged again');
});

t.test('--cert-dir: files are used as they are and reloaded when they change', async (t) => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const { pino } = await import('pino');
  const { FileCertSource } = await import('../../src/certs/manager.js');
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-certdir-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.notOk(FileCertSource.usable(dir), 'an empty folder is not used');
  const first = await generateBundle({ hosts, validityDays: 1 });
  writeFileSync(path.join(dir, 'tls.crt'), first.cert);
  writeFileSync(path.join(dir, 'tls.key'), first.key);
  t.ok(FileCertSource.usable(dir));
  const source = new FileCertSource(dir, pino({ level: 'silent' }));
  let changed: string | undefined;
  const loaded = await source.start((next) => (changed = next.cert));
  t.teardown(() => source.stop());
  t.equal(loaded.cert, first.cert);
  const second = await generateBundle({ hosts, validityDays: 1 });
  writeFileSync(path.join(dir, 'tls.key'), second.key);
  writeFileSync(path.join(dir, 'tls.crt'), second.cert);
  const deadline = Date.now() + 15_000;
  while (!changed && Date.now() < deadline) await sleep(250);
  t.equal(changed, second.cert, 'the new certificate is handed over');
});
