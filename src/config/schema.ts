// The global config: ConfigMap juicefs-csi-driver-config, key config.yaml,
// written by the admin and hot-reloaded. One schema, parsed here, used by the
// webhook, the offline inject command, the node service and `check`: every
// field of the reference driver's Config and MountPodPatch, with how it is
// treated here (CONFIG_FIELDS, ENTRY_FIELDS). A bad entry is dropped alone.
import type {
  V1Container,
  V1EnvVar,
  V1LabelSelector,
  V1Lifecycle,
  V1PodDNSConfig,
  V1Probe,
  V1Volume,
  V1VolumeDevice,
  V1VolumeMount,
} from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_RESOURCES, MOUNT_POD_ANN_CLEAN_CACHE, MOUNT_POD_ANN_DELETE_DELAY } from '../contract/keys.js';
import { parseDuration } from '../contract/duration.js';
import { compareQuantities, isPositive, parseQuantity } from '../contract/quantity.js';
import { shapeProblems } from './shape.js';
import { CacheDirsError, parseCacheDirs, type CacheDirEntry } from './cache-dirs.js';

/** A resource list of any resource name (cpu, memory, ephemeral-storage, nvidia.com/gpu, hugepages-2Mi, …). */
export type ResourceList = Record<string, string>;

export interface ResourcesPatch {
  requests?: ResourceList;
  limits?: ResourceList;
}

/** Sidecar resources as shares of the app containers' own (the reference's `resourcePercentages`). */
export interface ResourcePercentages {
  /** Percent of the app containers' requests, by resource (cpu, memory). */
  requests?: Record<string, number>;
  limits?: Record<string, number>;
  /** A computed limit is raised to at least this (defaults: cpu 100m, memory 300Mi, as the reference). */
  minLimits?: ResourceList;
}

/** Which PVCs a mountPodPatch entry applies to; every given field must match. */
export interface PvcSelector extends V1LabelSelector {
  matchName?: string;
  matchStorageClassName?: string;
}

export interface MountPodPatch {
  /** The entry's position in the ConfigMap's list (messages name it; set by the parser). */
  index?: number;
  pvcSelector?: PvcSelector;
  nodeSelector?: V1LabelSelector;
  ceMountImage?: string;
  eeMountImage?: string;
  /** Cache storage of the client (./cache-dirs.ts). */
  cacheDirs?: CacheDirEntry[];
  imagePullPolicy?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  hostNetwork?: boolean;
  hostPID?: boolean;
  dnsPolicy?: string;
  dnsConfig?: V1PodDNSConfig;
  hostnameKey?: 'podname' | 'volumeid';
  livenessProbe?: V1Probe;
  readinessProbe?: V1Probe;
  startupProbe?: V1Probe;
  lifecycle?: V1Lifecycle;
  resources?: ResourcesPatch;
  resourcePercentages?: ResourcePercentages;
  terminationGracePeriodSeconds?: number;
  volumes?: V1Volume[];
  volumeMounts?: V1VolumeMount[];
  volumeDevices?: V1VolumeDevice[];
  env?: V1EnvVar[];
  initContainers?: V1Container[];
  mountOptions?: string[];
}

/** Bounds within which namespace users may tune resources through annotations. */
export interface AnnotationBounds {
  maxCpu: string;
  maxMemory: string;
}

/**
 * Something in the ConfigMap that is not applied: `entry-refused`, a mountPodPatch entry dropped whole (an unknown or
 * invalid field, or a field its selector may not carry); `field-ignored`, a known field with no effect here.
 */
export interface ConfigIssue {
  /** Where: `mountPodPatch[3].fooBar`, `enableSetQuota`. */
  path: string;
  /** The mountPodPatch entry, when it is one's. */
  entry?: number;
  effect: 'entry-refused' | 'field-ignored';
  message: string;
}

export interface GlobalConfig {
  enableNativeSidecar: boolean;
  /**
   * Whether the ConfigMap sets enableNativeSidecar. When it does not, the API server's version decides
   * (withServerVersion), as the reference driver does.
   */
  nativeSidecarSet?: boolean;
  /** Mount Pods placed by a nodeSelector on the node's hostname label instead of nodeName (the reference's switch). */
  enableNodeSelector: boolean;
  /** JuiceFS quotas from PV/PVC capacities at all (the reference's enableSetQuota). */
  enableSetQuota: boolean;
  /**
   * The controller sets a new PV's quota in CreateVolume; false: the sidecar sets it at its mount instead, as it
   * does for PVs the controller did not provision (the reference's enableControllerSetQuota).
   */
  enableControllerSetQuota: boolean;
  /**
   * Give injected pods the upgrade readiness gate (ADR 0017): Services drain a pod while the upgrader swaps
   * its client. Off by default: a pod with the gate is Ready only once the controller has said so.
   */
  upgradeReadinessGate: boolean;
  /** The entries that apply, in ConfigMap order; refused ones are absent (see issues). */
  mountPodPatch: MountPodPatch[];
  annotationBounds: AnnotationBounds;
  /** What the document says that is not applied, each with its reason. */
  issues: ConfigIssue[];
}

