// The Mount Pod of one PV on one node (Mount Pod mode), built by the same code
// as the sidecar: settings from PV/StorageClass/ConfigMap patch through
// computeMountSettings, the container through buildSidecar. Pure.
import type { V1Pod } from '@kubernetes/client-node';
import fjp, { type Operation } from 'fast-json-patch';
import { createHash } from 'node:crypto';
import {
  CACHE_VOLUME_PREFIX,
  FD_HOLDER_ROOT,
  FORMAT_INIT_NAME,
  MOUNT_POD_ANN_CLEAN_CACHE,
  MOUNT_POD_ANN_DELETE_DELAY,
  MOUNT_POD_APP_VALUE,
  MOUNT_POD_LABEL_APP,
  MOUNT_POD_LABEL_HASH,
  MOUNT_POD_LABEL_VOLUME_ID,
  MOUNT_POD_REF_PREFIX,
  MOUNT_POINT_ENV,
  MOUNT_ROOT,
  METRICS_PORT,
  SIDECAR_NAME,
} from '../contract/keys.js';
// A Mount Pod's name is its hostname too: a DNS label, like the label values.
import { dnsName, LABEL_VALUE_MAX } from '../contract/names.js';
import { cacheVolumes } from '../mount/cache-volumes.js';
import { buildFormatContainer, buildSidecar, mountArgs, needsFormat, renderedPatch } from '../mount/containers.js';
import { applyToMountPod } from '../mount/patch.js';
import { computeMountSettings, type MountContext, type MountSettings } from '../mount/settings.js';
import type { NodeIdentity } from '../config/selector.js';
import type { PvcIdentity, VolumeSource } from '../mount/volume.js';

/** The node label enableNodeSelector places Mount Pods by. */
const HOSTNAME_LABEL = 'kubernetes.io/hostname';

/** Annotation key of one reference: `juicefs-` + sha256(target path), cut to 63 characters. */
export function referenceKey(targetPath: string): string {
  return `${MOUNT_POD_REF_PREFIX}${createHash('sha256').update(targetPath).digest('hex')}`.slice(0, LABEL_VALUE_MAX);
}

/** The targets a Mount Pod's annotations reference. */
export function referencesOf(pod: V1Pod): string[] {
  return Object.entries(pod.metadata?.annotations ?? {})
    .filter(([k, v]) => k === referenceKey(v))
    .map(([, v]) => v);
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
    // Only when set, so that a Mount Pod without these keeps the hash it had before they were read.
    ...(Object.keys(settings.patch).length && { patch: settings.patch }),
  });
  return createHash('sha256').update(material).digest('hex').slice(0, 10);
}

/** The `volume-id` label value of a PV's Mount Pods (also the node's lock key for that volume). */
export function volumeLabel(pvName: string): string {
  return dnsName(pvName, LABEL_VALUE_MAX);
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
  // Opt-in for Mount Pods for now (sidecars: on by default): under the reliability run's churn a re-created Mount
  // Pod's client took a held fd whose connection had ended and exited 0 in a loop (ADR 0015).
  const fdDir = settings.attributes.fdHolder === true ? `${FD_HOLDER_ROOT}/${mountId}` : undefined;
  const cache = cacheVolumes(settings, (i) => `${CACHE_VOLUME_PREFIX}-${i}`, 'hostPath');
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
  const { deleteDelay, cleanCache } = settings.attributes;
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
      nodeName,
      restartPolicy: 'Always',
      priorityClassName: 'system-node-critical',
      // It never calls the API; without a token volume its spec can be re-created as it was.
      automountServiceAccountToken: false,
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
  // The admin's pod-level fields (mountPodPatch), rendered for this mount point.
  applyToMountPod(pod.spec!, renderedPatch(settings, mountPoint).patch, dnsName(volume.pvName, LABEL_VALUE_MAX));
  if (input.options.config.enableNodeSelector) {
    // The reference's enableNodeSelector: the scheduler places it (and sees its resources) on this node only.
    delete pod.spec!.nodeName;
    pod.spec!.nodeSelector = { [HOSTNAME_LABEL]: nodeName };
  }
  return { pod, hash, mountPoint, fdDir, warnings: settings.warnings };
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
