// A JuiceFS volume as the controller uses it: formatted once (idempotently),
// mounted while operations need it (reference-counted: one mount per volume
// shared by every queued operation, unmounted after a short idle linger),
// directories created and removed, quotas set by a bounded pool.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { FORMAT_FLAG_KEY_PREFIX, SECRET_KEYS } from '../contract/keys.js';
import { formatFlagKey, normaliseSecretText, parseEnvs } from '../contract/secret-copy.js';
import { ENV_METAURL, expandEnvReferences, FormatError, formatCommand } from '../mount/format.js';
import { KeyedPool } from '../util/pool.js';
import type { JuicefsCli } from './cli.js';
import { isJuicefsMount, readMounts } from './mounts.js';

export interface VolumeCredentials {
  metaurl: string;
  name?: string;
  storage?: string;
  bucket?: string;
  accessKey?: string;
  secretKey?: string;
  /** `juicefs format` flag → value, from `format-options` and the Secret's own format keys. */
  formatFlags: Record<string, string>;
  envs: Record<string, string>;
}

export class CredentialsError extends Error {
  override name = 'CredentialsError';
}

/** Credentials from a CSI `secrets` map (the Secret's keys, as the provisioner passes them). */
export function credentialsFromSecrets(secrets: Record<string, string> | undefined): VolumeCredentials {
  const s = normaliseSecretText(secrets);
  if (!s[SECRET_KEYS.metaurl]) throw new CredentialsError(`secrets: key "${SECRET_KEYS.metaurl}" is missing`);
  let envs: Record<string, string>;
  try {
    envs = parseEnvs(s[SECRET_KEYS.envs]);
  } catch (err) {
    throw new CredentialsError(`secrets: ${(err as Error).message}`);
  }
  return {
    metaurl: s[SECRET_KEYS.metaurl],
    name: s[SECRET_KEYS.name],
    storage: s[SECRET_KEYS.storage],
    bucket: s[SECRET_KEYS.bucket],
    accessKey: s[SECRET_KEYS.accessKey],
    secretKey: s[SECRET_KEYS.secretKey],
    formatFlags: Object.fromEntries(
      Object.entries(s)
        .filter(([k]) => k.startsWith(FORMAT_FLAG_KEY_PREFIX))
        .map(([k, v]): [string, string] => [k.slice(FORMAT_FLAG_KEY_PREFIX.length), v]),
    ),
    envs,
  };
}

function secretsOf(c: VolumeCredentials): string[] {
  return [c.metaurl, c.accessKey ?? '', c.secretKey ?? ''];
}

function envOf(c: VolumeCredentials): Record<string, string> {
  return {
    ...c.envs,
    ...(c.accessKey ? { ACCESS_KEY: c.accessKey } : {}),
    ...(c.secretKey ? { SECRET_KEY: c.secretKey } : {}),
  };
}

/**
 * Why the volume's metadata engine does not answer `juicefs status` (its error, credentials redacted), or undefined
 * when it does: the validating webhook's opt-in check of a Secret.
 */
export async function metadataStatusProblem(
  cli: JuicefsCli,
  c: VolumeCredentials,
  timeoutMs = 4000,
): Promise<string | undefined> {
  try {
    await cli.run(['status', c.metaurl], secretsOf(c), { env: envOf(c), timeoutMs });
    return undefined;
  } catch (err) {
    return `juicefs status failed: ${(err as Error).message}`;
  }
}

interface ActiveMount {
  dir: string;
  users: number;
  ready: Promise<void>;
  linger?: NodeJS.Timeout;
}

export class JuicefsVolumes {
  private readonly formatted = new Set<string>();
  private readonly mounts = new Map<string, ActiveMount>();
  // Quota commands (`juicefs quota set` / `delete`: one process each, the client's only quota API) of one
  // volume, a few at a time: most of a command is process start-up and opening the metadata engine, which
  // overlap; on a single-writer engine (SQLite) their transactions still queue. Measured on SQLite, 2 cores
  // (ADR 0024): 37 ms each one at a time, 23 ms at 4, 28 ms at 8.
  private readonly metaPool: KeyedPool;

  constructor(
    private readonly cli: JuicefsCli,
    private readonly stateDir: string,
    private readonly log: Logger,
    private readonly lingerMs = 5_000,
    metaConcurrency = 4,
  ) {
    mkdirSync(path.join(stateDir, 'mnt'), { recursive: true });
    this.metaPool = new KeyedPool(metaConcurrency);
  }

  private key(c: VolumeCredentials): string {
    return createHash('sha256').update(c.metaurl).digest('hex').slice(0, 16);
  }

  /** Unmounts what a previous run of this process left mounted (it may have been killed mid-operation). */
  async cleanupStale(): Promise<void> {
    const base = path.join(this.stateDir, 'mnt');
    for (const name of readdirSync(base)) {
      const dir = path.join(base, name);
      if (readMounts().some((m) => m.mountPoint === dir)) {
        this.log.info({ dir }, 'unmounting a mount left by a previous run');
        await this.cli
          .run(['umount', '--force', dir], [])
          .catch((err) => this.log.warn({ err: (err as Error).message }, 'stale unmount failed'));
      }
    }
  }