export const DEFAULT_GLOBAL_CONFIG: GlobalConfig = {
  enableNativeSidecar: true,
  enableNodeSelector: false,
  enableSetQuota: true,
  enableControllerSetQuota: true,
  upgradeReadinessGate: false,
  mountPodPatch: [],
  // By default a user may tune up to the default limits, never beyond: raising
  // them is the admin's decision.
  annotationBounds: { maxCpu: DEFAULT_RESOURCES.limits.cpu, maxMemory: DEFAULT_RESOURCES.limits.memory },
  issues: [],
};

/** A whole document that cannot be read: the last good config stays in force. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** One field's problem (the parser turns it into the entry's refusal or the switch's). */
class FieldError extends Error {}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const problem = (where: string, why: string): never => {
  throw new FieldError(`${where}: ${why}`);
};

function shaped<T>(type: string) {
  return (raw: unknown, where: string): T => {
    const problems = shapeProblems(raw, type, where);
    // Each problem names its own path, the first one the refusal's.
    if (problems.length) throw new FieldError(problems.join('; '));
    return raw as T;
  };
}

function str(raw: unknown, where: string): string {
  return typeof raw === 'string' ? raw : problem(where, 'expected a string');
}

function bool(raw: unknown, where: string): boolean {
  return typeof raw === 'boolean' ? raw : problem(where, 'expected true or false');
}

function oneOf<T extends string>(values: readonly T[]) {
  return (raw: unknown, where: string): T =>
    typeof raw === 'string' && (values as readonly string[]).includes(raw)
      ? (raw as T)
      : problem(where, `"${String(raw)}" is not one of ${values.join(', ')}`);
}

const QUALIFIED_NAME =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
function qualifiedName(k: string): boolean {
  const name = k.split('/').pop()!;
  return QUALIFIED_NAME.test(k) && name.length <= 63 && k.length - name.length <= 254;
}
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function stringMap(raw: unknown, where: string): Record<string, string> {
  if (!isRecord(raw)) return problem(where, 'expected a map of strings');
  for (const [k, v] of Object.entries(raw)) if (typeof v !== 'string') problem(`${where}.${k}`, 'expected a string');
  return raw as Record<string, string>;
}

function resourceList(raw: unknown, where: string): ResourceList {
  const m = stringMap(raw, where);
  for (const [k, v] of Object.entries(m)) {
    if (!qualifiedName(k)) problem(`${where}.${k}`, 'is not a resource name');
    if (parseQuantity(v) === undefined) problem(`${where}.${k}`, `"${v}" is not a quantity`);
  }
  return m;
}

function only(raw: unknown, where: string, keys: readonly string[]): Record<string, unknown> {
  if (!isRecord(raw)) return problem(where, 'expected a map');
  for (const k of Object.keys(raw)) if (!keys.includes(k)) problem(`${where}.${k}`, 'unknown field');
  return raw;
}

const parseSelector = shaped<V1LabelSelector>('V1LabelSelector');
const OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'];
function labelSelector(raw: V1LabelSelector, where: string): V1LabelSelector {
  parseSelector(raw, where);
  (raw.matchExpressions ?? []).forEach((e, i) => {
    const at = `${where}.matchExpressions[${i}]`;
    if (!OPERATORS.includes(e.operator))
      problem(`${at}.operator`, `"${e.operator}" is not one of ${OPERATORS.join(', ')}`);
    const needsValues = e.operator === 'In' || e.operator === 'NotIn';
    if (needsValues !== (e.values ?? []).length > 0)
      problem(`${at}.values`, needsValues ? `${e.operator} needs values` : `${e.operator} takes no values`);
  });
  return raw;
}

/**
 * Volume names the client's own pod spec uses (the injector's `jfs-…`, the reference's own prefixes): a patch's volume
 * of such a name would replace or shadow one of them.
 */
export const INTERNAL_VOLUME_PREFIXES = ['jfs-', 'rsa-key', 'init-config', 'config-', 'update-db', 'cachedir-'];
const internal = (name: string) => INTERNAL_VOLUME_PREFIXES.some((p) => name.startsWith(p));

export type FieldStatus = 'honoured' | 'differs' | 'refused';

