// The containers the injector adds: the JuiceFS FUSE client (sidecar) and the
// optional `juicefs format` step. Commands are argv arrays; Secret values reach
// them only through env secretKeyRef and Kubernetes' $(VAR) expansion. The few
// shell scripts here are constants that read env vars, never spliced text.
import type { V1Container, V1EnvVar, V1Lifecycle, V1VolumeMount } from '@kubernetes/client-node';
import {
  FD_DIR_ENV,
  FD_HOLDER_HANDOVER_FILE,
  FD_HOLDER_STATE_FILE,
  METRICS_PORT_NAME,
  MOUNT_POINT_ENV,
  QUOTA_GIB_ENV,
  QUOTA_PATH_ENV,
  SECRET_COPY_ENV_PREFIX,
  SECRET_KEYS,
} from '../contract/keys.js';
import { DenyError } from '../contract/deny.js';
import { ENV_METAURL, FormatError, formatCommand } from './format.js';
import { renderOptions } from './mount-options.js';
import { applyToContainer, mountPointFromEnv, renderTemplates, type ClientPatch } from './patch.js';
import type { MountSettings } from './settings.js';
import type { SecretInfo } from './volume.js';

export { ENV_METAURL, needsFormat } from './format.js';

/** True when /proc/mounts shows a JuiceFS FUSE mount at $JFS_MOUNT_POINT. */
export const MOUNT_READY_SCRIPT = `grep -qF " $${MOUNT_POINT_ENV} fuse.juicefs " /proc/mounts`;
/** Waits up to five minutes for the mount (classic placement: holds the next containers in postStart). */
export const WAIT_FOR_MOUNT_SCRIPT = `i=0; until ${MOUNT_READY_SCRIPT}; do i=$((i+1)); if [ "$i" -ge 300 ]; then exit 1; fi; sleep 1; done`;
/** SIGTERM to the client's mount processes (not PID 1, the supervisor) and a wait of up to 25 s for them to end. */
export const STOP_CLIENT_SCRIPT = `i=0
while [ "$i" -lt 250 ]; do
  left=
  for d in /proc/[0-9]*; do
    p=\${d#/proc/}
    [ "$p" != 1 ] && [ "$(cat "$d/comm" 2>/dev/null)" = juicefs ] || continue
    left=1
    [ "$i" = 0 ] && kill -TERM "$p" 2>/dev/null
  done
  [ -n "$left" ] || break
  sleep 0.1; i=$((i+1))
done
true`;

/**
 * A Mount Pod's preStop: unmounts before the client stops, so no stale mount point is left on the host; then sends
 * SIGTERM to the mount process itself and waits (up to 25 s) for it to end. With JFS_SUPER_COMM (the node service's
 * fd holder) juicefs's supervisor, PID 1, no longer passes SIGTERM on: the kubelet's SIGTERM would end it at once and
 * the mount process with it, unflushed. No `$$` or `$(NAME)` of an env var here: kubelet would expand them.
 */
export const UNMOUNT_SCRIPT = `umount -l "$${MOUNT_POINT_ENV}" 2>/dev/null; rmdir "$${MOUNT_POINT_ENV}" 2>/dev/null
${STOP_CLIENT_SCRIPT}`;

/**
 * The sidecar's entrypoint (native and classic placement; ADR 0013): `sh -c` this, then `jfs-mount` ($0) and the
 * `juicefs mount` flags; the metaurl and the mount point come from env, so no shell argv holds the credentials
 * (juicefs masks them in its own). It runs the client and, on SIGTERM:
 * 1. notes the FUSE connection of the mount point (its `0:NN` in mountinfo);
 * 2. waits until no file is open in the volume (juicefs's own `.stats`: one handle, this read), twice 0.5 s apart;
 *    the apps are still served meanwhile;
 * 3. passes SIGTERM on (juicefs unmounts lazily and waits for its FUSE session to end) and unmounts the mount point;
 * 4. if juicefs is still running 0.5 s later, the session is held only by other mounts of it (kubelet's subPath
 *    binds, which it removes only once every container has stopped): aborts that connection, so juicefs ends the
 *    session, flushes and exits 0. fusectl is mounted first when the container's fresh sysfs lacks it.
 * A `.stats` read juicefs does not answer within 2 s means the client is stuck (its metadata engine is gone, and a
 * request it cannot finish holds the volume's root): nothing more can be flushed, so the connection is aborted at
 * once, which also frees the read (left in D state otherwise, and the stop with it); steps 3 and 4 follow.
 * Its exit code is juicefs's. No `$$` or `$(NAME)` of an env var here: kubelet would expand them in a command.
 */
