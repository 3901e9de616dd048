// The global config: ConfigMap juicefs-csi-driver-config, key config.yaml,
// written by the admin and hot-reloaded. One schema, parsed here, used by the
// webhook, the offline inject command and the node service.
import type { V1EnvVar, V1LabelSelector } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_RESOURCES } from '../contract/keys.js';
import { CacheDirsError, parseCacheDirs, type CacheDirEntry } from './cache-dirs.js';
import { compareQuantities, isPositive, parseQuantity } from '../contract/quantity.js';

export interface ResourceList {
  cpu?: string;
  memory?: string;
}

export interface ResourcesPatch {
  requests?: ResourceList;
  limits?: ResourceList;
}

/** Which PVCs a mountPodPatch entry applies to; every given field must match. */
export interface PvcSelector extends V1LabelSelector {
  matchName?: string;
  matchStorageClassName?: string;
}

export interface MountPodPatch {
  pvcSelector?: PvcSelector;
  ceMountImage?: string;
  eeMountImage?: string;
  resources?: ResourcesPatch;
  env?: V1EnvVar[];
  mountOptions?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Cache storage of the client (./cache-dirs.ts). */
  cacheDirs?: CacheDirEntry[];
}

/** Bounds within which namespace users may tune resources through annotations. */
export interface AnnotationBounds {
  maxCpu: string;
  maxMemory: string;
}

export interface GlobalConfig {
  enableNativeSidecar: boolean;
  /**
   * Whether the ConfigMap sets enableNativeSidecar. When it does not, the API server's version decides
   * (withServerVersion), as the reference driver does.
   */
  nativeSidecarSet?: boolean;
  /**
   * Give injected pods the upgrade readiness gate (ADR 0017): Services drain a pod while the upgrader swaps
   * its client. Off by default: a pod with the gate is Ready only once the controller has said so.
   */
  upgradeReadinessGate: boolean;
  mountPodPatch: MountPodPatch[];
  annotationBounds: AnnotationBounds;
  /** Mount Pods select their node by its `kubernetes.io/hostname` label, not by name (the reference's switch). */
  enableNodeSelector?: boolean;
}

export const DEFAULT_GLOBAL_CONFIG: GlobalConfig = {
  enableNativeSidecar: true,
  upgradeReadinessGate: false,
  mountPodPatch: [],
  // By default a user may tune up to the default limits, never beyond: raising
  // them is the admin's decision.
  annotationBounds: { maxCpu: DEFAULT_RESOURCES.limits.cpu, maxMemory: DEFAULT_RESOURCES.limits.memory },
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringMap(v: unknown, where: string): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isRecord(v)) throw new ConfigError(`${where}: expected a map of strings`);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw new ConfigError(`${where}.${k}: expected a string`);
    out[k] = val;
  }
  return out;
}

function resourceList(v: unknown, where: string): ResourceList | undefined {
  const m = stringMap(v, where);
  if (!m) return undefined;
  const out: ResourceList = {};
  for (const [k, val] of Object.entries(m)) {
    if (k !== 'cpu' && k !== 'memory') throw new ConfigError(`${where}.${k}: only cpu and memory are supported`);
    if (parseQuantity(val) === undefined) throw new ConfigError(`${where}.${k}: "${val}" is not a quantity`);
    out[k] = val;
  }
  return out;
}

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

/** Fields a user-selectable entry may not carry (docs/adr/0005-user-selectable-patches.md). */
const PRIVILEGED_PATCH_FIELDS = [
  'ceMountImage',
  'eeMountImage',
  'env',
  'mountOptions',
  'labels',
  'annotations',
  // Host folders and the Mount Pods' namespace's PVCs are the admin's to hand out.
  'cacheDirs',
] as const;

/** A user-selectable entry's resources stay within what users may ask for themselves (annotationBounds). */
function checkUserSelectable(patch: MountPodPatch, where: string, bounds: AnnotationBounds): void {
  for (const field of PRIVILEGED_PATCH_FIELDS) {
    if (patch[field] !== undefined) {
      throw new ConfigError(
        `${where}.${field}: an entry whose pvcSelector matches PVC labels or names (which any namespace user can copy) may set only resources, within annotationBounds; select by matchStorageClassName instead`,
      );
    }
  }
  for (const list of ['requests', 'limits'] as const) {
    for (const [resource, value] of Object.entries(patch.resources?.[list] ?? {}) as [keyof ResourceList, string][]) {
      const q = parseQuantity(value)!;
      const at = `${where}.resources.${list}.${resource}`;
      if (!isPositive(q) && list === 'limits') {
        throw new ConfigError(`${at}: an entry selected by PVC labels or names cannot remove a limit`);
      }
      const max = resource === 'cpu' ? bounds.maxCpu : bounds.maxMemory;
      if (compareQuantities(q, parseQuantity(max)!) > 0) {
        throw new ConfigError(
          `${at}: ${value} is above annotationBounds (${max}); an entry selected by PVC labels or names is bounded as namespace users are`,
        );
      }
    }
  }
}

