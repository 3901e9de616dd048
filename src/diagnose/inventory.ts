// How app pods, their JuiceFS clients, PVCs, PVs and Mount Pods link up, read from the objects alone (pure):
// the rows of `kubectl jfs pods|mounts|pvc|pv`, the dashboard's links, and the diagnosis's walk.
import type {
  V1Container,
  V1ContainerStatus,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1StorageClass,
} from '@kubernetes/client-node';
import {
  CREDENTIALS_INIT_NAME,
  CSI_DRIVER_NAME,
  LABEL_INJECTION_DONE,
  MOUNT_POD_APP_VALUE,
  MOUNT_POD_LABEL_APP,
  MOUNT_POD_LABEL_VOLUME_ID,
  MOUNT_ROOT,
  SIDECAR_NAME,
} from '../contract/keys.js';
import { podUidOfTarget, referencesOf, volumeLabel } from '../contract/mount-pod-refs.js';
import { secretCopyName } from '../contract/secret-copy.js';
import type { PodMode } from './types.js';

/** A JuiceFS client container of a pod (a sidecar, or a Mount Pod's). */
export interface ClientInfo {
  /** The pod the client runs in (the app pod itself in sidecar mode). */
  namespace: string;
  pod: string;
  container: string;
  image: string;
  /** The client's version as its image tag says (e.g. ce-v1.3.1), or the imageID's digest when untagged. */
  version: string;
  /** The PVC it serves, when the objects tell. */
  pvc?: string;
  status: string;
  ready: boolean;
  restarts: number;
}

export interface AppPodInfo {
  namespace: string;
  name: string;
  uid: string;
  node?: string;
  mode: PodMode;
  /** JuiceFS PVCs (from the spec in Mount Pod mode; from the sidecars in sidecar mode). */
  pvcs: string[];
  clients: ClientInfo[];
  /** Mount Pods serving it (Mount Pod mode), namespace/name. */
  mountPods: string[];
  status: string;
  ready: string;
  restarts: number;
  createdAt?: string;
}

export interface MountPodInfo {
  namespace: string;
  name: string;
  node?: string;
  pv?: string;
  /** The app pods whose targets it references, namespace/name (or the UID when the pod is not known). */
  appPods: string[];
  references: number;
  client?: ClientInfo;
  status: string;
  createdAt?: string;
}

const isSidecarName = (name: string) => name === SIDECAR_NAME || new RegExp(`^${SIDECAR_NAME}-\\d+$`).test(name);

/**
 * Where a sidecar mounts the volume it shares with the apps: the host's mount root (sidecar mode), or its
 * emptyDir under /jfs/<volume> (serverless: SERVERLESS_MOUNT_BASE of src/inject/inject.ts).
 */
const isSharedMount = (mountPath: string) => mountPath === MOUNT_ROOT || mountPath.startsWith('/jfs/');

/** Whether a pod is a Mount Pod (by its app label). */
export const isMountPod = (pod: V1Pod) => pod.metadata?.labels?.[MOUNT_POD_LABEL_APP] === MOUNT_POD_APP_VALUE;

/** The JuiceFS client containers the webhook injected (native sidecars first, then classic placement). */
export function sidecarContainers(pod: V1Pod): V1Container[] {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].filter((c) => isSidecarName(c.name));
}

export const isInjected = (pod: V1Pod) =>
  sidecarContainers(pod).length > 0 || pod.metadata?.labels?.[LABEL_INJECTION_DONE] === 'true';

/** PVC names of the pod's persistentVolumeClaim volumes (what Mount Pod mode and a not yet injected pod use). */
export function claimNamesOf(pod: V1Pod): string[] {
  return (pod.spec?.volumes ?? []).flatMap((v) => (v.persistentVolumeClaim ? [v.persistentVolumeClaim.claimName] : []));
}

export const isJuiceFSPv = (pv: V1PersistentVolume | undefined) => pv?.spec?.csi?.driver === CSI_DRIVER_NAME;
export const isJuiceFSClass = (sc: V1StorageClass | undefined) => sc?.provisioner === CSI_DRIVER_NAME;

/** The status of a container as kubectl prints it in a pod's STATUS column. */
function containerState(s: V1ContainerStatus | undefined): string {
  if (!s) return 'Waiting';
  if (s.state?.waiting) return s.state.waiting.reason ?? 'Waiting';
  if (s.state?.terminated) return s.state.terminated.reason ?? `Exit:${s.state.terminated.exitCode}`;
  return s.state?.running ? 'Running' : 'Unknown';
}

