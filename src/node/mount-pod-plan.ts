// The Mount Pod of one PV on one node (Mount Pod mode), built by the same code
// as the sidecar: settings from PV/StorageClass/ConfigMap patch through
// computeMountSettings, the container through buildSidecar. Pure.
import type { V1Pod, V1PodSpec } from '@kubernetes/client-node';
import fjp, { type Operation } from 'fast-json-patch';
import { createHash } from 'node:crypto';
import {
  CACHE_VOLUME_PREFIX,
  FD_HOLDER_ROOT,
  FORMAT_INIT_NAME,
  HOST_PATH_VOLUME_PREFIX,
  MOUNT_POD_ANN_CLEAN_CACHE,
  MOUNT_POD_ANN_DELETE_DELAY,
  MOUNT_POD_APP_VALUE,
  MOUNT_POD_LABEL_APP,
  MOUNT_POD_LABEL_HASH,
  MOUNT_POD_LABEL_VOLUME_ID,
  MOUNT_POINT_ENV,
  MOUNT_ROOT,
  METRICS_PORT,
  POD_UID_ENV,
  SIDECAR_NAME,
} from '../contract/keys.js';
// A Mount Pod's name is its hostname too: a DNS label, like the label values.
import { dnsName, LABEL_VALUE_MAX } from '../contract/names.js';
import { referenceKey, referencesOf, volumeLabel } from '../contract/mount-pod-refs.js';
import { cacheVolumes } from '../mount/cache-volumes.js';
import {
  buildFormatContainer,
  buildSidecar,
  mountArgs,
  needsFormat,
  renderedPatch,
  STOP_CLIENT_SCRIPT,
} from '../mount/containers.js';
import { applyToMountPod } from '../mount/patch.js';
import { computeMountSettings, type MountContext, type MountSettings } from '../mount/settings.js';
import type { NodeIdentity } from '../config/selector.js';
import type { PvcIdentity, VolumeSource } from '../mount/volume.js';
import { NO_INHERITANCE, HOSTNAME_LABEL, type MountPodInheritance } from './mount-pod-inherit.js';

// The reference annotations and the volume label live in the contract (kubectl jfs and the dashboard read them).
export { referenceKey, referencesOf, volumeLabel };

function defaultCache(settings: MountSettings): boolean {
  return (
    settings.hostPaths.length === 0 && settings.cache.every((c) => c.kind === 'host') // host folders are all in the args (--cache-dir) already
  );
}

/** What decides whether an existing Mount Pod can serve a publish: everything that shapes the mount. */
export function settingsHash(volume: VolumeSource, settings: MountSettings): string {
  const material = JSON.stringify({
    image: settings.image,
    args: mountArgs(settings, settings.metrics?.port ?? METRICS_PORT),
    env: settings.env,
    resources: settings.resources,
    // The file system's name is in the Secret's keys' content already (and templates use it through the args).
    secret: { ...volume.secret, volumeName: undefined },
    // Only when not the default cache: the hash of every Mount Pod made before cache storage existed stays.
    ...(!defaultCache(settings) && { cache: settings.cache, hostPaths: settings.hostPaths }),
    // Only when set, so that a Mount Pod without these keeps the hash it had before they were read.
    ...(Object.keys(settings.patch).length && { patch: settings.patch }),
  });
  return createHash('sha256').update(material).digest('hex').slice(0, 10);
}

/** Where a Mount Pod mounts its volume on the host (its container's JFS_MOUNT_POINT). */
export function mountPointOf(pod: V1Pod): string | undefined {
  return pod.spec?.containers?.[0]?.env?.find((e) => e.name === MOUNT_POINT_ENV)?.value;
}

/** The Mount Pod's volume of its fd-holder folder (its host path is FD_HOLDER_ROOT/<mount id>). */
export const FD_VOLUME_NAME = 'jfs-fd';
/**
 * Where that folder is in the Mount Pod: /tmp, because juicefs puts its own fd socket (`/tmp/fuse_fd_comm.<pid>`) and
 * its handle state (`/tmp/state<supervisor pid>.json`, written on SIGHUP) there and nowhere else.
 */
