// Certificates and keys of a throwaway control plane: a CA, the API server's
// serving certificate, client certificates, and the service-account signing key.
import { generateKeyPairSync } from 'node:crypto';
import { generate } from 'selfsigned';

export interface Pem {
  cert: string;
  key: string;
}

const DAY_MS = 24 * 3600 * 1000;
type Attributes = Parameters<typeof generate>[0];
type Extensions = NonNullable<NonNullable<Parameters<typeof generate>[1]>['extensions']>;

/** An EC P-256 certificate valid from an hour ago for 30 days, signed by `ca` (self-signed without one). */
async function issue(attrs: Attributes, extensions: Extensions, ca?: Pem): Promise<Pem> {
  const c = await generate(attrs, {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(Date.now() - 3600_000),
    notAfterDate: new Date(Date.now() + 30 * DAY_MS),
    ...(ca ? { ca: { key: ca.key, cert: ca.cert } } : {}),
    extensions,
  });
  return { cert: c.cert, key: c.private };
}

export function makeCa(cn: string): Promise<Pem> {
  return issue(
    [{ name: 'commonName', value: cn }],
    [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  );
}

export function makeServing(ca: Pem, cn: string, dns: string[], ips: string[]): Promise<Pem> {
  return issue(
    [{ name: 'commonName', value: cn }],
    [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          ...dns.map((value) => ({ type: 2 as const, value })),
          ...ips.map((ip) => ({ type: 7 as const, ip })),
        ],
      },
    ],
    ca,
  );
}

/** A client certificate: CN is the user, O the groups (system:masters for an admin). */
export function makeClient(ca: Pem, user: string, groups: string[]): Promise<Pem> {
  return issue(
    [{ name: 'commonName', value: user }, ...groups.map((g) => ({ name: 'organizationName', value: g }))],
    [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', clientAuth: true },
    ],
    ca,
  );
}

export function makeServiceAccountKey(): { publicKey: string; privateKey: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}
