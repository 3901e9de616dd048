// The containers the injector adds: the JuiceFS FUSE client (sidecar) and the
// optional `juicefs format` step. Commands are argv arrays; Secret values reach
// them only through env secretKeyRef and Kubernetes' $(VAR) expansion. The few
// shell scripts here are constants that read env vars, never spliced text.
import type { V1Container, V1EnvVar, V1VolumeMount } from '@kubernetes/client-node';
import { METRICS_PORT, MOUNT_POINT_ENV, SECRET_COPY_ENV_PREFIX, SECRET_KEYS } from '../contract/keys.js';
import { DenyError } from '../contract/deny.js';
import { ENV_METAURL, FormatError, formatCommand } from './format.js';
import { renderOptions } from './mount-options.js';
import type { MountSettings } from './settings.js';
import type { SecretInfo } from './volume.js';

export { ENV_METAURL, needsFormat } from './format.js';

/** True when /proc/mounts shows a JuiceFS FUSE mount at $JFS_MOUNT_POINT. */
export const MOUNT_READY_SCRIPT = `grep -qF " $${MOUNT_POINT_ENV} fuse.juicefs " /proc/mounts`;
/** Waits up to five minutes for the mount (classic placement: holds the next containers in postStart). */
export const WAIT_FOR_MOUNT_SCRIPT = `i=0; until ${MOUNT_READY_SCRIPT}; do i=$((i+1)); if [ "$i" -ge 300 ]; then exit 1; fi; sleep 1; done`;
/** Unmounts before the client stops, so no stale mount point is left on the host. */
export const UNMOUNT_SCRIPT = `umount -l "$${MOUNT_POINT_ENV}" 2>/dev/null; rmdir "$${MOUNT_POINT_ENV}" 2>/dev/null; true`;

function secretEnv(envName: string, secret: SecretInfo, key: string): V1EnvVar {
  return { name: envName, valueFrom: { secretKeyRef: { name: secret.name, key } } };
}

/** The Secret's `envs` (allow-listed in src/contract/client-env.ts), by reference. */
function secretEnvs(secret: SecretInfo): V1EnvVar[] {
  return secret.envNames.map((name) => secretEnv(name, secret, `${SECRET_COPY_ENV_PREFIX}${name}`));
}

/**
 * A container's env: what the volume's sources give (Secret `envs`, the
 * ConfigMap patch), then the injector's own variables last, so that they win
 * (kubelet takes the last of a name) and no source can pre-empt one of them.
 * Sources' entries of an injector-owned name are dropped, not duplicated.
 */
export function orderEnv(sources: V1EnvVar[], own: V1EnvVar[]): V1EnvVar[] {
  const owned = new Set(own.map((e) => e.name));
  return [...sources.filter((e) => !owned.has(e.name)), ...own];
}

export interface SidecarSpec {
  name: string;
  settings: MountSettings;
  secret: SecretInfo;
  /**
   * The injector's env the mount point may reference (e.g. the pod UID for per-pod host paths), set after the
   * sources' env.
   */
  leadingEnv: V1EnvVar[];
  /** Mount point inside the container; may use $(VAR) of leadingEnv. */
  mountPoint: string;
  volumeMounts: V1VolumeMount[];
  metricsPort: number;
  /**
   * native: an init container with restartPolicy Always and a startup probe;
   * classic: first app container, postStart holds the next ones;
   * mount-pod: the only container of a Mount Pod, Ready once mounted.
   */
  placement: 'native' | 'classic' | 'mount-pod';
}

/** `$$` keeps Kubernetes' $(VAR) expansion from reading env (credentials) into a value from data. */
export function escapeExpansion(text: string): string {
  return text.replaceAll('$', '$$$$');
}

export function mountArgs(settings: MountSettings, metricsPort: number): string[] {
  const args = ['juicefs', 'mount'];
  if (settings.subdir) args.push(`--subdir=${escapeExpansion(settings.subdir)}`);
  args.push(`--metrics=0.0.0.0:${metricsPort}`);
  args.push(`--cache-dir=${escapeExpansion(settings.cacheDirs.join(':'))}`);
  if (settings.readOnly) args.push('--read-only');
  args.push(...renderOptions(settings.options));
  // The positionals are the injector's own env: the metaurl (admin's Secret) and an absolute mount point.
  args.push(`$(${ENV_METAURL})`, `$(${MOUNT_POINT_ENV})`);
  return args;
}

export function buildSidecar(spec: SidecarSpec): V1Container {
  const { settings } = spec;
  const container: V1Container = {
    name: spec.name,
    image: settings.image,
    command: mountArgs(settings, spec.metricsPort),
    env: orderEnv(
      [...secretEnvs(spec.secret), ...settings.env],
      [
        ...spec.leadingEnv,
        { name: MOUNT_POINT_ENV, value: spec.mountPoint },
        secretEnv(ENV_METAURL, spec.secret, SECRET_KEYS.metaurl),
      ],
    ),
    ports: [{ name: `jfs-metrics-${spec.metricsPort - METRICS_PORT}`, containerPort: spec.metricsPort }],
    resources: settings.resources,
    securityContext: { privileged: true },
    volumeMounts: spec.volumeMounts,
    lifecycle: { preStop: { exec: { command: ['sh', '-c', UNMOUNT_SCRIPT] } } },
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
  const mountedProbe = { exec: { command: ['sh', '-c', MOUNT_READY_SCRIPT] }, periodSeconds: 1 };
  if (spec.placement === 'native') {
    // A native sidecar: kubelet starts the next containers only once this probe passes.
    container.restartPolicy = 'Always';
    container.startupProbe = { ...mountedProbe, failureThreshold: 300 };
  } else if (spec.placement === 'classic') {
    // Classic placement: kubelet waits for postStart before starting the next container.
    container.lifecycle!.postStart = { exec: { command: ['sh', '-c', WAIT_FOR_MOUNT_SCRIPT] } };
  } else {
    // A Mount Pod is Ready while its mount is up; the node service waits for that.
    container.readinessProbe = { ...mountedProbe, failureThreshold: 3 };
  }
  return container;
}

/** The idempotent format step (./format.ts): `--no-update` leaves an existing volume as it is. */
export function buildFormatContainer(
  name: string,
  settings: MountSettings,
  secret: SecretInfo,
  where: string,
): V1Container {
  let step;
  try {
    step = formatCommand(secret.keys, secret.formatOptions);
  } catch (err) {
    if (err instanceof FormatError)
      throw new DenyError('invalid-secret', `Secret ${secret.name} of ${where}: ${err.message}`);
    throw err;
  }
  const own = [
    secretEnv(ENV_METAURL, secret, SECRET_KEYS.metaurl),
    ...step.env.map((e) => secretEnv(e.name, secret, e.key)),
  ];
  return {
    name,
    image: settings.image,
    command: step.args,
    env: orderEnv([...secretEnvs(secret), ...settings.env], own),
    resources: settings.resources,
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}