/**
 * The entrypoint's part for the FUSE fd holder (src/mount/fd-holder.ts; ADR 0015, 0016), kept apart from the stop
 * logic. With JFS_SUPER_COMM set, juicefs's supervisor installs no signal handler (cmd/mount_unix.go: it leaves
 * signals to the CSI driver): a SIGTERM would kill the supervisor alone and leave its mount process unflushed, so
 * signals go to the mount process, the supervisor's child. With no JFS_SUPER_COMM every function is the old path.
 * - wait_holder: makes the mount point (juicefs does not with JFS_SUPER_COMM); the holder is a native sidecar started
 *   just before, its socket may be a moment late (10 s at most: without it juicefs mounts afresh, as with no holder).
 * - handover_armed: the upgrader's marker (`jfs-sidecar fd-holder expect-handover`), consumed; valid until the epoch
 *   second it holds.
 * - handover: the supervisor is stopped (SIGSTOP) so that it neither restarts its child 1 s after it exits nor is
 *   gone when the child writes /tmp/state<ppid>.json; SIGHUP makes the child flush, stop serving and save its open
 *   handles; the state file goes to the shared volume (`_FUSE_STATE_PATH` of the next container) and the supervisor
 *   is killed: the holder keeps the FUSE fd, and the next container's client takes it with the handles.
 */
const FD_HOLDER_FUNCTIONS = `mount_process() {
  for s in /proc/[0-9]*/stat; do read -r p _ _ pp _ <"$s" 2>/dev/null && [ "$pp" = "$pid" ] && echo "$p" && return; done
}
wait_holder() {
  [ -n "$JFS_SUPER_COMM" ] || return 0
  # juicefs leaves the mount point to the CSI driver when JFS_SUPER_COMM is set (prepareMp): make it, unless it is
  # still mounted (a restart on a held connection; a stat there would wait for the server this script starts).
  grep -qF " $${MOUNT_POINT_ENV} " /proc/self/mountinfo || mkdir -p "$${MOUNT_POINT_ENV}"
  i=0; while [ ! -S "$JFS_SUPER_COMM" ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
}
signal_client() {
  if [ -z "$JFS_SUPER_COMM" ]; then kill -"$1" "$pid"; return; fi
  c=$(mount_process); [ -n "$c" ] && kill -"$1" "$c"
}
handover_armed() {
  m="$${FD_DIR_ENV}/${FD_HOLDER_HANDOVER_FILE}"
  [ -n "$${FD_DIR_ENV}" ] && [ -n "$JFS_SUPER_COMM" ] && [ -f "$m" ] || return 1
  read -r deadline <"$m"; rm -f "$m"
  [ "$(date +%s)" -le "\${deadline:-0}" ]
}
handover() {
  c=$(mount_process); [ -n "$c" ] || return 1
  kill -STOP "$pid"; kill -HUP "$c"
  i=0
  while [ "$i" -lt 200 ]; do
    read -r _ _ st _ <"/proc/$c/stat" 2>/dev/null || break
    [ "$st" = Z ] && break
    sleep 0.1; i=$((i+1))
  done
  if [ "$i" -ge 200 ]; then
    kill -CONT "$pid"
    echo "jfs-mount: handover: juicefs did not exit within 20 s of SIGHUP: stopping as usual" >&2
    return 1
  fi
  mv "/tmp/state$pid.json" "$${FD_DIR_ENV}/${FD_HOLDER_STATE_FILE}" 2>/dev/null ||
    echo "jfs-mount: handover: no state file: files open now will fail (EBADF)" >&2
  kill -KILL "$pid"
  echo "jfs-mount: handed the FUSE connection over to the next client (the fd holder keeps it)" >&2
}`;