/** A pod's STATUS as `kubectl get pods` shows it (close enough: the reason of the first container not running). */
export function podStatusText(pod: V1Pod): string {
  if (pod.metadata?.deletionTimestamp) return 'Terminating';
  const phase = pod.status?.phase ?? 'Unknown';
  if (phase === 'Succeeded' || phase === 'Failed') return pod.status?.reason ?? phase;
  const inits = pod.status?.initContainerStatuses ?? [];
  const nativeSidecars = new Set(
    (pod.spec?.initContainers ?? []).filter((c) => c.restartPolicy === 'Always').map((c) => c.name),
  );
  for (const [i, s] of inits.entries()) {
    if (nativeSidecars.has(s.name) && s.state?.running) continue;
    if (s.state?.terminated?.exitCode === 0) continue;
    const st = containerState(s);
    if (st === 'Running' || st === 'PodInitializing') return `Init:${i}/${inits.length}`;
    return `Init:${st}`;
  }
  for (const s of pod.status?.containerStatuses ?? []) {
    const st = containerState(s);
    if (st !== 'Running' && st !== 'Completed') return st;
  }
  return pod.status?.reason ?? phase;
}

const statusOf = (pod: V1Pod, name: string) =>
  [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])].find((s) => s.name === name);

/** A client's version from its image: the tag (`juicedata/mount:ce-v1.3.1` → `ce-v1.3.1`), else the digest. */
export function clientVersion(image: string, imageID?: string): string {
  const lastSlash = image.lastIndexOf('/');
  const at = image.indexOf('@');
  const colon = image.indexOf(':', lastSlash + 1);
  if (colon > 0 && (at < 0 || colon < at)) return image.slice(colon + 1, at < 0 ? undefined : at);
  const digest = (at >= 0 ? image.slice(at + 1) : imageID?.split('@')[1]) ?? '';
  return digest ? digest.slice(0, 19) : 'latest';
}

function clientInfo(pod: V1Pod, c: V1Container, pvc: string | undefined): ClientInfo {
  const s = statusOf(pod, c.name);
  return {
    namespace: pod.metadata?.namespace ?? '',
    pod: pod.metadata?.name ?? '',
    container: c.name,
    image: s?.image && !s.image.startsWith('sha256:') ? s.image : (c.image ?? ''),
    version: clientVersion(c.image ?? '', s?.imageID),
    pvc,
    status: containerState(s),
    ready: s?.ready ?? false,
    restarts: s?.restartCount ?? 0,
  };
}

/**
 * The PVC a sidecar serves. The injected pod keeps no PVC volume, so it is read back from what the webhook put in:
 * the Secret copy the client's env references (`juicefs-<pvc>-secret`, matched against the namespace's PVCs), or the
 * broker step's `--pvc` (`jfs-credentials[-i]` goes with `jfs-mount[-i]`).
 */
function pvcOfSidecar(pod: V1Pod, c: V1Container, pvcNames: string[]): string | undefined {
  const suffix = c.name.slice(SIDECAR_NAME.length);
  const fetch = (pod.spec?.initContainers ?? []).find((i) => i.name === `${CREDENTIALS_INIT_NAME}${suffix}`);
  const arg = [...(fetch?.args ?? []), ...(fetch?.command ?? [])].find((a) => a.startsWith('--pvc='));
  if (arg) return arg.slice('--pvc='.length);
  const refs = new Set(
    (c.env ?? []).flatMap((e) => (e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef.name] : [])),
  );
  return pvcNames.find((p) => refs.has(secretCopyName(p)));
}

/** Whether an injected pod is serverless: its shared volume at the mount root is an emptyDir, not the host's. */
function injectedMode(pod: V1Pod, sidecar: V1Container): 'sidecar' | 'serverless' {
  const mount = (sidecar.volumeMounts ?? []).find((m) => m.mountPath === MOUNT_ROOT);
  const vol = (pod.spec?.volumes ?? []).find((v) => v.name === mount?.name);
  return vol?.hostPath ? 'sidecar' : 'serverless';
}

/** The JuiceFS mount paths of each app container: the volumes the sidecar shares, or the JuiceFS PVC volumes. */
export function juicefsMountsOf(pod: V1Pod, jfsClaims: string[]): { container: string; path: string }[] {
  const injected = sidecarContainers(pod);
  const shared = new Set(
    injected.flatMap((s) => (s.volumeMounts ?? []).filter((m) => isSharedMount(m.mountPath)).map((m) => m.name)),
  );
  const claimVolumes = new Set(
    (pod.spec?.volumes ?? [])
      .filter((v) => v.persistentVolumeClaim && jfsClaims.includes(v.persistentVolumeClaim.claimName))
      .map((v) => v.name),
  );
  const clientNames = new Set(injected.map((c) => c.name));
  return (pod.spec?.containers ?? [])
    .filter((c) => !clientNames.has(c.name))
    .flatMap((c) =>
      (c.volumeMounts ?? [])
        .filter((m) => shared.has(m.name) || claimVolumes.has(m.name))
        .map((m) => ({ container: c.name, path: m.mountPath })),
    );
}

/** The Mount Pods whose reference annotations name a target of this pod (by its UID). */
export function mountPodsOfPod(pod: V1Pod, mountPods: V1Pod[]): V1Pod[] {
  const uid = pod.metadata?.uid;
  if (!uid) return [];
  return mountPods.filter((m) => referencesOf(m).some((t) => podUidOfTarget(t) === uid));
}

