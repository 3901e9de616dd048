// The idempotent `juicefs format --no-update` step, rendered once: as the
// argv of the sidecar's or Mount Pod's format init container (Secret values
// reach it only through env and Kubernetes' $(VAR) expansion), and, expanded
// here as kubelet would, as the controller's own command line.
import { SECRET_KEYS } from '../contract/keys.js';
import { formatFlagKey } from '../contract/secret-copy.js';

/** Env var of the client that holds the metaurl (the Secret's `metaurl` key). */
export const ENV_METAURL = 'JFS_METAURL';
const ENV_NAME = 'JFS_NAME';
const ENV_STORAGE = 'JFS_STORAGE';
const ENV_BUCKET = 'JFS_BUCKET';

/**
 * The flags of `juicefs format` (Community Edition, the union over v1.0–v1.4 of
 * cmd/format.go, global flags included): juicefs exits with "unknown option"
 * on any other, so `format-options` naming one is refused instead of leaving
 * the format step failing in every pod.
 */
export const JUICEFS_FORMAT_FLAGS: ReadonlySet<string> = new Set(
  (
    'access-key block-size bucket capacity compress enable-acl encrypt-algo encrypt-rsa-key force hash-prefix ' +
    'inodes kerberos-config-file no-update ranger-rest-url ranger-service secret-key session-token shards storage ' +
    'storage-class tag trash-days verbose debug v quiet q trace log-level log-id no-agent pyroscope no-color'
  ).split(' '),
);

export class FormatError extends Error {
  override name = 'FormatError';
}

/** Whether a Secret with these keys asks for `juicefs format` (it names an object storage). */
export function needsFormat(keys: readonly string[]): boolean {
  return keys.includes(SECRET_KEYS.storage) || keys.includes(SECRET_KEYS.bucket);
}

export interface FormatCommand {
  /** `juicefs format …`, reading Secret values as $(VAR) (the metaurl as $(JFS_METAURL)). */
  args: string[];
  /**
   * The env vars it reads besides JFS_METAURL, each from a Secret key; juicefs reads ACCESS_KEY and SECRET_KEY itself.
   */
  env: { name: string; key: string }[];
}

/** The env var that carries a format flag's value into the format step. */
export function formatFlagEnv(flag: string): string {
  return `JFS_FORMAT_${flag.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/**
 * The format step for a normalised Secret (src/contract/secret-copy.ts) with these keys and format flags;
 * FormatError when it cannot be formatted. Every value is a $(VAR) of an env var from a Secret key: the flags' values
 * (from `format-options` or keys of their own) included, so a credential given there stays out of argv.
 */
export function formatCommand(keys: readonly string[], formatFlags: readonly string[]): FormatCommand {
  const has = new Set(keys);
  if (!has.has(SECRET_KEYS.name)) throw new FormatError(`key "${SECRET_KEYS.name}" is needed to format the volume`);
  const env: FormatCommand['env'] = [{ name: ENV_NAME, key: SECRET_KEYS.name }];
  const args = ['juicefs', 'format', '--no-update'];
  if (has.has(SECRET_KEYS.storage)) {
    env.push({ name: ENV_STORAGE, key: SECRET_KEYS.storage });
    args.push(`--storage=$(${ENV_STORAGE})`);
  }
  if (has.has(SECRET_KEYS.bucket)) {
    env.push({ name: ENV_BUCKET, key: SECRET_KEYS.bucket });
    args.push(`--bucket=$(${ENV_BUCKET})`);
  }
  if (has.has(SECRET_KEYS.accessKey)) env.push({ name: 'ACCESS_KEY', key: SECRET_KEYS.accessKey });
  if (has.has(SECRET_KEYS.secretKey)) env.push({ name: 'SECRET_KEY', key: SECRET_KEYS.secretKey });
  for (const flag of formatFlags) {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(flag) || !JUICEFS_FORMAT_FLAGS.has(flag))
      throw new FormatError(
        `format-options: "${flag}" is no flag of juicefs format (which would exit with "unknown option")`,
      );
    if (flag === 'no-update') continue; // the step is always --no-update
    env.push({ name: formatFlagEnv(flag), key: formatFlagKey(flag) });
    args.push(`--${flag}=$(${formatFlagEnv(flag)})`);
  }
  args.push(`$(${ENV_METAURL})`, `$(${ENV_NAME})`);
  return { args, env };
}

/**
 * Kubernetes' expansion of a container's command: `$(VAR)` of a known VAR is
 * its value, `$$` is `$`, anything else stays as written. For running a
 * rendered command outside Kubernetes (no shell sees the result).
 */
export function expandEnvReferences(args: readonly string[], values: Record<string, string>): string[] {
  return args.map((arg) =>
    arg.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (whole, name?: string) =>
      name === undefined ? '$' : Object.prototype.hasOwnProperty.call(values, name) ? values[name] : whole,
    ),
  );
}