  /**
   * `juicefs format --no-update` when the credentials name an object storage: creates the volume once, never changes
   * it.
   */
  async ensureFormatted(c: VolumeCredentials): Promise<void> {
    const key = this.key(c);
    if (this.formatted.has(key) || (!c.storage && !c.bucket)) return;
    // The same step as the format init container's (mount/format.ts), expanded here as kubelet expands it.
    const values: Record<string, string | undefined> = {
      [SECRET_KEYS.name]: c.name,
      [SECRET_KEYS.storage]: c.storage,
      [SECRET_KEYS.bucket]: c.bucket,
      [SECRET_KEYS.accessKey]: c.accessKey,
      [SECRET_KEYS.secretKey]: c.secretKey,
    };
    for (const [flag, value] of Object.entries(c.formatFlags)) values[formatFlagKey(flag)] = value;
    const keys = Object.keys(values).filter((k) => values[k] !== undefined && !k.startsWith(FORMAT_FLAG_KEY_PREFIX));
    let step;
    try {
      step = formatCommand(keys, Object.keys(c.formatFlags));
    } catch (err) {
      if (err instanceof FormatError) throw new CredentialsError(`secrets: ${err.message}`);
      throw err;
    }
    const refs: Record<string, string> = Object.fromEntries([
      [ENV_METAURL, c.metaurl],
      ...step.env.map((e): [string, string] => [e.name, values[e.key]!]),
    ]);
    const args = expandEnvReferences(step.args.slice(1), refs);
    await this.cli.run(args, secretsOf(c), { env: envOf(c) });
    this.formatted.add(key);
  }

  /** Runs `fn` with the volume's root mounted; the mount is shared by concurrent callers and dropped after a linger. */
  async withMount<T>(c: VolumeCredentials, fn: (root: string) => Promise<T>): Promise<T> {
    await this.ensureFormatted(c);
    const key = this.key(c);
    let m = this.mounts.get(key);
    if (!m) {
      const dir = path.join(this.stateDir, 'mnt', key);
      mkdirSync(dir, { recursive: true });
      const ready = isJuicefsMount(dir)
        ? Promise.resolve()
        : this.cli
            .run(
              [
                'mount',
                '-d',
                '--no-usage-report',
                `--cache-dir=${path.join(this.stateDir, 'cache')}`,
                `--log=${path.join(this.stateDir, `mount-${key}.log`)}`,
                c.metaurl,
                dir,
              ],
              secretsOf(c),
              { env: envOf(c), timeoutMs: 120_000 },
            )
            .then(() => undefined);
      m = { dir, users: 0, ready };
      this.mounts.set(key, m);
      ready.catch(() => this.mounts.delete(key));
    }
    m.users++;
    if (m.linger) clearTimeout(m.linger);
    m.linger = undefined;
    try {
      await m.ready;
      return await fn(m.dir);
    } finally {
      m.users--;
      if (m.users === 0) {
        const current = m;
        current.linger = setTimeout(() => void this.unmount(key, current), this.lingerMs);
      }
    }
  }

  private async unmount(key: string, m: ActiveMount): Promise<void> {
    if (m.users > 0 || this.mounts.get(key) !== m) return;
    this.mounts.delete(key);
    if (!existsSync(m.dir) || !isJuicefsMount(m.dir)) return;
    await this.cli.run(['umount', m.dir], []).catch(async () => {
      await this.cli
        .run(['umount', '--force', m.dir], [])
        .catch((err) => this.log.warn({ dir: m.dir, err: (err as Error).message }, 'unmount failed'));
    });
  }

  /** Unmounts everything now (shutdown). */
  async close(): Promise<void> {
    for (const [key, m] of [...this.mounts]) {
      if (m.linger) clearTimeout(m.linger);
      m.users = 0;
      await m.ready.catch(() => undefined);
      await this.unmount(key, m);
    }
  }

  /** Sets the directory quota (whole GiB, rounded up, as juicefs takes it). Returns the bytes it stands for. */
  async setQuota(c: VolumeCredentials, dir: string, bytes: number): Promise<number> {
    const gib = Math.max(1, Math.ceil(bytes / 2 ** 30));
    await this.metaPool.run(this.key(c), () =>
      this.cli.run(['quota', 'set', c.metaurl, `--path=/${dir}`, `--capacity=${gib}`], secretsOf(c), { env: envOf(c) }),
    );
    return gib * 2 ** 30;
  }

  async deleteQuota(c: VolumeCredentials, dir: string): Promise<void> {
    await this.metaPool
      .run(this.key(c), () =>
        this.cli.run(['quota', 'delete', c.metaurl, `--path=/${dir}`], secretsOf(c), { env: envOf(c) }),
      )
      .catch((err) => {
        // No quota there is the state we want.
        if (!/not exist|no quota|not found|no such file/i.test((err as Error).message)) throw err;
      });
  }

  /**
   * Copies a directory tree inside one mounted volume without copying its data (`juicefs clone -p`: a metadata
   * copy, owners and modes kept), for snapshots and their restores.
   */
  async cloneTree(root: string, from: string, to: string): Promise<void> {
    await this.cli.run(['clone', '-p', path.join(root, from), path.join(root, to)], [], { timeoutMs: 600_000 });
  }

  /** Removes a directory tree with juicefs' server-side rmr (fast, and moves nothing through FUSE). */
  async removeTree(root: string, dir: string): Promise<void> {
    const target = path.join(root, dir);
    if (!existsSync(target)) return;
    await this.cli.run(['rmr', '--skip-trash', target], [], { timeoutMs: 600_000 }).catch(async (err) => {
      // Older clients have no --skip-trash.
      if (!/flag provided but not defined/.test((err as Error).message)) throw err;
      await this.cli.run(['rmr', target], [], { timeoutMs: 600_000 });
    });
  }
}
