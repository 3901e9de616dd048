// The injector: pod + resolved JuiceFS volumes + options in, mutated pod out.
// Pure: no I/O, no clock, no randomness, so that the same input always gives
// the same pod (golden files, idempotency, reinvocation).
import type {
  V1Container,
  V1EnvVar,
  V1Pod,
  V1ResourceRequirements,
  V1Volume,
  V1VolumeMount,
} from '@kubernetes/client-node';
import {
  ANNOTATION_DEFAULT_CONTAINER,
  CACHE_VOLUME_PREFIX,
  HOST_PATH_VOLUME_PREFIX,
  CREDENTIALS_INIT_NAME,
  CREDENTIALS_TOKEN_VOLUME,
  CREDENTIALS_VOLUME_PREFIX,
  FD_HOLDER_NAME,
  FD_HOLDER_VOLUME,
  FORMAT_INIT_NAME,
  LABEL_DISABLE_INJECTION,
  LABEL_INJECTION_DONE,
  METRICS_PORT,
  MOUNT_ROOT,
  POD_UID_ENV,
  SIDECAR_NAME,
  UPGRADE_GATE,
} from '../contract/keys.js';
import { DenyError } from '../contract/deny.js';
import { parseQuantity } from '../contract/quantity.js';
import { filterUserAnnotations } from '../mount/allowlist.js';
import { cacheVolumes } from '../mount/cache-volumes.js';
import { buildFormatContainer, buildSidecar, needsFormat } from '../mount/containers.js';
import { brokerClient, buildFetchContainer, credentialsVolume, tokenVolume } from '../mount/credentials.js';
import { buildFdHolderContainer, fdHolderVolume, withFdHolder } from '../mount/fd-holder.js';
import { patchVolumes } from '../mount/patch.js';
import { computeMountSettings } from '../mount/settings.js';
import { checkAddedContainers } from './post-check.js';
import type { ResolvedVolume } from '../resolve/types.js';
import type { InjectOptions, InjectOutcome } from './types.js';

/** Container path where the serverless (emptyDir) shared volume is mounted in the sidecar. */
export const SERVERLESS_MOUNT_BASE = '/jfs';

const POD_UID_VAR: V1EnvVar = { name: POD_UID_ENV, valueFrom: { fieldRef: { fieldPath: 'metadata.uid' } } };

export function describePod(pod: V1Pod): string {
  const ns = pod.metadata?.namespace ? `${pod.metadata.namespace}/` : '';
  const name = pod.metadata?.name || (pod.metadata?.generateName ? `${pod.metadata.generateName}*` : '<unnamed>');
  return `Pod ${ns}${name}`;
}

/** Names taken by the pod, so that what is added never collides with what is there. */
class NameRegistry {
  private readonly taken: Set<string>;
  constructor(names: Iterable<string>) {
    this.taken = new Set(names);
  }
  /** `base`, then `base-1`, `base-2`, … : the first one free. */
  claim(base: string, start = 0): string {
    for (let i = start; ; i++) {
      const name = i === 0 ? base : `${base}-${i}`;
      if (!this.taken.has(name)) {
        this.taken.add(name);
        return name;
      }
    }
  }
}

/**
 * Makes `env` the container's only definition of its name, first in the list;
 * returns whether the user had defined that name. Every user entry of the name
 * goes: the kubelet takes the last entry of a name (and an `env` entry over
 * any `envFrom` key), so one left behind would steer what `$(VAR)` expands to.
 * With ours the only `env` entry of the name, no `envFrom` source or prefix
 * can override it either ("Values defined by an Env with a duplicate key will
 * take precedence", EnvFromSource), and a pod's env cannot be changed after
 * creation.
 */
function ensureEnv(container: V1Container, env: V1EnvVar): boolean {
  const list = container.env ?? [];
  const same = JSON.stringify(env);
  const theirs = list.filter((e) => e.name === env.name && JSON.stringify(e) !== same);
  // Prepended so that $(VAR) references in the container's own env and mounts can use it.
  container.env = [env, ...list.filter((e) => e.name !== env.name)];
  return theirs.length > 0;
}

/**
 * Rewires one app (or init) container's mounts of a replaced volume. Returns
 * whether it mounted it; warns when it had to drop the user's own definition
 * of the pod UID variable.
 */