function parsePatch(raw: unknown, i: number, bounds: AnnotationBounds): MountPodPatch {
  const where = `mountPodPatch[${i}]`;
  if (!isRecord(raw)) throw new ConfigError(`${where}: expected a map`);
  const patch: MountPodPatch = {};
  if (raw.pvcSelector !== undefined) {
    if (!isRecord(raw.pvcSelector)) throw new ConfigError(`${where}.pvcSelector: expected a map`);
    patch.pvcSelector = raw.pvcSelector;
  }
  for (const key of ['ceMountImage', 'eeMountImage'] as const) {
    if (raw[key] !== undefined) {
      if (typeof raw[key] !== 'string') throw new ConfigError(`${where}.${key}: expected a string`);
      patch[key] = raw[key];
    }
  }
  if (raw.resources !== undefined) {
    if (!isRecord(raw.resources)) throw new ConfigError(`${where}.resources: expected a map`);
    patch.resources = {
      requests: resourceList(raw.resources.requests, `${where}.resources.requests`),
      limits: resourceList(raw.resources.limits, `${where}.resources.limits`),
    };
  }
  if (raw.env !== undefined) {
    if (!Array.isArray(raw.env) || !raw.env.every((e) => isRecord(e) && typeof e.name === 'string')) {
      throw new ConfigError(`${where}.env: expected a list of env vars with names`);
    }
    patch.env = raw.env as V1EnvVar[];
  }
  if (raw.mountOptions !== undefined) {
    if (!Array.isArray(raw.mountOptions) || !raw.mountOptions.every((o) => typeof o === 'string')) {
      throw new ConfigError(`${where}.mountOptions: expected a list of strings`);
    }
    patch.mountOptions = raw.mountOptions;
  }
  const labels = stringMap(raw.labels, `${where}.labels`);
  if (labels) patch.labels = labels;
  const annotations = stringMap(raw.annotations, `${where}.annotations`);
  if (annotations) patch.annotations = annotations;
  try {
    const cacheDirs = parseCacheDirs(raw.cacheDirs, `${where}.cacheDirs`);
    if (cacheDirs) patch.cacheDirs = cacheDirs;
  } catch (err) {
    if (err instanceof CacheDirsError) throw new ConfigError(err.message);
    throw err;
  }
  if (selectsByUserFacts(patch.pvcSelector)) checkUserSelectable(patch, where, bounds);
  return patch;
}

/** Parse config.yaml. Empty text gives the defaults; anything malformed throws ConfigError. */
export function parseGlobalConfig(text: string | undefined): GlobalConfig {
  if (!text || !text.trim()) return structuredClone(DEFAULT_GLOBAL_CONFIG);
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config.yaml is not valid YAML: ${(err as Error).message}`);
  }
  if (raw === null || raw === undefined) return structuredClone(DEFAULT_GLOBAL_CONFIG);
  if (!isRecord(raw)) throw new ConfigError('config.yaml: expected a map at the top level');
  const config = structuredClone(DEFAULT_GLOBAL_CONFIG);
  if (raw.enableNativeSidecar !== undefined) {
    if (typeof raw.enableNativeSidecar !== 'boolean')
      throw new ConfigError('enableNativeSidecar: expected true or false');
    config.enableNativeSidecar = raw.enableNativeSidecar;
    config.nativeSidecarSet = true;
  }
  if (raw.upgradeReadinessGate !== undefined) {
    if (typeof raw.upgradeReadinessGate !== 'boolean')
      throw new ConfigError('upgradeReadinessGate: expected true or false');
    config.upgradeReadinessGate = raw.upgradeReadinessGate;
  }
  if (raw.enableNodeSelector !== undefined) {
    if (typeof raw.enableNodeSelector !== 'boolean')
      throw new ConfigError('enableNodeSelector: expected true or false');
    config.enableNodeSelector = raw.enableNodeSelector;
  }
  if (raw.annotationBounds !== undefined) {
    const b = stringMap(raw.annotationBounds, 'annotationBounds') ?? {};
    for (const [k, v] of Object.entries(b)) {
      if (k !== 'maxCpu' && k !== 'maxMemory') throw new ConfigError(`annotationBounds.${k}: unknown key`);
      if (parseQuantity(v) === undefined) throw new ConfigError(`annotationBounds.${k}: "${v}" is not a quantity`);
      config.annotationBounds[k] = v;
    }
  }
  if (raw.mountPodPatch !== undefined && raw.mountPodPatch !== null) {
    if (!Array.isArray(raw.mountPodPatch)) throw new ConfigError('mountPodPatch: expected a list');
    config.mountPodPatch = raw.mountPodPatch.map((p, i) => parsePatch(p, i, config.annotationBounds));
  }
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