/** How one field of the ConfigMap is treated here: the one table the parser, the settings and `check` read. */
export interface FieldSpec {
  status: FieldStatus;
  /** Where it acts: the sidecar, the Mount Pod, both; `selection`: which entries apply; `config`: the webhook/node. */
  appliesTo: 'both' | 'mount-pod' | 'sidecar' | 'selection' | 'config';
  /** What it does here; for `differs`, how it differs from the reference; for `refused`, why. */
  note: string;
  /** May an entry whose selector reads what namespace users write carry it (ADR 0005)? */
  userSelectable?: boolean;
  /** The value, or FieldError naming the path. */
  parse(raw: unknown, where: string): unknown;
  /** A value this tree does not act on as the reference would: why (the field is then ignored, and reported). */
  refuse?(value: unknown): string | undefined;
  /** A value acted on differently from the reference: how. */
  differs?(value: unknown): string | undefined;
}

const sw = (s: FieldSpec): FieldSpec => s;

/** The top-level keys of config.yaml: the reference's switches and this tree's own. */
export const CONFIG_FIELDS: Record<string, FieldSpec> = {
  enableNodeSelector: sw({
    status: 'honoured',
    appliesTo: 'mount-pod',
    note: "a Mount Pod is placed by nodeSelector kubernetes.io/hostname=<node> instead of nodeName; unset, the node service's env ENABLE_NODE_SELECTOR=1 turns it on (the reference's older switch)",
    parse: bool,
  }),
  enableNativeSidecar: sw({
    status: 'honoured',
    appliesTo: 'sidecar',
    note: 'native sidecar (an init container with restartPolicy Always) or classic placement; unset: from 1.29 on',
    parse: bool,
  }),
  enableSetQuota: sw({
    status: 'honoured',
    appliesTo: 'config',
    note:
      "capacities as JuiceFS quotas on the PV's directory (controller and sidecar); false: none is set, and an " +
      'expansion only records the new size',
    parse: bool,
  }),
  enableControllerSetQuota: sw({
    status: 'differs',
    appliesTo: 'config',
    note:
      'true: CreateVolume and expansion set the quota; false: the sidecar sets it from the PVC request at its mount ' +
      '(as it does for PVs the controller did not provision); Mount Pods do not set one',
    parse: bool,
  }),
  enableAutoRemoveRequestResources: sw({
    status: 'honoured',
    appliesTo: 'mount-pod',
    note: 'false: a Mount Pod keeps its requests',
    parse: bool,
    refuse: (v) =>
      v === true
        ? 'requests are never removed: a Mount Pod the kubelet refuses for resources fails the publish with its reason (lower juicefs/mount-cpu-request or -memory-request)'
        : undefined,
  }),
  enableAutoAbortStuckMountPod: sw({
    status: 'honoured',
    appliesTo: 'both',
    note: "a stuck client's FUSE connection is aborted when it stops",
    parse: bool,
    differs: (v) =>
      v === true
        ? "sidecars abort a stuck client's connection at stop (ADR 0013); a Mount Pod's is unmounted lazily, not aborted"
        : undefined,
    refuse: (v) => (v === false ? "sidecars always abort a stuck client's connection at stop (ADR 0013)" : undefined),
  }),
  enableLazyUmountTarget: sw({
    status: 'honoured',
    appliesTo: 'mount-pod',
    note: 'a busy or hung target is unmounted lazily',
    parse: bool,
    differs: (v) => (v === true ? 'a plain unmount is tried first; lazily only when busy or hung' : undefined),
    refuse: (v) =>
      v === false ? 'a busy target is still unmounted lazily, else NodeUnpublishVolume would fail forever' : undefined,
  }),
  enableKubeletListMountPod: sw({
    status: 'honoured',
    appliesTo: 'mount-pod',
    note: 'false: Mount Pods are listed from the API server',
    parse: bool,
    refuse: (v) =>
      v === true
        ? "the node service lists Mount Pods from the API server (the kubelet's list may lag, and a Mount Pod not be reused)"
        : undefined,
  }),
  mountPodPatch: sw({
    status: 'honoured',
    appliesTo: 'both',
    note: 'entries applied in order to the volumes they select (each field: ENTRY_FIELDS)',
    // Not a list: the whole document is refused (the last good config stays), not every entry silently.
    parse: (raw) => {
      if (raw !== null && !Array.isArray(raw)) throw new ConfigError('mountPodPatch: expected a list');
      return (raw ?? []) as unknown[];
    },
  }),
  upgradeReadinessGate: sw({
    status: 'honoured',
    appliesTo: 'sidecar',
    note: "this tree's own: injected pods get the upgrade readiness gate (ADR 0017)",
    parse: bool,
  }),
  annotationBounds: sw({
    status: 'honoured',
    appliesTo: 'config',
    note: "this tree's own: how much CPU and memory namespace users may ask for in annotations (ADR 0005)",
    parse: (raw, where) => {
      const m = stringMap(only(raw, where, ['maxCpu', 'maxMemory']), where);
      for (const [k, v] of Object.entries(m))
        if (parseQuantity(v) === undefined) problem(`${where}.${k}`, `"${v}" is not a quantity`);
      return m;
    },
  }),
};

