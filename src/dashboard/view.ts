// What the dashboard shows, derived from the informers' objects: app pods, their clients (sidecars or Mount
// Pods), PVCs, PVs, StorageClasses, upgrades and the ConfigMap, each row naming the rows it links to. Pure:
// objects in, one JSON-ready view out; the server pushes it to browsers when an informer sees a change.
import type {
  CoreV1Event,
  V1ConfigMap,
  V1Container,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1StorageClass,
} from '@kubernetes/client-node';
import {
  CONFIG_MAP_KEY,
  CREDENTIALS_INIT_NAME,
  CSI_DRIVER_NAME,
  FD_HOLDER_NAME,
  MOUNT_POD_APP_VALUE,
  MOUNT_POD_LABEL_APP,
  MOUNT_POD_LABEL_HASH,
  MOUNT_POD_LABEL_VOLUME_ID,
  SIDECAR_NAME,
} from '../contract/keys.js';
import { secretCopyName } from '../contract/secret-copy.js';
import { ConfigError, parseGlobalConfig, type MountPodPatch } from '../config/schema.js';
import { matchesPvcSelector } from '../config/selector.js';
import { referencesOf, volumeLabel } from '../node/mount-pod-plan.js';
import { ANNOTATION_UPGRADE, type JuiceFSUpgrade } from '../upgrade/types.js';

export interface ClusterObjects {
  pods: readonly V1Pod[];
  pvcs: readonly V1PersistentVolumeClaim[];
  pvs: readonly V1PersistentVolume[];
  storageClasses: readonly V1StorageClass[];
  events: readonly CoreV1Event[];
  configMap?: V1ConfigMap;
  upgrades: readonly JuiceFSUpgrade[];
}

/** One JuiceFS client: a sidecar container of an app pod, or the container of a Mount Pod. */
export interface ClientRow {
  container: string;
  image: string;
  ready: boolean;
  restarts: number;
  /** Why it is not running, when the kubelet says (waiting reason, last exit). */
  problem?: string;
  /** The client's mount flags (`--cache-dir=…`, `-o` options), as its command line has them. */
  flags: string[];
}

export type PodMode = 'sidecar' | 'mount-pod' | 'none';

export interface AppPodRow {
  namespace: string;
  name: string;
  uid: string;
  node?: string;
  phase: string;
  ready: boolean;
  mode: PodMode;
  /** `namespace/name` of the PVCs of JuiceFS volumes it uses. */
  pvcs: string[];
  sidecars: ClientRow[];
  /** `namespace/name` of the Mount Pods serving it. */
  mountPods: string[];
  /** The JuiceFSUpgrade that last touched it, if any. */
  upgrade?: string;
  createdAt?: string;
  /** Its containers, for the log viewer. */
  containers: string[];
  /** Its labels: the upgrade button selects the pod by them. */
  labels: Record<string, string>;
}

export interface MountPodRow {
  namespace: string;
  name: string;
  node?: string;
  phase: string;
  ready: boolean;
  pv?: string;
  hash?: string;
  client?: ClientRow;
  /** `namespace/name` of the app pods whose targets it references. */
  appPods: string[];
  references: number;
  containers: string[];
}

export interface PvcRow {
  namespace: string;
  name: string;
  phase: string;
  storageClass?: string;
  pv?: string;
  labels: Record<string, string>;
  appPods: string[];
  /** Indexes of the ConfigMap's mountPodPatch entries whose pvcSelector matches. */
  patches: number[];
}

export interface PvRow {
  name: string;
  phase: string;
  storageClass?: string;
  claim?: string;
  volumeHandle?: string;
  /** Its volumeAttributes: settings, never credentials (those live in Secrets, which the dashboard does not read). */
  attributes: Record<string, string>;
  mountPods: string[];
}

export interface StorageClassRow {
  name: string;
  provisioner: string;
  parameters: Record<string, string>;
  reclaimPolicy?: string;
  bindingMode?: string;
  pvs: string[];
  pvcs: string[];
}

export interface EventRow {
  kind: string;
  namespace: string;
  name: string;
  type: string;
  reason: string;
  message: string;
  count: number;
  last: string;
}

