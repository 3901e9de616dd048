// Credential broker mode (ADR 0010): the sidecar's containers reference no Secret. A fetch init container from the
// jfs-sidecar image asks the controller for the volume's credentials with the pod's projected ServiceAccount token
// and writes them, one file per env var, into a memory-backed emptyDir that only the injector's containers mount;
// the format and mount containers load those files into their env with a constant script, then exec juicefs.
// Pure: what the injector adds, what the controller compares a pod with, and what the broker answers.
import type { V1Container, V1EnvVar, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import {
  CREDENTIALS_AUDIENCE,
  CREDENTIALS_CA_ENV,
  CREDENTIALS_DIR_ENV,
  FORMAT_FLAG_KEY_PREFIX,
  MOUNT_POINT_ENV,
  SECRET_KEYS,
} from '../contract/keys.js';
import { isClientEnvName } from '../contract/client-env.js';
import { normaliseSecretData, parseEnvs } from '../contract/secret-copy.js';
import { ENV_METAURL, formatFlagEnv, JUICEFS_FORMAT_FLAGS } from './format.js';
import { escapeExpansion } from './containers.js';

/** Where the injected pods reach the broker, and what runs the fetch. */
export interface BrokerClientOptions {
  /** The controller's credentials endpoint (HTTPS), e.g. DEFAULT_CREDENTIALS_URL. */
  url: string;
  /** PEM of the CA that signs the broker's serving certificate (public). */
  caPem: string;
  /** The jfs-sidecar image (its entrypoint is the `jfs-sidecar` CLI). */
  image: string;
}

/** How long the projected token lives (the kubelet's minimum is 10 minutes); it is used once, at start. */
export const TOKEN_EXPIRATION_SECONDS = 600;
/** In the fetch container: the token volume's mount and file. */
export const TOKEN_DIR = '/var/run/secrets/juicefs.com/credentials';
export const TOKEN_FILE = `${TOKEN_DIR}/token`;
/** Where the credentials emptyDir is mounted, in the fetch container and (read-only) in the client containers. */
export const CREDENTIALS_DIR = '/var/run/juicefs/credentials';

/** Secret keys whose values become env vars of the same meaning as in copy mode (./format.ts). */
const KEY_TO_ENV: Record<string, string> = {
  [SECRET_KEYS.metaurl]: ENV_METAURL,
  [SECRET_KEYS.name]: 'JFS_NAME',
  [SECRET_KEYS.storage]: 'JFS_STORAGE',
  [SECRET_KEYS.bucket]: 'JFS_BUCKET',
  [SECRET_KEYS.accessKey]: 'ACCESS_KEY',
  [SECRET_KEYS.secretKey]: 'SECRET_KEY',
};

/** A name the loader script can export: a shell identifier. */
export const SHELL_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Whether the fetch step may write a credential of this name: one the Secret's keys map to, or an allowed `envs`. */
export function isCredentialName(name: string): boolean {
  return (
    SHELL_NAME.test(name) &&
    (Object.values(KEY_TO_ENV).includes(name) || FORMAT_FLAG_ENVS.has(name) || isClientEnvName(name))
  );
}

/** The env vars that carry `juicefs format` flags' values (./format.ts), as the fetch step may write them. */
const FORMAT_FLAG_ENVS: ReadonlySet<string> = new Set([...JUICEFS_FORMAT_FLAGS].map(formatFlagEnv));

/**
 * What the broker answers for a volume: env var name → value, from the source Secret's data (base64, as in
 * Secret.data): the keys above, then the `envs` entries (allow-listed by parseEnvs; throws SecretFormatError). The
 * fetch client writes each as a file; the client containers export them.
 */
export function credentialValues(source: Record<string, string> | undefined): Record<string, string> {
  const data = normaliseSecretData(source);
  const text = (k: string) => Buffer.from(data[k] ?? '', 'base64').toString('utf8');
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(parseEnvs(data?.[SECRET_KEYS.envs] ? text(SECRET_KEYS.envs) : ''))) {
    if (SHELL_NAME.test(name)) out[name] = value;
  }
  // The Secret's own keys last: an `envs` entry never stands in for the metaurl or the object keys.
  for (const [key, env] of Object.entries(KEY_TO_ENV)) if (data[key] !== undefined) out[env] = text(key);
  for (const key of Object.keys(data)) {
    const flag = key.startsWith(FORMAT_FLAG_KEY_PREFIX) ? key.slice(FORMAT_FLAG_KEY_PREFIX.length) : undefined;
    if (flag !== undefined && JUICEFS_FORMAT_FLAGS.has(flag)) out[formatFlagEnv(flag)] = text(key);
  }
  return out;
}

/**
 * Exports every file of $JFS_CREDENTIALS_DIR as the env var of its name, its content verbatim (trailing newlines
 * kept), and requires the metaurl. A constant: no value is ever spliced into it, and `export "$n=$v"` never
 * interprets the value; a name that is not an identifier makes `export` fail, and `set -e` stops the container.
 */