const probe = shaped<V1Probe>('V1Probe');

/** The fields of one mountPodPatch entry: every field of the reference's MountPodPatch. */
export const ENTRY_FIELDS: Record<keyof Omit<MountPodPatch, 'index'>, FieldSpec> = {
  pvcSelector: sw({
    status: 'honoured',
    appliesTo: 'selection',
    note: 'label selector over the PVC, matchName, matchStorageClassName; every given part must match',
    userSelectable: true,
    parse: (raw, where) => {
      const m = only(raw, where, ['matchLabels', 'matchExpressions', 'matchName', 'matchStorageClassName']);
      for (const k of ['matchName', 'matchStorageClassName']) if (m[k] !== undefined) str(m[k], `${where}.${k}`);
      const { matchName, matchStorageClassName, ...selector } = m;
      labelSelector(selector, where);
      return {
        ...selector,
        ...(matchName !== undefined && { matchName }),
        ...(matchStorageClassName !== undefined && { matchStorageClassName }),
      };
    },
  }),
  nodeSelector: sw({
    status: 'honoured',
    appliesTo: 'selection',
    note: "label selector over the node's labels (Mount Pod: the Node; sidecar: the pod's nodeSelector, as the reference)",
    userSelectable: true,
    parse: (raw, where) => labelSelector(raw as V1LabelSelector, where),
  }),
  ceMountImage: sw({ status: 'honoured', appliesTo: 'both', note: 'image of the client', parse: str }),
  eeMountImage: sw({
    status: 'refused',
    appliesTo: 'both',
    note: 'Enterprise Edition volumes (a token without metaurl) are not supported here, so no client uses it',
    parse: str,
  }),
  cacheDirs: sw({
    status: 'honoured',
    appliesTo: 'both',
    note: 'cache storage of the client: HostPath, PVC, EmptyDir, Ephemeral (./cache-dirs.ts); the last entry with cacheDirs gives them; a sidecar takes no HostPath in serverless pods',
    parse: (raw, where) => {
      try {
        return parseCacheDirs(raw, where);
      } catch (err) {
        // Its message names the deepest path (mountPodPatch[0].cacheDirs[1].name).
        if (err instanceof CacheDirsError) throw new FieldError(err.message);
        throw err;
      }
    },
  }),
  imagePullPolicy: sw({
    status: 'honoured',
    appliesTo: 'both',
    note: "the client's imagePullPolicy",
    parse: oneOf(['Always', 'IfNotPresent', 'Never'] as const),
  }),
  labels: sw({
    status: 'honoured',
    appliesTo: 'mount-pod',
    note: "labels of the Mount Pod (a sidecar's pod keeps its own, as the reference)",
    parse: (raw, where) => {
      const m = stringMap(raw, where);
      for (const [k, v] of Object.entries(m)) {
        if (!qualifiedName(k)) problem(`${where}.${k}`, 'is not a valid label key');
        if (v.length > 63 || !LABEL_VALUE.test(v)) problem(`${where}.${k}`, `"${v}" is not a valid label value`);
      }
      return m;
    },
  }),
  annotations: sw({
    status: 'honoured',
    appliesTo: 'mount-pod',
    note: 'annotations of the Mount Pod; juicefs-delete-delay and juicefs-clean-cache act as the reference says',
    parse: (raw, where) => {
      const m = stringMap(raw, where);
      for (const k of Object.keys(m)) if (!qualifiedName(k)) problem(`${where}.${k}`, 'is not a valid annotation key');
      const delay = m[MOUNT_POD_ANN_DELETE_DELAY];
      if (delay !== undefined && parseDuration(delay) === undefined)
        problem(`${where}.${MOUNT_POD_ANN_DELETE_DELAY}`, `"${delay}" is not a duration (e.g. 30s, 1m30s)`);
      const clean = m[MOUNT_POD_ANN_CLEAN_CACHE];
      if (clean !== undefined && clean !== 'true' && clean !== 'false')
        problem(`${where}.${MOUNT_POD_ANN_CLEAN_CACHE}`, `"${clean}" is not "true" or "false"`);
      return m;
    },
  }),
  hostNetwork: sw({
    status: 'honoured',
    appliesTo: 'mount-pod',
    note: "the Mount Pod's hostNetwork (a sidecar shares its pod's network, as in the reference)",
    parse: bool,
  }),
  hostPID: sw({ status: 'honoured', appliesTo: 'mount-pod', note: "the Mount Pod's hostPID", parse: bool }),
  dnsPolicy: sw({
    status: 'honoured',
    appliesTo: 'mount-pod',
    note: "the Mount Pod's dnsPolicy",
    parse: oneOf(['ClusterFirst', 'ClusterFirstWithHostNet', 'Default', 'None'] as const),
  }),
  dnsConfig: sw({
    status: 'honoured',
    appliesTo: 'mount-pod',
    note: "the Mount Pod's dnsConfig",
    parse: shaped<V1PodDNSConfig>('V1PodDNSConfig'),
  }),
  hostnameKey: sw({
    status: 'honoured',
    appliesTo: 'mount-pod',
    note: "the Mount Pod's hostname: volumeid (the volume's id) or podname (its own name)",
    parse: (raw, where) =>
      oneOf(['podname', 'volumeid'] as const)(typeof raw === 'string' ? raw.toLowerCase() : raw, where),
  }),
  livenessProbe: sw({ status: 'honoured', appliesTo: 'both', note: "the client's liveness probe", parse: probe }),
  readinessProbe: sw({
    status: 'honoured',
    appliesTo: 'both',
    note: "the client's readiness probe, in place of the Mount Pod's own (the node service still checks the mount before binding)",
    parse: probe,
  }),
  startupProbe: sw({
    status: 'differs',
    appliesTo: 'both',
    note: "Mount Pods and classic sidecars: the client's startup probe; a native sidecar keeps the injector's (the mount is up), which holds the apps until mounted",
    parse: probe,
  }),
  lifecycle: sw({
    status: 'differs',
    appliesTo: 'both',
    note: "the client's hooks, but the injector's own stay where it has one (Mount Pod preStop: unmount and flush; classic sidecar postStart: hold the apps until mounted); the reference replaces them",
    parse: shaped<V1Lifecycle>('V1Lifecycle'),
  }),
  resources: sw({
    status: 'differs',
    appliesTo: 'both',
    note: "the client's resources, any resource name, merged per entry over the volume's own and the defaults (the reference replaces the whole resources); a value ≤ 0 removes that entry",
    userSelectable: true,
    parse: (raw, where) => {
      const m = only(raw, where, ['requests', 'limits']);
      return {
        ...(m.requests !== undefined && { requests: resourceList(m.requests, `${where}.requests`) }),
        ...(m.limits !== undefined && { limits: resourceList(m.limits, `${where}.limits`) }),
      };
    },
  }),
  resourcePercentages: sw({
    status: 'honoured',
    appliesTo: 'sidecar',
    note: "sidecar cpu/memory as a share of the app containers' that mount the volume (limits at least minLimits: 100m, 300Mi by default); a Mount Pod serves many pods and keeps its resources, as in the reference",
    parse: (raw, where) => {
      const m = only(raw, where, ['requests', 'limits', 'minLimits']);
      const out: ResourcePercentages = {};
      for (const list of ['requests', 'limits'] as const) {
        if (m[list] === undefined) continue;
        const pct = stringMapOfNumbers(m[list], `${where}.${list}`);
        for (const k of Object.keys(pct))
          if (k !== 'cpu' && k !== 'memory') problem(`${where}.${list}.${k}`, 'only cpu and memory are supported');
        out[list] = pct;
      }
      if (m.minLimits !== undefined) out.minLimits = resourceList(m.minLimits, `${where}.minLimits`);
      return out;
    },
  }),
  terminationGracePeriodSeconds: sw({
    status: 'honoured',
    appliesTo: 'mount-pod',
    note: "the Mount Pod's grace period (a sidecar's pod keeps its own, as in the reference)",
    parse: (raw, where) =>
      Number.isInteger(raw) && (raw as number) >= 0 ? raw : problem(where, 'expected a whole number of seconds ≥ 0'),
  }),
  volumes: sw({
    status: 'differs',
    appliesTo: 'both',
    note: "volumes of the client's pod; names of the client's own (jfs-…, and the reference's) are refused; in a sidecar's pod each is named <client container>-<name>",
    parse: (raw, where) => {
      const list = shaped<V1Volume[]>('Array<V1Volume>')(raw, where);
      list.forEach((v, i) => {
        if (!v.name) problem(`${where}[${i}].name`, 'is required');
        if (internal(v.name)) problem(`${where}[${i}].name`, `"${v.name}" is a name the client's own pod spec uses`);
        if (Object.keys(v).filter((k) => k !== 'name').length !== 1)
          problem(`${where}[${i}]`, 'needs exactly one volume source');
      });
      if (new Set(list.map((v) => v.name)).size !== list.length) problem(where, 'two volumes of one name');
      return list;
    },
  }),
  volumeMounts: sw({
    status: 'honoured',
    appliesTo: 'both',
    note: "mounts of the entry's volumes into the client",
    parse: shaped<V1VolumeMount[]>('Array<V1VolumeMount>'),
  }),
  volumeDevices: sw({
    status: 'honoured',
    appliesTo: 'both',
    note: "block devices of the entry's volumes in the client",
    parse: shaped<V1VolumeDevice[]>('Array<V1VolumeDevice>'),
  }),
  env: sw({
    status: 'differs',
    appliesTo: 'both',
    note: "env of the client, merged by name over earlier entries' (the reference: a later entry's list replaces); the injector's own variables win",
    parse: (raw, where) => {
      const list = shaped<V1EnvVar[]>('Array<V1EnvVar>')(raw, where);
      list.forEach((e, i) => {
        if (!e.name || !/^[-._a-zA-Z][-._a-zA-Z0-9]*$/.test(e.name))
          problem(`${where}[${i}].name`, `"${e.name ?? ''}" is not a valid environment variable name`);
      });
      return list;
    },
  }),
  initContainers: sw({
    status: 'honoured',
    appliesTo: 'mount-pod',
    note: "init containers of the Mount Pod, after the injector's own (a sidecar's pod keeps its own, as in the reference)",
    parse: (raw, where) => {
      const list = shaped<V1Container[]>('Array<V1Container>')(raw, where);
      list.forEach((c, i) => {
        if (!c.name || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(c.name))
          problem(`${where}[${i}].name`, `"${c.name ?? ''}" is not a container name`);
        if (c.name.startsWith('jfs-')) problem(`${where}[${i}].name`, `"${c.name}" is a name the client's pod uses`);
        if (!c.image) problem(`${where}[${i}].image`, 'is required');
      });
      return list;
    },
  }),
  mountOptions: sw({
    status: 'honoured',
    appliesTo: 'both',
    note: "`juicefs mount` options, after the PV's (each checked as PV mountOptions are)",
    parse: (raw, where) =>
      Array.isArray(raw) && raw.every((o) => typeof o === 'string')
        ? raw
        : problem(where, 'expected a list of strings'),
  }),
};

