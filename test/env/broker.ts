// The credential broker as a caller sees it (the broker e2e suites): its audience, as the contract names it
// (a literal on purpose: the tests check the product's constant, not the other way round), and one request.
import https from 'node:https';

export const BROKER_AUDIENCE = 'juicefs.com/credentials';

/** The broker's answer to a POST with this bearer token, over TLS verified with `ca` only. */
export function askBroker(
  url: string,
  ca: string,
  token: string,
  pvc: string,
): Promise<{ status: number; code?: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL('/v1/credentials', url),
      { method: 'POST', ca, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          const parsed = JSON.parse(text || '{}') as { code?: string };
          resolve({ status: res.statusCode ?? 0, code: parsed.code });
        });
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ pvc }));
  });
}