export const FD_DIR_IN_POD = '/tmp';
/** The holder's socket, in the fd-holder folder; the client dials it through `JFS_SUPER_COMM`. */
export const FD_HOLDER_SOCKET = 'fd-holder.sock';
/**
 * The client's handle state as its first mount process reads it: the supervisor is the container's PID 1, so a
 * SIGHUP handover writes `/tmp/state1.json`; a client started on the same folder (a restarted container, or a new
 * Mount Pod given this folder) reloads the open handles from it.
 */
export const FD_STATE_FILE = 'state1.json';

/**
 * The file in a Mount Pod's fd folder by which the node service asks for an unmount at stop: it holds the UID of the
 * Mount Pod it is deleting with no reference left (the last unpublish, the delete delay's sweep). A handover there
 * would let juicefs's supervisor start its mount process again for the seconds until PID 1 stops, and a new mount
 * process re-creates its `--subdir` (juicefs's Chroot makes a missing one): a volume folder DeleteVolume just removed
 * came back. Only that pod's preStop acts on it; a later Mount Pod in the same folder has another UID.
 */
export const FD_UNMOUNT_MARKER = 'unmount-on-stop';

/**
 * A held Mount Pod's preStop (ADR 0019). Asked to unmount (FD_UNMOUNT_MARKER names this pod): unmount, stop the
 * client, then SIGTERM to PID 1 so that nothing is started again; the mount point folder stays (a publish may have
 * made it for the next Mount Pod in this folder, whose client does not make it: JFS_SUPER_COMM); the node service
 * removes it once no Mount Pod uses it. Otherwise a handover, never an unmount: SIGHUP makes the
 * mount process flush, stop serving, save its open handles to /tmp/state1.json and exit; the node service keeps the
 * FUSE fd, so the mount point and every target bound from it stay up. Once it has exited, SIGTERM to PID 1
 * (juicefs's supervisor) keeps the supervisor from starting it again 1 s later on the same connection, which is its
 * successor's now: a re-created Mount Pod (deleted while in use, or a recreate upgrade) takes fd and handles over.
 * No `$$` or `$(NAME)` here: kubelet would expand them.
 */
export const HANDOVER_PRESTOP_SCRIPT = `if [ -n "$${POD_UID_ENV}" ] && [ "$(cat ${FD_DIR_IN_POD}/${FD_UNMOUNT_MARKER} 2>/dev/null)" = "$${POD_UID_ENV}" ]; then
umount -l "$${MOUNT_POINT_ENV}" 2>/dev/null
${STOP_CLIENT_SCRIPT}
kill -TERM 1 2>/dev/null
exit 0
fi
child=
for d in /proc/[0-9]*; do
  p=\${d#/proc/}
  [ "$p" != 1 ] && [ "$(cat "$d/comm" 2>/dev/null)" = juicefs ] && child="$child $p"
done
for p in $child; do kill -HUP "$p" 2>/dev/null; done
i=0
while [ "$i" -lt 250 ]; do
  left=
  for p in $child; do [ -d "/proc/$p" ] && left=1; done
  [ -n "$left" ] || break
  sleep 0.1; i=$((i+1))
done
kill -TERM 1 2>/dev/null
true`;

/** The host folder of a Mount Pod's fd holder, when it has one (Mount Pods of older node services have none). */
export function fdDirOf(pod: V1Pod): string | undefined {
  return pod.spec?.volumes?.find((v) => v.name === FD_VOLUME_NAME)?.hostPath?.path;
}