function rewireMounts(container: V1Container, volumeName: string, hostPathMode: boolean, warnings: string[]): boolean {
  let touched = false;
  for (const mount of container.volumeMounts ?? []) {
    if (mount.name !== volumeName) continue;
    touched = true;
    mount.mountPropagation = 'HostToContainer';
    if (hostPathMode) {
      // The host path is shared by every pod on the node; the pod UID (known
      // only once the pod exists, hence subPathExpr) keeps each pod's mount apart.
      const inner = mount.subPathExpr ?? mount.subPath;
      mount.subPathExpr = `$(${POD_UID_ENV})/${volumeName}${inner ? `/${inner.replace(/^\/+/, '')}` : ''}`;
      delete mount.subPath;
    }
  }
  if (touched && hostPathMode && ensureEnv(container, POD_UID_VAR))
    warnings.push(
      `container ${container.name}: its own ${POD_UID_ENV} env entries were removed; the injector defines that variable`,
    );
  return touched;
}

/**
 * A mount of a volume the pod does not have would be invalid, unless the
 * injector adds a volume of that name: a user's container mounting
 * `jfs-cache-0` ahead of time would get the node's cache folder (other
 * volumes' cached blocks). Such a pod is denied before anything is added.
 */
function refuseDanglingMounts(spec: NonNullable<V1Pod['spec']>): void {
  const volumes = new Set((spec.volumes ?? []).map((v) => v.name));
  for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
    const mount = (c.volumeMounts ?? []).find((m) => !volumes.has(m.name));
    if (mount)
      throw new DenyError(
        'invalid-pod',
        `container ${c.name} mounts volume "${mount.name}", which the pod does not have (names of the volumes the JuiceFS injector adds cannot be mounted ahead of them)`,
      );
  }
}

/** Names the injector gives its volumes and containers start with this; in broker mode no user container has them. */
const INJECTED_PREFIX = 'jfs-';

/**
 * Broker mode (ADR 0010) keeps the credentials in the injector's containers only: no app container may share their
 * process namespace (its /proc/<pid>/environ holds them), nor mount any volume named like the injector's (the
 * credentials emptyDir, the token volume).
 */
function refuseBrokerExposure(spec: NonNullable<V1Pod['spec']>): void {
  if (spec.shareProcessNamespace === true || spec.hostPID === true) {
    throw new DenyError(
      'credentials-shared-process',
      `the pod sets ${spec.hostPID === true ? 'hostPID' : 'shareProcessNamespace'}: true, which would let its containers read the JuiceFS client's environment (its volume credentials, juicefs/credentials: broker)`,
    );
  }
  for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? []), ...(spec.ephemeralContainers ?? [])]) {
    const mount = (c.volumeMounts ?? []).find((m) => m.name.startsWith(INJECTED_PREFIX));
    if (mount)
      throw new DenyError(
        'credentials-volume-mount',
        `container ${c.name} mounts volume "${mount.name}": with juicefs/credentials: broker no app container may mount a volume named ${INJECTED_PREFIX}* (the JuiceFS client's credentials and token)`,
      );
  }
}

/** Skips decided by the pod alone, before any of its volumes is resolved. */
export function skipBeforeResolving(pod: V1Pod): InjectOutcome | undefined {
  const labels = pod.metadata?.labels ?? {};
  if (labels[LABEL_DISABLE_INJECTION] === 'true') {
    return { kind: 'skipped', code: 'opted-out', message: `${LABEL_DISABLE_INJECTION}=true`, warnings: [] };
  }
  if (labels[LABEL_INJECTION_DONE] === 'true') {
    return { kind: 'skipped', code: 'already-injected', message: `${LABEL_INJECTION_DONE}=true`, warnings: [] };
  }
  return undefined;
}

/** The cpu and memory the app containers that mount a volume ask for, summed (resourcePercentages' base). */
function appResourcesOf(containers: V1Container[], volumeName: string): V1ResourceRequirements {
  const sum = { requests: {} as Record<string, string>, limits: {} as Record<string, string> };
  for (const list of ['requests', 'limits'] as const) {
    for (const resource of ['cpu', 'memory']) {
      let total: { num: bigint; den: bigint } | undefined;
      for (const c of containers) {
        if (!c.volumeMounts?.some((m) => m.name === volumeName)) continue;
        const q = parseQuantity(String(c.resources?.[list]?.[resource] ?? ''));
        if (q) total = total ? { num: total.num * q.den + q.num * total.den, den: total.den * q.den } : q;
      }
      if (total) sum[list][resource] = String(Number(total.num) / Number(total.den));
    }
  }
  return sum;
}