export const CLIENT_ENTRYPOINT_SCRIPT = `stop=
trap 'stop=\${stop:-1}' TERM INT
${FD_HOLDER_FUNCTIONS}
wait_holder
"$@" "$${ENV_METAURL}" "$${MOUNT_POINT_ENV}" &
pid=$!
# The quota of a PV the controller set none on (the reference sets it so, in the background once mounted).
if [ -n "$${QUOTA_GIB_ENV}" ]; then
  (i=0
  until grep -qF " $${MOUNT_POINT_ENV} fuse.juicefs " /proc/mounts || [ "$i" -ge 600 ]; do sleep 0.1; i=$((i+1)); done
  "$1" quota set "$${ENV_METAURL}" --path="$${QUOTA_PATH_ENV}" --capacity="$${QUOTA_GIB_ENV}" >/dev/null 2>&1 ||
    echo "jfs-mount: juicefs quota set on $${QUOTA_PATH_ENV} failed" >&2) &
fi
open_files() { sed -n 's/^juicefs_fuse_open_handlers \\([0-9]*\\)$/\\1/p' "$${MOUNT_POINT_ENV}/.stats" 2>/dev/null; }
abort() {
  f=/sys/fs/fuse/connections
  [ -e "$f/$conn" ] || mount -t fusectl fusectl "$f" 2>/dev/null
  echo 1 >"$f/$conn/abort"
}
stuck() { sleep 2; echo "jfs-mount: juicefs does not answer .stats in 2 s: aborting connection $conn" >&2; abort; exit 3; }
while :; do
  wait "$pid"; rc=$?
  kill -0 "$pid" 2>/dev/null || exit "$rc"
  [ "$stop" = 1 ] || continue
  stop=2
  if handover_armed && handover; then exit 0; fi
  conn=
  while read -r _ _ dev _ mp rest; do
    case "$mp $dev $rest" in "$${MOUNT_POINT_ENV} 0:"*" - fuse.juicefs "*) conn=\${dev#0:} ;; esac
  done </proc/self/mountinfo
  quiet=0
  hung=
  while [ -n "$conn" ] && [ "$quiet" -lt 2 ]; do
    stuck & w=$!
    n=$(open_files)
    kill "$w" 2>/dev/null; wait "$w"
    if [ "$?" = 3 ]; then hung=1; break; fi
    if [ "\${n:-0}" -le 1 ]; then quiet=$((quiet+1)); else quiet=0; fi
    if [ "$quiet" -lt 2 ]; then sleep 0.5; fi
  done
  signal_client TERM
  umount -l "$${MOUNT_POINT_ENV}" 2>/dev/null; rmdir "$${MOUNT_POINT_ENV}" 2>/dev/null
  i=0; while [ "$i" -lt 5 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; i=$((i+1)); done
  if [ -n "$conn" ] && [ -z "$hung" ] && kill -0 "$pid" 2>/dev/null; then
    echo "jfs-mount: no file open, FUSE session held by other mounts: aborting connection $conn" >&2
    abort
  fi
done
`;

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
   * The injector's own env before the mount point, which the mount point may reference (e.g. the pod UID for per-pod
   * host paths; a Mount Pod's fd-holder variables), set after the sources' env.
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
  /** The pod's name of a mountPodPatch volume (a sidecar's pod prefixes them; a Mount Pod keeps them). */
  patchVolumeName?: (name: string) => string;
}

/**
 * The settings' patch and env with `${MOUNT_POINT}` rendered: the one template only the builder knows. A mount point
 * that kubelet expands (a sidecar's, with the pod's UID) is read from env by the probes and hooks instead.
 */
export function renderedPatch(settings: MountSettings, mountPoint: string): { patch: ClientPatch; env: V1EnvVar[] } {
  const values = { ...settings.templates, MOUNT_POINT: mountPoint };
  const expanded = mountPoint.includes('$(');
  return {
    patch: expanded
      ? renderTemplates(mountPointFromEnv(settings.patch), settings.templates, 'ConfigMap mountPodPatch')
      : renderTemplates(settings.patch, values, 'ConfigMap mountPodPatch'),
    env: renderTemplates(settings.env, values, 'ConfigMap mountPodPatch env'),
  };
}

/** `$$` keeps Kubernetes' $(VAR) expansion from reading env (credentials) into a value from data. */
export function escapeExpansion(text: string): string {
  return text.replaceAll('$', '$$$$');
}