function stringMapOfNumbers(raw: unknown, where: string): Record<string, number> {
  if (!isRecord(raw)) return problem(where, 'expected a map');
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(raw)) {
    const m = /^([0-9]+(?:\.[0-9]+)?)%?$/.exec(String(v).trim());
    if ((typeof v !== 'string' && typeof v !== 'number') || !m || Number(m[1]) <= 0)
      problem(`${where}.${k}`, `"${String(v)}" is not a percentage above 0`);
    out[k] = Number(m![1]);
  }
  return out;
}

/** The templates the reference replaces in an entry's values, per volume. */
export const PATCH_TEMPLATES = ['${MOUNT_POINT}', '${VOLUME_ID}', '${VOLUME_NAME}', '${SUB_PATH}'] as const;

/**
 * Whether a selector reads what a namespace user writes (PVC labels, PVC
 * name): such an entry is one any PVC can opt into (or, with NotIn or
 * DoesNotExist, out of) by copying labels or a name, in any namespace.
 */
export function selectsByUserFacts(selector: PvcSelector | undefined): boolean {
  if (!selector) return false;
  return (
    selector.matchName !== undefined ||
    Object.keys(selector.matchLabels ?? {}).length > 0 ||
    (selector.matchExpressions ?? []).length > 0
  );
}

