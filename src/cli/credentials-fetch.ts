// `jfs-sidecar credentials fetch`: the broker-mode init step (ADR 0010). It reads the pod's projected token, asks the
// controller's broker over HTTPS (the server verified against the CA the webhook injected), and writes each value as
// a file named by its env var, mode 0400, into the memory-backed emptyDir the client containers load from. It
// retries while the broker is unreachable or not ready (5xx), and fails at once on a refusal (4xx): a refused pod
// must not start its client. Values are never printed.
import { request } from 'node:https';
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CREDENTIALS_CA_ENV, CREDENTIALS_PATH } from '../contract/keys.js';
import { isCredentialName } from '../mount/credentials.js';

export interface FetchOptions {
  url: string;
  pvc: string;
  volume?: string;
  tokenFile: string;
  out: string;
  /** PEM of the broker's CA (default: $JFS_CREDENTIALS_CA). */
  caPem?: string;
  /** Give up after this long (default 5 minutes, as the mount's startup probe). */
  deadlineMs?: number;
  log?: (line: string) => void;
}

class Refused extends Error {
  override name = 'Refused';
}

function post(url: URL, ca: string, token: string, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        ca,
        minVersion: 'TLSv1.2',
        timeout: 10_000,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/** Asks once; the values, or Refused (4xx), or an Error worth retrying. */
async function ask(opts: FetchOptions, ca: string): Promise<Record<string, string>> {
  // Read each time: the kubelet rotates the projected token.
  const token = readFileSync(opts.tokenFile, 'utf8').trim();
  const url = new URL(CREDENTIALS_PATH, opts.url);
  const { status, text } = await post(url, ca, token, JSON.stringify({ pvc: opts.pvc }));
  let body: { values?: Record<string, unknown>; code?: string; message?: string } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // a proxy's page, say: reported by status below
  }
  if (status >= 400 && status < 500) throw new Refused(`${status} ${body.code ?? ''}: ${body.message ?? text}`);
  if (status !== 200 || !body.values) throw new Error(`${status} ${body.code ?? ''} ${body.message ?? ''}`.trim());
  const values: Record<string, string> = {};
  for (const [name, value] of Object.entries(body.values)) {
    // Each file becomes an env var of the privileged client: only names a JuiceFS client reads.
    if (!isCredentialName(name) || typeof value !== 'string')
      throw new Refused(`the broker answered a variable the client may not take: ${JSON.stringify(name)}`);
    values[name] = value;
  }
  return values;
}

/** Writes the files (atomically each: a temporary name, then rename) and returns their names. */
export function writeCredentialFiles(dir: string, values: Record<string, string>): string[] {
  mkdirSync(dir, { recursive: true });
  for (const [name, value] of Object.entries(values)) {
    const tmp = path.join(dir, `.${name}.tmp`);
    writeFileSync(tmp, value, { mode: 0o400 });
    chmodSync(tmp, 0o400);
    renameSync(tmp, path.join(dir, name));
  }
  return Object.keys(values).sort();
}

/** The whole step; resolves with the names written, rejects when refused or past the deadline. */
export async function fetchCredentials(opts: FetchOptions): Promise<string[]> {
  const ca = opts.caPem ?? process.env[CREDENTIALS_CA_ENV];
  if (!ca) throw new Refused(`no CA for the broker: ${CREDENTIALS_CA_ENV} is not set`);
  const log = opts.log ?? (() => undefined);
  const deadline = Date.now() + (opts.deadlineMs ?? 5 * 60_000);
  const what = `PersistentVolumeClaim ${opts.pvc}${opts.volume ? ` (volume ${opts.volume})` : ''}`;
  for (let attempt = 1; ; attempt++) {
    try {
      const names = writeCredentialFiles(opts.out, await ask(opts, ca));
      log(`credentials of ${what} written to ${opts.out}: ${names.join(', ')}`);
      return names;
    } catch (err) {
      if (err instanceof Refused)
        throw new Error(`the broker refused the credentials of ${what}: ${err.message}`, { cause: err });
      if (Date.now() > deadline)
        throw new Error(`the broker did not answer for ${what}: ${(err as Error).message}`, { cause: err });
      log(`attempt ${attempt}: ${(err as Error).message}; retrying`);
      await sleep(Math.min(10_000, 250 * 2 ** Math.min(attempt, 6)));
    }
  }
}