/** `juicefs mount` and its flags, without the two positionals (the metaurl and the mount point). */
export function mountFlags(settings: MountSettings, metricsPort: number): string[] {
  const args = ['juicefs', 'mount'];
  if (settings.subdir) args.push(`--subdir=${escapeExpansion(settings.subdir)}`);
  args.push(`--metrics=${settings.metrics ? escapeExpansion(settings.metrics.address) : `0.0.0.0:${metricsPort}`}`);
  args.push(`--cache-dir=${escapeExpansion(settings.cacheDirs.join(':'))}`);
  if (settings.readOnly) args.push('--read-only');
  args.push(...renderOptions(settings.options));
  return args;
}

/** The whole `juicefs mount` argv; the positionals are the injector's env (the admin's metaurl, the mount point). */
export function mountArgs(settings: MountSettings, metricsPort: number): string[] {
  return [...mountFlags(settings, metricsPort), `$(${ENV_METAURL})`, `$(${MOUNT_POINT_ENV})`];
}

/**
 * The client's command: a Mount Pod runs juicefs itself (its volume is bound only by the node service, which unbinds
 * every target before it deletes the pod); a sidecar runs it under CLIENT_ENTRYPOINT_SCRIPT, which stops it promptly.
 */
function clientCommand(spec: SidecarSpec): string[] {
  if (spec.placement === 'mount-pod') return mountArgs(spec.settings, spec.metricsPort);
  return ['sh', '-c', CLIENT_ENTRYPOINT_SCRIPT, spec.name, ...mountFlags(spec.settings, spec.metricsPort)];
}

/**
 * Hooks: a Mount Pod unmounts in preStop. A sidecar's entrypoint unmounts on SIGTERM instead, which kubelet always
 * sends (at least 2 s before SIGKILL): kubelet runs a native sidecar's preStop before the apps have stopped, too early.
 * Classic placement holds the next containers in postStart until the mount is up.
 */
function clientLifecycle(placement: SidecarSpec['placement']): V1Lifecycle | undefined {
  if (placement === 'mount-pod') return { preStop: { exec: { command: ['sh', '-c', UNMOUNT_SCRIPT] } } };
  if (placement === 'classic') return { postStart: { exec: { command: ['sh', '-c', WAIT_FOR_MOUNT_SCRIPT] } } };
  return undefined;
}

export function buildSidecar(spec: SidecarSpec): V1Container {
  const { settings } = spec;
  const lifecycle = clientLifecycle(spec.placement);
  const { patch, env } = renderedPatch(settings, spec.mountPoint);
  const container: V1Container = {
    name: spec.name,
    image: settings.image,
    command: clientCommand(spec),
    env: orderEnv(
      [...secretEnvs(spec.secret), ...env],
      [
        ...spec.leadingEnv,
        { name: MOUNT_POINT_ENV, value: spec.mountPoint },
        secretEnv(ENV_METAURL, spec.secret, SECRET_KEYS.metaurl),
        // A Mount Pod's quota is the controller's (or none): its env is part of its hash.
        ...(settings.quota && spec.placement !== 'mount-pod'
          ? [
              { name: QUOTA_PATH_ENV, value: settings.quota.path },
              { name: QUOTA_GIB_ENV, value: String(settings.quota.gib) },
            ]
          : []),
      ],
    ),
    // The name the reference driver gives it, which its documented scrape configs and PodMonitors select (names need
    // be unique only within a container).
    ports: [{ name: METRICS_PORT_NAME, containerPort: spec.metricsPort }],
    resources: settings.resources,
    securityContext: { privileged: true },
    volumeMounts: spec.volumeMounts,
    ...(lifecycle && { lifecycle }),
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
  const mountedProbe = { exec: { command: ['sh', '-c', MOUNT_READY_SCRIPT] }, periodSeconds: 1 };
  if (spec.placement === 'native') {
    // A native sidecar: kubelet starts the next containers only once this probe passes.
    container.restartPolicy = 'Always';
    container.startupProbe = { ...mountedProbe, failureThreshold: 300 };
  } else if (spec.placement === 'mount-pod') {
    // A Mount Pod is Ready while its mount is up; the node service waits for that.
    container.readinessProbe = { ...mountedProbe, failureThreshold: 3 };
  }
  // The admin's probes, hooks and mounts (mountPodPatch); the injector's own hooks, and a native sidecar's startup
  // probe (which holds the apps until the mount is up), stay.
  applyToContainer(container, patch, {
    keepStartupProbe: spec.placement === 'native',
    volumeName: spec.patchVolumeName ?? ((n) => n),
  });
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
    step = formatCommand(secret.keys, secret.formatFlags);
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