/**
 * Whether a nodeSelector lets a pod's author match it without running on such a node: in sidecar mode it is matched
 * against the pod's own nodeSelector, and NotIn / DoesNotExist match a pod that simply does not name the label
 * (ADR 0020). In, Exists and matchLabels match only a pod that must then run on such a node.
 */
export function nodeSelectorUserSelectable(selector: V1LabelSelector | undefined): boolean {
  return (selector?.matchExpressions ?? []).some((e) => e.operator === 'NotIn' || e.operator === 'DoesNotExist');
}

/** A user-selectable entry's fields and resources stay within what users may ask for themselves (annotationBounds). */
function checkUserSelectable(patch: MountPodPatch, where: string, bounds: AnnotationBounds): void {
  const by = selectsByUserFacts(patch.pvcSelector)
    ? 'whose pvcSelector matches PVC labels or names (which any namespace user can copy)'
    : "whose nodeSelector has NotIn or DoesNotExist (matched against the pod's own nodeSelector in sidecar mode)";
  for (const [field, s] of Object.entries(ENTRY_FIELDS)) {
    if (!s.userSelectable && patch[field as keyof MountPodPatch] !== undefined) {
      problem(
        `${where}.${field}`,
        `an entry ${by} may set only resources, within annotationBounds; select by matchStorageClassName instead`,
      );
    }
  }
  for (const list of ['requests', 'limits'] as const) {
    for (const [resource, value] of Object.entries(patch.resources?.[list] ?? {})) {
      const q = parseQuantity(value)!;
      const at = `${where}.resources.${list}.${resource}`;
      if (resource !== 'cpu' && resource !== 'memory')
        problem(at, `an entry selected by PVC labels or names may set only cpu and memory, as namespace users may`);
      if (!isPositive(q) && list === 'limits')
        problem(at, 'an entry selected by PVC labels or names cannot remove a limit');
      const max = resource === 'cpu' ? bounds.maxCpu : bounds.maxMemory;
      if (compareQuantities(q, parseQuantity(max)!) > 0) {
        problem(
          at,
          `${value} is above annotationBounds (${max}); an entry selected by PVC labels or names is bounded as namespace users are`,
        );
      }
    }
  }
}