const LOAD_SCRIPT =
  `set -e; for f in "$${CREDENTIALS_DIR_ENV}"/*; do [ -f "$f" ] || continue; n="\${f##*/}"; ` +
  `v="$(cat "$f"; echo x)"; export "$n=\${v%x}"; done; unset f n v; ` +
  `: "\${${ENV_METAURL}:?no credentials in $${CREDENTIALS_DIR_ENV} (the jfs-credentials step did not run)}"; `;

/**
 * The sidecar's entrypoint (./containers.ts), which takes the metaurl and the mount point from env itself: the loaded
 * files only have to be in env before it runs.
 */
export const BROKER_MOUNT_SCRIPT = `${LOAD_SCRIPT}exec "$@"`;
/** `juicefs format --no-update <options>` then storage and bucket when the Secret has them, the metaurl and name. */
export const BROKER_FORMAT_SCRIPT =
  `${LOAD_SCRIPT}exec "$@" \${JFS_STORAGE+"--storage=$JFS_STORAGE"} \${JFS_BUCKET+"--bucket=$JFS_BUCKET"} ` +
  `"$${ENV_METAURL}" "$JFS_NAME"`;

/** The copy-mode placeholders the broker scripts supply themselves (./format.ts, ./containers.ts mountArgs). */
const PLACEHOLDERS = new Set([
  `$(${ENV_METAURL})`,
  `$(${MOUNT_POINT_ENV})`,
  '$(JFS_NAME)',
  '--storage=$(JFS_STORAGE)',
  '--bucket=$(JFS_BUCKET)',
]);

/**
 * A client container (mount or format, as ./containers.ts builds it for copy mode) turned into its broker form: no
 * env from a Secret, the command run by the loader script without the placeholders it supplies, and the credentials
 * volume mounted read-only.
 */
export function brokerClient(container: V1Container, kind: 'mount' | 'format', credentialsVolume: string): V1Container {
  const script = kind === 'mount' ? BROKER_MOUNT_SCRIPT : BROKER_FORMAT_SCRIPT;
  const argv = (container.command ?? []).filter((a) => !PLACEHOLDERS.has(a));
  const env: V1EnvVar[] = (container.env ?? []).filter((e) => e.valueFrom?.secretKeyRef === undefined);
  env.push({ name: CREDENTIALS_DIR_ENV, value: CREDENTIALS_DIR });
  const mounts: V1VolumeMount[] = [
    ...(container.volumeMounts ?? []),
    { name: credentialsVolume, mountPath: CREDENTIALS_DIR, readOnly: true },
  ];
  return { ...container, command: ['sh', '-c', script, 'sh', ...argv], env, volumeMounts: mounts };
}

/** The pod's one projected token volume: audience-bound, short-lived, mounted only by the fetch containers. */
export function tokenVolume(name: string): V1Volume {
  return {
    name,
    projected: {
      // Explicit, so the API server's defaulting changes nothing the controller compares.
      defaultMode: 0o444,
      sources: [
        {
          serviceAccountToken: {
            audience: CREDENTIALS_AUDIENCE,
            expirationSeconds: TOKEN_EXPIRATION_SECONDS,
            path: 'token',
          },
        },
      ],
    },
  };
}

/** A volume's credentials emptyDir: memory-backed (never a node disk), small. */
export function credentialsVolume(name: string): V1Volume {
  return { name, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } };
}

/** The CLI arguments of the fetch step (the image's entrypoint is `jfs-sidecar`). */
export function fetchArgs(url: string, pvcName: string, podVolumeName: string): string[] {
  return [
    'credentials',
    'fetch',
    `--url=${escapeExpansion(url)}`,
    `--pvc=${escapeExpansion(pvcName)}`,
    // Not needed by the fetch: it records, in args no one can change after admission, which pod volume the PVC was.
    `--volume=${escapeExpansion(podVolumeName)}`,
    `--token-file=${TOKEN_FILE}`,
    `--out=${CREDENTIALS_DIR}`,
  ];
}

/** The PVC a fetch container asks for and its pod volume, from its args (undefined when not the injector's form). */
export function fetchedSlot(container: Pick<V1Container, 'args'>): { pvc: string; volume: string } | undefined {
  const value = (flag: string) =>
    container.args
      ?.find((a) => a.startsWith(`--${flag}=`))
      ?.slice(flag.length + 3)
      .replaceAll('$$', '$');
  const pvc = value('pvc');
  const volume = value('volume');
  return pvc && volume ? { pvc, volume } : undefined;
}

/** The fetch init container of one volume: the jfs-sidecar image, unprivileged, nothing but the token and the dir. */
export function buildFetchContainer(
  name: string,
  broker: BrokerClientOptions,
  slot: { pvc: string; volume: string },
  tokenVolumeName: string,
  credentialsVolumeName: string,
): V1Container {
  return {
    name,
    image: broker.image,
    args: fetchArgs(broker.url, slot.pvc, slot.volume),
    env: [{ name: CREDENTIALS_CA_ENV, value: broker.caPem }],
    volumeMounts: [
      { name: tokenVolumeName, mountPath: TOKEN_DIR, readOnly: true },
      { name: credentialsVolumeName, mountPath: CREDENTIALS_DIR },
    ],
    resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '128Mi' } },
    securityContext: {
      runAsUser: 65532,
      runAsGroup: 65532,
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    },
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}