/** The Mount Pods of one PV (by the volume-id label). */
export function mountPodsOfPv(pvName: string, mountPods: V1Pod[]): V1Pod[] {
  const label = volumeLabel(pvName);
  return mountPods.filter((m) => m.metadata?.labels?.[MOUNT_POD_LABEL_VOLUME_ID] === label);
}

export interface Objects {
  pvcs: V1PersistentVolumeClaim[];
  pvs: V1PersistentVolume[];
  storageClasses: V1StorageClass[];
  mountPods: V1Pod[];
}

const key = (ns: string | undefined, name: string | undefined) => `${ns ?? ''}/${name ?? ''}`;

/** Whether a PVC is JuiceFS's: bound to a JuiceFS PV, or (unbound) of a JuiceFS StorageClass. */
export function isJuiceFSClaim(pvc: V1PersistentVolumeClaim, o: Pick<Objects, 'pvs' | 'storageClasses'>): boolean {
  const pvName = pvc.spec?.volumeName;
  if (pvName) return isJuiceFSPv(o.pvs.find((p) => p.metadata?.name === pvName));
  return isJuiceFSClass(o.storageClasses.find((s) => s.metadata?.name === pvc.spec?.storageClassName));
}

/**
 * What one pod is to JuiceFS, or undefined when it uses no JuiceFS volume (and is no Mount Pod). A pod not yet
 * injected whose PVCs are JuiceFS's (e.g. its namespace is not labelled and no Mount Pod serves it) has mode
 * `none`: that is what the diagnosis then explains.
 */
export function describeAppPod(pod: V1Pod, o: Objects): AppPodInfo | undefined {
  if (isMountPod(pod)) return undefined;
  const ns = pod.metadata?.namespace ?? '';
  const nsPvcs = o.pvcs.filter((p) => p.metadata?.namespace === ns);
  const sidecars = sidecarContainers(pod);
  const base = {
    namespace: ns,
    name: pod.metadata?.name ?? '',
    uid: pod.metadata?.uid ?? '',
    node: pod.spec?.nodeName,
    status: podStatusText(pod),
    ready: `${(pod.status?.containerStatuses ?? []).filter((s) => s.ready).length}/${pod.spec?.containers.length ?? 0}`,
    restarts: [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])].reduce(
      (n, s) => n + (s.restartCount ?? 0),
      0,
    ),
    createdAt: pod.metadata?.creationTimestamp ? new Date(pod.metadata.creationTimestamp).toISOString() : undefined,
  };
  if (sidecars.length > 0) {
    const names = nsPvcs.map((p) => p.metadata?.name ?? '');
    const clients = sidecars.map((c) => clientInfo(pod, c, pvcOfSidecar(pod, c, names)));
    return {
      ...base,
      mode: injectedMode(pod, sidecars[0]),
      pvcs: clients.flatMap((c) => (c.pvc ? [c.pvc] : [])),
      clients,
      mountPods: [],
    };
  }
  const byName = new Map(nsPvcs.map((p) => [p.metadata?.name, p]));
  const pvcs = claimNamesOf(pod).filter((n) => {
    const pvc = byName.get(n);
    return pvc !== undefined && isJuiceFSClaim(pvc, o);
  });
  if (pvcs.length === 0) return undefined;
  const mps = mountPodsOfPod(pod, o.mountPods);
  return {
    ...base,
    mode: mps.length > 0 ? 'mount-pod' : 'none',
    pvcs,
    clients: mps.flatMap((m) => {
      const c = (m.spec?.containers ?? [])[0];
      return c ? [clientInfo(m, c, undefined)] : [];
    }),
    mountPods: mps.map((m) => key(m.metadata?.namespace, m.metadata?.name).replace(/^\//, '')),
  };
}

/** A Mount Pod's row: its PV, node, references and the app pods behind them. */
export function describeMountPod(mp: V1Pod, appPods: V1Pod[]): MountPodInfo {
  const refs = referencesOf(mp);
  const byUid = new Map(appPods.map((p) => [p.metadata?.uid, p]));
  const apps = refs.flatMap((t) => {
    const uid = podUidOfTarget(t);
    if (!uid) return [];
    const p = byUid.get(uid);
    return [p ? `${p.metadata?.namespace}/${p.metadata?.name}` : `uid:${uid}`];
  });
  const c = (mp.spec?.containers ?? [])[0];
  return {
    namespace: mp.metadata?.namespace ?? '',
    name: mp.metadata?.name ?? '',
    node: mp.spec?.nodeName,
    pv: mp.metadata?.labels?.[MOUNT_POD_LABEL_VOLUME_ID],
    appPods: [...new Set(apps)],
    references: refs.length,
    client: c ? clientInfo(mp, c, undefined) : undefined,
    status: podStatusText(mp),
    createdAt: mp.metadata?.creationTimestamp ? new Date(mp.metadata.creationTimestamp).toISOString() : undefined,
  };
}
