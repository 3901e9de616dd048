// Generation and inspection of a self-managed CA and serving certificate (the webhook's, the credential broker's).
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { generate } from 'selfsigned';

/** DNS names of a Service as clients in the cluster may spell them, then `extra` (names or IPs): what to sign for. */
export function serviceHosts(service: string, namespace: string, extra: string[] = []): string[] {
  return [
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
    `${service}.${namespace}`,
    service,
    ...extra,
  ];
}

export interface CertBundle {
  caCert: string;
  caKey: string;
  cert: string;
  key: string;
}

const DAY_MS = 24 * 3600 * 1000;

export interface GenerateOptions {
  /** DNS names and IP addresses the serving certificate is valid for. */
  hosts: string[];
  validityDays: number;
  now?: Date;
  /** The CA's common name (default the webhook's). */
  caName?: string;
}

/** A fresh CA, and a serving certificate it signs. EC P-256 keys: quick to make, TLS 1.2+ everywhere. */
export async function generateBundle(opts: GenerateOptions): Promise<CertBundle> {
  const now = opts.now ?? new Date();
  // Back-dated a little so that a slightly slow clock elsewhere still accepts it.
  const notBeforeDate = new Date(now.getTime() - 5 * 60 * 1000);
  const caNotAfter = new Date(now.getTime() + 2 * opts.validityDays * DAY_MS);
  const ca = await generate([{ name: 'commonName', value: opts.caName ?? 'jfs-sidecar-webhook-ca' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate: caNotAfter,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  const serving = await generate([{ name: 'commonName', value: opts.hosts[0] ?? 'jfs-sidecar-webhook' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate: new Date(now.getTime() + opts.validityDays * DAY_MS),
    ca: { key: ca.private, cert: ca.cert },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: opts.hosts.map((h) => (isIP(h) ? { type: 7 as const, ip: h } : { type: 2 as const, value: h })),
      },
    ],
  });
  return { caCert: ca.cert, caKey: ca.private, cert: serving.cert, key: serving.private };
}

/**
 * Whether a serving certificate still fits: signed by the CA, covering the hosts, not within `renewBeforeMs` of expiry.
 */
export function bundleIsUsable(bundle: CertBundle, hosts: string[], renewBeforeMs: number, now = new Date()): boolean {
  try {
    const cert = new X509Certificate(bundle.cert);
    const ca = new X509Certificate(bundle.caCert);
    if (!cert.verify(ca.publicKey)) return false;
    if (new Date(cert.validTo).getTime() - renewBeforeMs <= now.getTime()) return false;
    if (new Date(ca.validTo).getTime() - renewBeforeMs <= now.getTime()) return false;
    return hosts.every((h) => (isIP(h) ? cert.checkIP(h) !== undefined : cert.checkHost(h) !== undefined));
  } catch {
    return false;
  }
}

/** The PEM certificates in a bundle text (a caBundle may hold the old and the new CA). */
export function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
}

/** New CA first, then any previous CA still valid, so clients trust both during a rotation. */
export function mergeCaBundle(newCa: string, previousBundle: string | undefined, now = new Date()): string {
  const keep = splitPem(previousBundle ?? '').filter((pem) => {
    try {
      return new Date(new X509Certificate(pem).validTo).getTime() > now.getTime() && pem.trim() !== newCa.trim();
    } catch {
      return false;
    }
  });
  return [newCa.trim(), ...keep.map((p) => p.trim())].join('\n') + '\n';
}