/** Whether the pod's Ready condition is True. */
export function isPodReady(pod: V1Pod | undefined): boolean {
  return pod?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

export interface MountPodInput {
  nodeName: string;
  namespace: string;
  volume: VolumeSource;
  /** The PVC that claims the PV (from its claimRef), when there is one: `mountPodPatch` selectors match it. */
  claim?: PvcIdentity;
  options: MountContext;
  /** What Mount Pods take from the node service's pod, its node and env (./mount-pod-inherit.ts). */
  inherit?: MountPodInheritance;
  /** The Node's labels, when known: what mountPodPatch nodeSelectors match. */
  node?: NodeIdentity;
}

export interface MountPodPlan {
  pod: V1Pod;
  hash: string;
  /** Host path where the Mount Pod mounts the PV's subdirectory; targets are bind mounts of it. */
  mountPoint: string;
  /** Host folder of the node service's fd holder for this Mount Pod; undefined when `juicefs/fd-holder` is off. */
  fdDir?: string;
  warnings: string[];
}

/** `nodeName`, or with `enableNodeSelector` a nodeSelector on the node's hostname label (the scheduler binds it). */
function placement(nodeName: string, bySelector: boolean, inherit: MountPodInheritance): Partial<V1PodSpec> {
  return bySelector ? { nodeSelector: { [HOSTNAME_LABEL]: inherit.hostname ?? nodeName } } : { nodeName };
}

/**
 * `juicefs/mount-service-account` names the Mount Pod's account and mounts its token (a client's cloud IAM: the
 * admin made that account for it). Otherwise the node service's account is named, as the reference does (an IAM
 * webhook keyed on it still applies), but its token is never mounted: it may read Secrets and pods of the node; the
 * client never calls the API, and without a token volume its spec can be re-created as it was.
 */
function serviceAccount(own: string | undefined, inherited: string | undefined): Partial<V1PodSpec> {
  if (own) return { serviceAccountName: own, automountServiceAccountToken: true };
  return { ...(inherited && { serviceAccountName: inherited }), automountServiceAccountToken: false };
}

export function planMountPod(input: MountPodInput): MountPodPlan {
  const { volume, nodeName, namespace } = input;
  // PVC annotations do not tune a Mount Pod (it is not one pod's); the claim only selects mountPodPatch entries.
  const settings = computeMountSettings(volume, input.claim, input.options, [], { node: input.node });
  const hash = settingsHash(volume, settings);
  // One name for the mount's host folders: its mount point and its fd-holder folder.
  const mountId = `${volume.pvName}-${hash}`;
  const mountPoint = `${MOUNT_ROOT}/${mountId}`;
  // The node service holds the client's FUSE fd (juicefs >= 1.2.1 hands it over on JFS_SUPER_COMM; older clients
  // ignore it), so a client that dies whole is replaced on the same FUSE connection: the targets stay valid.
  // On unless `juicefs/fd-holder: "false"` (the holder drops a fd whose connection is no longer mounted, ADR 0019).
  const fdDir = settings.attributes.fdHolder !== false ? `${FD_HOLDER_ROOT}/${mountId}` : undefined;
  const cache = cacheVolumes(settings, {
    host: 'hostPath',
    nodeName,
    cacheName: (i) => `${CACHE_VOLUME_PREFIX}-${i}`,
    hostPathName: (i) => `${HOST_PATH_VOLUME_PREFIX}-${i}`,
  });
  const container = buildSidecar({
    name: SIDECAR_NAME,
    settings,
    secret: volume.secret,
    leadingEnv: fdDir
      ? [
          { name: 'JFS_SUPER_COMM', value: `${FD_DIR_IN_POD}/${FD_HOLDER_SOCKET}` },
          { name: '_FUSE_STATE_PATH', value: `${FD_DIR_IN_POD}/${FD_STATE_FILE}` },
          // With JFS_SUPER_COMM juicefs skips its check of a broken mount point; "0" makes its supervisor unmount
          // the mount point when the holder had no fd for it, so a fresh mount never lands on top of a dead one.
          { name: 'JFS_NO_UMOUNT', value: '0' },
          // The preStop's test of FD_UNMOUNT_MARKER: is this pod the one the node service is ending?
          { name: POD_UID_ENV, valueFrom: { fieldRef: { fieldPath: 'metadata.uid' } } },
        ]
      : [],
    mountPoint,
    volumeMounts: [
      { name: 'jfs-dir', mountPath: MOUNT_ROOT, mountPropagation: 'Bidirectional' },
      ...(fdDir ? [{ name: FD_VOLUME_NAME, mountPath: FD_DIR_IN_POD }] : []),
      ...cache.mounts,
    ],
    metricsPort: settings.metrics?.port ?? METRICS_PORT,
    placement: 'mount-pod',
  });
  // With the fd held, the client stops by handing over (the unmount is the node service's, at the last unpublish).
  if (fdDir)
    container.lifecycle = {
      ...container.lifecycle,
      preStop: { exec: { command: ['sh', '-c', HANDOVER_PRESTOP_SCRIPT] } },
    };
  const { deleteDelay, cleanCache } = settings.attributes;
  const inherit = input.inherit ?? NO_INHERITANCE;
  const pod: V1Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: dnsName(`juicefs-${nodeName}-${volume.pvName}-${hash}`, LABEL_VALUE_MAX),
      namespace,
      labels: {
        ...settings.labels,
        [MOUNT_POD_LABEL_APP]: MOUNT_POD_APP_VALUE,
        [MOUNT_POD_LABEL_VOLUME_ID]: volumeLabel(volume.pvName),
        [MOUNT_POD_LABEL_HASH]: hash,
      },
      annotations: {
        ...settings.annotations,
        ...(deleteDelay ? { [MOUNT_POD_ANN_DELETE_DELAY]: deleteDelay } : {}),
        ...(cleanCache ? { [MOUNT_POD_ANN_CLEAN_CACHE]: 'true' } : {}),
      },
    },
    spec: {
      ...placement(nodeName, input.options.config.enableNodeSelector === true, inherit),
      restartPolicy: 'Always',
      priorityClassName: inherit.priorityClassName,
      ...(inherit.preemptionPolicy && { preemptionPolicy: inherit.preemptionPolicy }),
      ...(inherit.tolerations && { tolerations: inherit.tolerations }),
      ...(inherit.imagePullSecrets && { imagePullSecrets: inherit.imagePullSecrets }),
      ...(inherit.dnsPolicy && { dnsPolicy: inherit.dnsPolicy }),
      ...(inherit.dnsConfig && { dnsConfig: inherit.dnsConfig }),
      ...(inherit.hostAliases && { hostAliases: inherit.hostAliases }),
      ...serviceAccount(settings.attributes.mountServiceAccount, inherit.serviceAccountName),
      terminationGracePeriodSeconds: 30,
      // The same idempotent format step as the sidecar's, when the Secret names an object storage.
      ...(needsFormat(volume.secret.keys)
        ? {
            initContainers: [
              buildFormatContainer(FORMAT_INIT_NAME, settings, volume.secret, `PersistentVolume ${volume.pvName}`),
            ],
          }
        : {}),
      containers: [container],
      volumes: [
        { name: 'jfs-dir', hostPath: { path: MOUNT_ROOT, type: 'DirectoryOrCreate' } },
        // Made by the node service before it creates the pod (its holder listens there first).
        ...(fdDir ? [{ name: FD_VOLUME_NAME, hostPath: { path: fdDir, type: 'DirectoryOrCreate' } }] : []),
        ...cache.volumes,
      ],
    },
  };
  // The admin's pod-level fields (mountPodPatch), rendered for this mount point, over what the node pod gave.
  applyToMountPod(pod.spec!, renderedPatch(settings, mountPoint).patch, dnsName(volume.pvName, LABEL_VALUE_MAX));
  return { pod, hash, mountPoint, fdDir, warnings: [...settings.warnings, ...cache.warnings] };
}

export interface AnnotationChange {
  set?: Record<string, string>;
  remove?: string[];
  /** Values the change relies on: the patch fails (422) if any differs when it is applied. */
  expect?: Record<string, string>;
  /** The resourceVersion the change was computed from, when nothing may have changed since. */
  resourceVersion?: string;
}

/**
 * A JSON patch of a Mount Pod's annotations, computed by diffing (fast-json-patch), led by its `test` preconditions.
 */
export function annotationPatch(pod: V1Pod, change: AnnotationChange): Operation[] {
  const before = pod.metadata?.annotations;
  const after: Record<string, string> = { ...before, ...change.set };
  for (const key of change.remove ?? []) delete after[key];
  const tests: Operation[] = Object.entries(change.expect ?? {}).map(([key, value]) => ({
    op: 'test',
    path: `/metadata/annotations/${fjp.escapePathComponent(key)}`,
    value,
  }));
  if (change.resourceVersion)
    tests.unshift({ op: 'test', path: '/metadata/resourceVersion', value: change.resourceVersion });
  return [...tests, ...fjp.compare({ metadata: { annotations: before } }, { metadata: { annotations: after } })];
}