export interface UpgradeRow {
  name: string;
  spec: JuiceFSUpgrade['spec'];
  status: NonNullable<JuiceFSUpgrade['status']>;
  createdAt?: string;
}

export interface PatchMatch {
  index: number;
  selector: MountPodPatch['pvcSelector'];
  image?: string;
  mountOptions?: string[];
  pvcs: string[];
}

/** A running client whose image or options differ from what the ConfigMap now says for its PVC. */
export interface DriftRow {
  /** `pod namespace/name` and the container. */
  pod: string;
  container: string;
  pvc: string;
  runningImage: string;
  configImage?: string;
  missingOptions: string[];
}

export interface ConfigView {
  present: boolean;
  text?: string;
  resourceVersion?: string;
  error?: string;
  patches: PatchMatch[];
  drift: DriftRow[];
}

export interface NodeRow {
  name: string;
  mountPods: number;
  sidecarPods: number;
  appPods: number;
}

export interface DashView {
  appPods: AppPodRow[];
  mountPods: MountPodRow[];
  pvcs: PvcRow[];
  pvs: PvRow[];
  storageClasses: StorageClassRow[];
  upgrades: UpgradeRow[];
  events: EventRow[];
  config: ConfigView;
  nodes: NodeRow[];
}

const SIDECAR_PATTERN = new RegExp(`^${SIDECAR_NAME}(-[0-9]+)?$`);
/** Events kept in the view: the newest, of the objects it shows. */
export const MAX_EVENTS = 300;

const key = (namespace: string | undefined, name: string | undefined) => `${namespace ?? ''}/${name ?? ''}`;