/** One entry, or FieldError naming the first field that refuses it. */
function parseEntry(raw: unknown, i: number, bounds: AnnotationBounds, issues: ConfigIssue[]): MountPodPatch {
  const where = `mountPodPatch[${i}]`;
  if (!isRecord(raw)) return problem(where, 'expected a map');
  const patch: Record<string, unknown> = { index: i };
  for (const [key, value] of Object.entries(raw)) {
    const s = (ENTRY_FIELDS as Record<string, FieldSpec | undefined>)[key];
    if (!s) problem(`${where}.${key}`, `unknown field (the fields are: ${Object.keys(ENTRY_FIELDS).join(', ')})`);
    if (value === null || value === undefined) continue;
    patch[key] = s!.parse(value, `${where}.${key}`);
  }
  const entry = patch as MountPodPatch;
  const volumes = new Set((entry.volumes ?? []).map((v) => v.name));
  const used = new Set<string>();
  for (const field of ['volumeMounts', 'volumeDevices'] as const) {
    (entry[field] ?? []).forEach((m, j) => {
      if (!volumes.has(m.name)) problem(`${where}.${field}[${j}]`, `volume "${m.name}" is not in this entry's volumes`);
      used.add(m.name);
    });
  }
  for (const name of volumes) if (!used.has(name)) problem(`${where}.volumes`, `volume "${name}" is mounted nowhere`);
  if (selectsByUserFacts(entry.pvcSelector) || nodeSelectorUserSelectable(entry.nodeSelector))
    checkUserSelectable(entry, where, bounds);
  // Known fields with no effect here: reported, the rest of the entry applies.
  for (const key of Object.keys(raw)) {
    const s = (ENTRY_FIELDS as Record<string, FieldSpec>)[key];
    if (s.status === 'refused')
      issues.push({
        path: `${where}.${key}`,
        entry: i,
        effect: 'field-ignored',
        message: `${where}.${key}: ${s.note}`,
      });
  }
  return entry;
}

/**
 * Parse config.yaml. Empty text gives the defaults. A document that is not a YAML map throws ConfigError (the caller
 * keeps the last good config); within it, a switch that is invalid or refused is left at its default and a
 * mountPodPatch entry with an unknown or invalid field is dropped, each reported in `issues`, and the rest applies.
 */
/** What a process's own environment sets where config.yaml says nothing (the reference's older env switches). */
export interface ConfigDefaults {
  /** ENABLE_NODE_SELECTOR=1 of the node service. */
  enableNodeSelector?: boolean;
}