export function injectPod(input: V1Pod, volumes: ResolvedVolume[], options: InjectOptions): InjectOutcome {
  const early = skipBeforeResolving(input);
  if (early) return early;
  if (volumes.length === 0) {
    return { kind: 'skipped', code: 'no-juicefs-volumes', message: 'the pod uses no JuiceFS volume', warnings: [] };
  }

  const pod = structuredClone(input);
  const spec = (pod.spec ??= { containers: [] });
  const podWhere = describePod(pod);
  refuseDanglingMounts(spec);
  // The pod's own annotations are checked once; each volume's settings take what passed.
  const podTuning = filterUserAnnotations(pod.metadata?.annotations, options.config.annotationBounds, podWhere);
  const warnings = [...podTuning.warnings];
  const hostPathMode = options.mode === 'sidecar';
  const native = options.config.enableNativeSidecar;

  const appContainers = spec.containers ?? [];
  const appInits = spec.initContainers ?? [];
  const containerNames = new NameRegistry(
    [...appContainers, ...appInits, ...(spec.ephemeralContainers ?? [])].map((c) => c.name),
  );
  const volumeNames = new NameRegistry((spec.volumes ?? []).map((v) => v.name));
  const addedInits: V1Container[] = [];
  const addedContainers: V1Container[] = [];
  const addedVolumes: V1Volume[] = [];
  let fdHolderVolumeName: string | undefined;
  const fdClients: string[] = [];

  let tokenVolumeName: string | undefined;
  if (volumes.some((v) => v.source.credentials === 'broker')) {
    if (!options.broker)
      throw new DenyError(
        'invalid-config',
        `a volume has juicefs/credentials: broker, but this injector has no broker configured (no CA: --credentials-ca-file, or the controller's ConfigMap jfs-sidecar-credentials-ca)`,
      );
    // The broker re-derives the pod's client containers from its fetch steps alone (src/controller/broker-decision.ts),
    // and a copy-mode volume among them would shift their indices (metrics ports): one mode per pod.
    const copied = volumes.find((v) => v.source.credentials !== 'broker');
    if (copied)
      throw new DenyError(
        'invalid-pod',
        `PersistentVolumeClaim ${copied.binding.pvc.name} has juicefs/credentials: copy while another volume of the pod has broker; a pod's JuiceFS volumes must all use the same mode`,
      );
    refuseBrokerExposure(spec);
    tokenVolumeName = volumeNames.claim(CREDENTIALS_TOKEN_VOLUME);
    addedVolumes.push(tokenVolume(tokenVolumeName));
  }

  volumes.forEach(({ source, binding }, index) => {
    const where = `PersistentVolumeClaim ${binding.pvc.name}`;
    const pvcTuning = filterUserAnnotations(binding.pvc.annotations, options.config.annotationBounds, where);
    const settings = computeMountSettings(source, binding.pvc, options, [pvcTuning.accepted, podTuning.accepted], {
      // The reference matches a nodeSelector entry against the pod's own nodeSelector (the node is not chosen yet).
      node: spec.nodeSelector ? { labels: spec.nodeSelector } : undefined,
      appResources: appResourcesOf(appContainers, binding.podVolumeName),
    });
    warnings.push(...pvcTuning.warnings, ...settings.warnings);

    // The PVC volume keeps its name and becomes the shared volume.
    const podVolume = spec.volumes!.find((v) => v.name === binding.podVolumeName)!;
    for (const key of Object.keys(podVolume))
      if (key !== 'name') delete (podVolume as unknown as Record<string, unknown>)[key];
    if (hostPathMode) podVolume.hostPath = { path: MOUNT_ROOT, type: 'DirectoryOrCreate' };
    else podVolume.emptyDir = {};

    const usedByInit = appInits.filter((c) => rewireMounts(c, binding.podVolumeName, hostPathMode, warnings));
    appContainers.forEach((c) => rewireMounts(c, binding.podVolumeName, hostPathMode, warnings));
    if (!native && usedByInit.length) {
      warnings.push(
        `${where}: init container(s) ${usedByInit.map((c) => c.name).join(', ')} mount a JuiceFS volume, but with classic placement the mount starts after init containers`,
      );
    }

    const sidecarMounts: V1VolumeMount[] = [];
    let mountPoint: string;
    if (hostPathMode) {
      sidecarMounts.push({ name: binding.podVolumeName, mountPath: MOUNT_ROOT, mountPropagation: 'Bidirectional' });
      mountPoint = `${MOUNT_ROOT}/$(${POD_UID_ENV})/${binding.podVolumeName}`;
    } else {
      mountPoint = `${SERVERLESS_MOUNT_BASE}/${binding.podVolumeName}`;
      sidecarMounts.push({ name: binding.podVolumeName, mountPath: mountPoint, mountPropagation: 'Bidirectional' });
    }
    const cache = cacheVolumes(settings, {
      host: hostPathMode ? 'hostPath' : 'serverless',
      cacheName: () => volumeNames.claim(`${CACHE_VOLUME_PREFIX}-${index}`),
      hostPathName: () => volumeNames.claim(`${HOST_PATH_VOLUME_PREFIX}-${index}`),
    });
    warnings.push(...cache.warnings.map((m) => `${where}: ${m}`));
    addedVolumes.push(...cache.volumes);
    sidecarMounts.push(...cache.mounts);

    // Broker mode: the volume's credentials emptyDir, and the step that fills it before the client containers start.
    let credentialsVolumeName: string | undefined;
    if (source.credentials === 'broker') {
      credentialsVolumeName = volumeNames.claim(`${CREDENTIALS_VOLUME_PREFIX}-${index}`);
      addedVolumes.push(credentialsVolume(credentialsVolumeName));
      addedInits.push(
        buildFetchContainer(
          containerNames.claim(CREDENTIALS_INIT_NAME, index),
          options.broker!,
          { pvc: binding.pvc.name, volume: binding.podVolumeName },
          tokenVolumeName!,
          credentialsVolumeName,
        ),
      );
    }
    const client = (c: V1Container, kind: 'mount' | 'format') =>
      credentialsVolumeName ? brokerClient(c, kind, credentialsVolumeName) : c;

    if (needsFormat(source.secret.keys)) {
      addedInits.push(
        client(
          buildFormatContainer(containerNames.claim(FORMAT_INIT_NAME, index), settings, source.secret, where),
          'format',
        ),
      );
    }
    const sidecarName = containerNames.claim(SIDECAR_NAME, index);
    // mountPodPatch volumes, one set per client: named after it, so two volumes' clients never share or clash.
    const patchVolumeName = (name: string) => volumeNames.claim(`${sidecarName}-${name}`);
    const patchNames = new Map((settings.patch.volumes ?? []).map((v) => [v.name, patchVolumeName(v.name)]));
    addedVolumes.push(...patchVolumes(settings.patch, (n) => patchNames.get(n)!));
    const sidecar = client(
      buildSidecar({
        name: sidecarName,
        settings,
        secret: source.secret,
        leadingEnv: hostPathMode ? [POD_UID_VAR] : [],
        mountPoint,
        volumeMounts: sidecarMounts,
        // Every sidecar shares the pod's network namespace, so each needs its own port (checked below when the
        // volume's own metrics= option picks one).
        metricsPort: settings.metrics?.port ?? METRICS_PORT + index,
        placement: native ? 'native' : 'classic',
        patchVolumeName: (n) => patchNames.get(n) ?? n,
      }),
      'mount',
    );
    // Native placement only: with classic placement the holder would be one more app-level container that never
    // exits by itself (a Job would not complete), with no start or stop ordering against the client.
    const holdFd = native && options.projectImage !== undefined && settings.attributes.fdHolder !== false;
    if (holdFd) {
      fdHolderVolumeName ??= volumeNames.claim(FD_HOLDER_VOLUME);
      fdClients.push(sidecar.name);
    }
    (native ? addedInits : addedContainers).push(holdFd ? withFdHolder(sidecar, fdHolderVolumeName!) : sidecar);
  });
  if (fdHolderVolumeName) {
    addedVolumes.push(fdHolderVolume(fdHolderVolumeName));
    // First: the clients find its socket when they start.
    addedInits.unshift(
      buildFdHolderContainer(
        containerNames.claim(FD_HOLDER_NAME, 0),
        options.projectImage!,
        fdHolderVolumeName,
        fdClients,
      ),
    );
  }

  checkAddedContainers(input.spec ?? { containers: [] }, [...addedInits, ...addedContainers]);
  spec.initContainers = [...addedInits, ...appInits];
  if (spec.initContainers.length === 0) delete spec.initContainers;
  spec.containers = [...addedContainers, ...appContainers];
  spec.volumes = [...(spec.volumes ?? []), ...addedVolumes];
  // The upgrade gate (ADR 0017) can only be given at creation: readinessGates cannot be added to a pod later.
  if (options.config.upgradeReadinessGate && !spec.readinessGates?.some((g) => g.conditionType === UPGRADE_GATE)) {
    spec.readinessGates = [...(spec.readinessGates ?? []), { conditionType: UPGRADE_GATE }];
  }
  const meta = (pod.metadata ??= {});
  meta.labels = { ...(meta.labels ?? {}), [LABEL_INJECTION_DONE]: 'true' };
  // kubectl exec/attach/logs without -c take this container; with classic placement the sidecar would otherwise
  // come first. The user's own choice stands when it names one of their containers.
  const chosen = meta.annotations?.[ANNOTATION_DEFAULT_CONTAINER];
  if (appContainers.length && !appContainers.some((c) => c.name === chosen)) {
    meta.annotations = { ...(meta.annotations ?? {}), [ANNOTATION_DEFAULT_CONTAINER]: appContainers[0].name };
  }
  return { kind: 'injected', pod, warnings };
}