function isReady(pod: V1Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

function clientRow(pod: V1Pod, c: V1Container): ClientRow {
  const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
  const s = statuses.find((x) => x.name === c.name);
  const waiting = s?.state?.waiting;
  const term = s?.state?.terminated ?? s?.lastState?.terminated;
  let problem: string | undefined;
  if (waiting?.reason && waiting.reason !== 'PodInitializing' && waiting.reason !== 'ContainerCreating')
    problem = `${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}`;
  else if (term && term.exitCode !== 0 && s?.state?.running === undefined)
    problem = `exited ${term.exitCode}${term.reason ? ` (${term.reason})` : ''}`;
  const argv = [...(c.command ?? []), ...(c.args ?? [])];
  const flags: string[] = [];
  argv.forEach((a, i) => {
    if (a === '-o' && argv[i + 1] !== undefined) flags.push(`-o ${argv[i + 1]}`);
    else if (/^--[a-z]/.test(a)) flags.push(a);
  });
  return {
    container: c.name,
    image: c.image ?? '',
    ready: s?.ready === true,
    restarts: s?.restartCount ?? 0,
    problem,
    flags,
  };
}

/** The PVCs of an injected or Mount Pod-mode pod: its PVC volumes, its Secret copies, its broker fetch steps. */
function podPvcNames(pod: V1Pod, pvcsOfNamespace: ReadonlyMap<string, V1PersistentVolumeClaim>): string[] {
  const names = new Set<string>();
  for (const v of pod.spec?.volumes ?? []) {
    const claim = v.persistentVolumeClaim?.claimName;
    if (claim && pvcsOfNamespace.has(claim)) names.add(claim);
  }
  const containers = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  const copies = new Map([...pvcsOfNamespace.keys()].map((n) => [secretCopyName(n), n]));
  for (const c of containers) {
    if (SIDECAR_PATTERN.test(c.name))
      for (const e of c.env ?? []) {
        const pvc = copies.get(e.valueFrom?.secretKeyRef?.name ?? '');
        if (pvc) names.add(pvc);
      }
    if (c.name.startsWith(CREDENTIALS_INIT_NAME))
      for (const a of c.args ?? []) {
        const m = /^--pvc=(.+)$/.exec(a);
        if (m && pvcsOfNamespace.has(m[1])) names.add(m[1]);
      }
  }
  return [...names].sort();
}

/** `<kubelet root>/pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount` → the pod's uid. */
function podUidOfTarget(target: string): string | undefined {
  return /\/pods\/([0-9a-f-]{36})\/volumes\//.exec(target)?.[1];
}

function isJuicefsPv(pv: V1PersistentVolume): boolean {
  return pv.spec?.csi?.driver === CSI_DRIVER_NAME;
}

/** The last patch that sets an image wins (config order, as the settings apply them). */
function patchImage(p: MountPodPatch): string | undefined {
  return p.ceMountImage ?? p.eeMountImage;
}

export function buildView(o: ClusterObjects): DashView {
  const juicefsScs = new Set(
    o.storageClasses.filter((s) => s.provisioner === CSI_DRIVER_NAME).map((s) => s.metadata!.name!),
  );
  const juicefsPvs = o.pvs.filter(isJuicefsPv);
  const pvByName = new Map(juicefsPvs.map((pv) => [pv.metadata!.name!, pv]));
  const isJuicefsPvc = (c: V1PersistentVolumeClaim) =>
    (c.spec?.volumeName !== undefined && pvByName.has(c.spec.volumeName)) ||
    (c.spec?.storageClassName !== undefined && juicefsScs.has(c.spec.storageClassName));
  const pvcs = o.pvcs.filter(isJuicefsPvc);
  const pvcsByNs = new Map<string, Map<string, V1PersistentVolumeClaim>>();
  for (const c of pvcs) {
    const ns = c.metadata!.namespace!;
    if (!pvcsByNs.has(ns)) pvcsByNs.set(ns, new Map());
    pvcsByNs.get(ns)!.set(c.metadata!.name!, c);
  }

  const isMountPod = (p: V1Pod) => p.metadata?.labels?.[MOUNT_POD_LABEL_APP] === MOUNT_POD_APP_VALUE;
  const podByUid = new Map(o.pods.map((p) => [p.metadata?.uid ?? '', p]));

  const mountPods: MountPodRow[] = o.pods.filter(isMountPod).map((p) => {
    const refs = referencesOf(p);
    const appPods = [
      ...new Set(
        refs
          .map((t) => podByUid.get(podUidOfTarget(t) ?? ''))
          .filter((a): a is V1Pod => a !== undefined)
          .map((a) => key(a.metadata?.namespace, a.metadata?.name)),
      ),
    ].sort();
    const volumeId = p.metadata?.labels?.[MOUNT_POD_LABEL_VOLUME_ID];
    const pv = juicefsPvs.find((v) => volumeLabel(v.metadata!.name!) === volumeId)?.metadata?.name;
    const main = p.spec?.containers?.[0];
    return {
      namespace: p.metadata!.namespace!,
      name: p.metadata!.name!,
      node: p.spec?.nodeName,
      phase: p.status?.phase ?? 'Unknown',
      ready: isReady(p),
      pv,
      hash: p.metadata?.labels?.[MOUNT_POD_LABEL_HASH],
      client: main ? clientRow(p, main) : undefined,
      appPods,
      references: refs.length,
      containers: logContainers(p),
    };
  });
  const mountPodsOfApp = new Map<string, string[]>();
  for (const m of mountPods)
    for (const a of m.appPods) mountPodsOfApp.set(a, [...(mountPodsOfApp.get(a) ?? []), key(m.namespace, m.name)]);

  const appPods: AppPodRow[] = [];
  for (const p of o.pods) {
    if (isMountPod(p)) continue;
    const ns = p.metadata!.namespace!;
    const names = podPvcNames(p, pvcsByNs.get(ns) ?? new Map());
    const containers = [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])];
    const sidecars = containers.filter((c) => SIDECAR_PATTERN.test(c.name)).map((c) => clientRow(p, c));
    const k = key(ns, p.metadata?.name);
    const served = mountPodsOfApp.get(k) ?? [];
    if (names.length === 0 && sidecars.length === 0 && served.length === 0) continue;
    appPods.push({
      namespace: ns,
      name: p.metadata!.name!,
      uid: p.metadata?.uid ?? '',
      node: p.spec?.nodeName,
      phase: p.metadata?.deletionTimestamp ? 'Terminating' : (p.status?.phase ?? 'Unknown'),
      ready: isReady(p),
      mode: sidecars.length ? 'sidecar' : names.length || served.length ? 'mount-pod' : 'none',
      pvcs: names.map((n) => key(ns, n)),
      sidecars,
      mountPods: served,
      upgrade: p.metadata?.annotations?.[ANNOTATION_UPGRADE],
      createdAt: p.metadata?.creationTimestamp ? new Date(p.metadata.creationTimestamp).toISOString() : undefined,
      containers: logContainers(p),
      labels: p.metadata?.labels ?? {},
    });
  }
  appPods.sort((a, b) => key(a.namespace, a.name).localeCompare(key(b.namespace, b.name)));
  mountPods.sort((a, b) => key(a.namespace, a.name).localeCompare(key(b.namespace, b.name)));

  const appsOfPvc = new Map<string, string[]>();
  for (const a of appPods)
    for (const c of a.pvcs) appsOfPvc.set(c, [...(appsOfPvc.get(c) ?? []), key(a.namespace, a.name)]);

  const config = configView(o, pvcs, appPods);
  const patchesOf = new Map<string, number[]>();
  for (const m of config.patches) for (const c of m.pvcs) patchesOf.set(c, [...(patchesOf.get(c) ?? []), m.index]);

  const pvcRows: PvcRow[] = pvcs
    .map((c) => {
      const k = key(c.metadata?.namespace, c.metadata?.name);
      return {
        namespace: c.metadata!.namespace!,
        name: c.metadata!.name!,
        phase: c.status?.phase ?? 'Pending',
        storageClass: c.spec?.storageClassName,
        pv: c.spec?.volumeName,
        labels: c.metadata?.labels ?? {},
        appPods: appsOfPvc.get(k) ?? [],
        patches: patchesOf.get(k) ?? [],
      };
    })
    .sort((a, b) => key(a.namespace, a.name).localeCompare(key(b.namespace, b.name)));

  const pvRows: PvRow[] = juicefsPvs
    .map((pv) => {
      const name = pv.metadata!.name!;
      const ref = pv.spec?.claimRef;
      return {
        name,
        phase: pv.status?.phase ?? 'Unknown',
        storageClass: pv.spec?.storageClassName,
        claim: ref?.name ? key(ref.namespace, ref.name) : undefined,
        volumeHandle: pv.spec?.csi?.volumeHandle,
        attributes: pv.spec?.csi?.volumeAttributes ?? {},
        mountPods: mountPods.filter((m) => m.pv === name).map((m) => key(m.namespace, m.name)),
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));

  const scRows: StorageClassRow[] = o.storageClasses
    .filter((s) => juicefsScs.has(s.metadata!.name!))
    .map((s) => {
      const name = s.metadata!.name!;
      return {
        name,
        provisioner: s.provisioner,
        parameters: s.parameters ?? {},
        reclaimPolicy: s.reclaimPolicy,
        bindingMode: s.volumeBindingMode,
        pvs: pvRows.filter((p) => p.storageClass === name).map((p) => p.name),
        pvcs: pvcRows.filter((p) => p.storageClass === name).map((p) => key(p.namespace, p.name)),
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));

  const shown = new Set<string>([
    ...appPods.map((a) => `Pod/${key(a.namespace, a.name)}`),
    ...mountPods.map((m) => `Pod/${key(m.namespace, m.name)}`),
    ...pvcRows.map((c) => `PersistentVolumeClaim/${key(c.namespace, c.name)}`),
    ...pvRows.map((p) => `PersistentVolume//${p.name}`),
    ...o.upgrades.map((u) => `JuiceFSUpgrade//${u.metadata?.name ?? ''}`),
  ]);
  const events: EventRow[] = o.events
    .map((e) => ({
      kind: e.involvedObject.kind ?? '',
      namespace: e.involvedObject.namespace ?? '',
      name: e.involvedObject.name ?? '',
      type: e.type ?? 'Normal',
      reason: e.reason ?? '',
      message: e.message ?? '',
      count: e.count ?? 1,
      last: new Date(e.lastTimestamp ?? e.eventTime ?? e.metadata?.creationTimestamp ?? 0).toISOString(),
    }))
    .filter((e) => shown.has(`${e.kind}/${e.namespace}/${e.name}`))
    .sort((a, b) => b.last.localeCompare(a.last))
    .slice(0, MAX_EVENTS);

  const upgrades: UpgradeRow[] = o.upgrades
    .map((u) => ({
      name: u.metadata?.name ?? '',
      spec: u.spec,
      status: u.status ?? {},
      createdAt: u.metadata?.creationTimestamp ? new Date(u.metadata.creationTimestamp).toISOString() : undefined,
    }))
    .sort((a, b) => (b.createdAt ?? '').localeCompare(a.createdAt ?? ''));

  const nodes = new Map<string, NodeRow>();
  const nodeRow = (name: string) => {
    if (!nodes.has(name)) nodes.set(name, { name, mountPods: 0, sidecarPods: 0, appPods: 0 });
    return nodes.get(name)!;
  };
  for (const m of mountPods) if (m.node) nodeRow(m.node).mountPods++;
  for (const a of appPods)
    if (a.node) {
      nodeRow(a.node).appPods++;
      if (a.mode === 'sidecar') nodeRow(a.node).sidecarPods++;
    }

  return {
    appPods,
    mountPods,
    pvcs: pvcRows,
    pvs: pvRows,
    storageClasses: scRows,
    upgrades,
    events,
    config,
    nodes: [...nodes.values()].sort((a, b) => a.name.localeCompare(b.name)),
  };
}

/** The ConfigMap: its text, which PVCs each pvcSelector matches, and where running clients differ from it. */
function configView(
  o: ClusterObjects,
  pvcs: readonly V1PersistentVolumeClaim[],
  appPods: readonly AppPodRow[],
): ConfigView {
  const text = o.configMap?.data?.[CONFIG_MAP_KEY];
  const base = { present: o.configMap !== undefined, text, resourceVersion: o.configMap?.metadata?.resourceVersion };
  let patches: MountPodPatch[];
  try {
    patches = parseGlobalConfig(text).mountPodPatch;
  } catch (err) {
    const error = err instanceof ConfigError || err instanceof Error ? err.message : String(err);
    return { ...base, error, patches: [], drift: [] };
  }
  const identity = (c: V1PersistentVolumeClaim) => ({
    name: c.metadata?.name ?? '',
    labels: c.metadata?.labels ?? {},
    storageClassName: c.spec?.storageClassName,
  });
  const matches: PatchMatch[] = patches.map((p, index) => ({
    index,
    selector: p.pvcSelector,
    image: patchImage(p),
    mountOptions: p.mountOptions,
    pvcs: pvcs
      .filter((c) => matchesPvcSelector(p.pvcSelector, identity(c)))
      .map((c) => key(c.metadata?.namespace, c.metadata?.name))
      .sort(),
  }));
  const drift: DriftRow[] = [];
  for (const a of appPods) {
    for (const pvc of a.pvcs) {
      const applying = matches.filter((m) => m.pvcs.includes(pvc));
      const configImage = applying
        .map((m) => m.image)
        .filter((i) => i !== undefined)
        .at(-1);
      const options = applying.flatMap((m) => m.mountOptions ?? []);
      // A pod's sidecars cannot be told apart by PVC from the spec alone when it has several: each is compared.
      for (const s of a.sidecars) {
        const have = s.flags.join(' ');
        const missingOptions = options.filter((opt) => !have.includes(opt));
        if ((configImage && configImage !== s.image) || missingOptions.length)
          drift.push({
            pod: key(a.namespace, a.name),
            container: s.container,
            pvc,
            runningImage: s.image,
            configImage,
            missingOptions,
          });
      }
    }
  }
  return { ...base, patches: matches, drift };
}

/**
 * The containers of the log viewer, the one shown first first: the JuiceFS clients (a Mount Pod's container, an app
 * pod's sidecars), then the apps, then the other init containers (format, credentials), the fd holder last.
 */
export function logContainers(pod: V1Pod): string[] {
  const inits = (pod.spec?.initContainers ?? []).map((c) => c.name);
  const main = (pod.spec?.containers ?? []).map((c) => c.name);
  const clients = [...inits, ...main].filter((n) => SIDECAR_PATTERN.test(n));
  const rest = [...main, ...inits].filter((n) => !clients.includes(n) && n !== FD_HOLDER_NAME);
  return [...clients, ...rest, ...[...inits, ...main].filter((n) => n === FD_HOLDER_NAME)];
}