export function parseGlobalConfig(text: string | undefined, defaults: ConfigDefaults = {}): GlobalConfig {
  const config = structuredClone(DEFAULT_GLOBAL_CONFIG);
  if (defaults.enableNodeSelector !== undefined) config.enableNodeSelector = defaults.enableNodeSelector;
  if (!text || !text.trim()) return config;
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config.yaml is not valid YAML: ${(err as Error).message}`);
  }
  if (raw === null || raw === undefined) return config;
  if (!isRecord(raw)) throw new ConfigError('config.yaml: expected a map at the top level');
  const issues = config.issues;
  const values: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    const s = CONFIG_FIELDS[key];
    if (!s) {
      issues.push({
        path: key,
        effect: 'field-ignored',
        message: `${key}: unknown field (the fields are: ${Object.keys(CONFIG_FIELDS).join(', ')})`,
      });
      continue;
    }
    if (value === null || value === undefined) continue;
    try {
      const parsed = s.parse(value, key);
      const refused = s.refuse?.(parsed);
      if (refused)
        issues.push({ path: key, effect: 'field-ignored', message: `${key}: ${JSON.stringify(value)}: ${refused}` });
      else values[key] = parsed;
    } catch (err) {
      if (!(err instanceof FieldError)) throw err;
      issues.push({ path: key, effect: 'field-ignored', message: `${err.message}; the default applies` });
    }
  }
  if (values.enableNativeSidecar !== undefined) {
    config.enableNativeSidecar = values.enableNativeSidecar as boolean;
    config.nativeSidecarSet = true;
  }
  if (values.enableNodeSelector !== undefined) config.enableNodeSelector = values.enableNodeSelector as boolean;
  if (values.enableSetQuota !== undefined) config.enableSetQuota = values.enableSetQuota as boolean;
  if (values.enableControllerSetQuota !== undefined)
    config.enableControllerSetQuota = values.enableControllerSetQuota as boolean;
  if (values.upgradeReadinessGate !== undefined) config.upgradeReadinessGate = values.upgradeReadinessGate as boolean;
  if (values.annotationBounds) Object.assign(config.annotationBounds, values.annotationBounds);
  const entries = (values.mountPodPatch as unknown[] | undefined) ?? [];
  entries.forEach((entry, i) => {
    const entryIssues: ConfigIssue[] = [];
    try {
      config.mountPodPatch.push(parseEntry(entry, i, config.annotationBounds, entryIssues));
      issues.push(...entryIssues);
    } catch (err) {
      if (!(err instanceof FieldError)) throw err;
      issues.push({
        path: /^(\S+?):/.exec(err.message)?.[1] ?? `mountPodPatch[${i}]`,
        entry: i,
        effect: 'entry-refused',
        message: `${err.message}; mountPodPatch[${i}] is not applied`,
      });
    }
  });
  return config;
}

/** An API server's version as `/version` gives it (`major: "1"`, `minor: "29"` or `"29+"` on some providers). */
export interface ServerVersion {
  major: string;
  minor: string;
  gitVersion?: string;
}

/** Native sidecars (init containers with restartPolicy Always) are on by default from Kubernetes 1.29 (beta). */
export const NATIVE_SIDECAR_MIN = { major: 1, minor: 29 };

/** Whether a server runs native sidecars by default; undefined when its version cannot be read. */
export function serverHasNativeSidecars(version: ServerVersion): boolean | undefined {
  const major = Number(/^\d+/.exec(version.major)?.[0]);
  const minor = Number(/^\d+/.exec(version.minor)?.[0]);
  if (!Number.isInteger(major) || !Number.isInteger(minor)) return undefined;
  return major > NATIVE_SIDECAR_MIN.major || (major === NATIVE_SIDECAR_MIN.major && minor >= NATIVE_SIDECAR_MIN.minor);
}

/**
 * The config as the injector applies it: an enableNativeSidecar the ConfigMap leaves unset follows the API server
 * (native from 1.29; classic placement before, where a restartPolicy on an init container is refused). With no
 * known version the default (native) stands.
 */
export function withServerVersion(config: GlobalConfig, version: ServerVersion | undefined): GlobalConfig {
  if (config.nativeSidecarSet || !version) return config;
  const native = serverHasNativeSidecars(version);
  if (native === undefined || native === config.enableNativeSidecar) return config;
  return { ...config, enableNativeSidecar: native };
}

const STATUS_TEXT: Record<FieldStatus, string> = {
  honoured: 'honoured',
  differs: 'honoured, differs',
  refused: 'refused',
};
const APPLIES_TEXT: Record<FieldSpec['appliesTo'], string> = {
  both: 'sidecar and Mount Pod',
  'mount-pod': 'Mount Pod',
  sidecar: 'sidecar',
  selection: 'selection',
  config: 'webhook, controller, node',
};

/** The README's table of config.yaml fields, from CONFIG_FIELDS and ENTRY_FIELDS (a unit test keeps it equal). */
export function renderConfigFieldTable(): string {
  const row = (name: string, s: FieldSpec) =>
    `| \`${name}\` | ${STATUS_TEXT[s.status]} | ${APPLIES_TEXT[s.appliesTo]} | ${s.userSelectable ? 'yes' : 'no'} | ${s.note.replaceAll('|', '\\|')} |`;
  return [
    '| field | here | applies to | in a user-selectable entry | note |',
    '| --- | --- | --- | --- | --- |',
    ...Object.entries(CONFIG_FIELDS).map(([k, s]) => row(k, s)),
    ...Object.entries(ENTRY_FIELDS).map(([k, s]) => row(`mountPodPatch[].${k}`, s)),
  ].join('\n');
}
