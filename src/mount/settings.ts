// Mount settings of one JuiceFS volume: image, resources, options, env, cache
// directories, labels and annotations, from the admin's sources in precedence
// and the user's bounded tuning. One code path for the sidecar and the Mount Pod.
import type { V1EnvVar, V1ResourceRequirements } from '@kubernetes/client-node';
import path from 'node:path';
import type { ResourceList } from '../config/schema.js';
import { patchesFor } from '../config/selector.js';
import {
  ATTR,
  DEFAULT_CACHE_DIR,
  DEFAULT_CE_MOUNT_IMAGE,
  DEFAULT_RESOURCES,
  SECRET_KEYS,
  type ResourceAttr,
} from '../contract/keys.js';
import { parseQuantity } from '../contract/quantity.js';
import { filterUserAnnotations, type UserTuning } from './allowlist.js';
import { DenyError } from '../contract/deny.js';
import {
  CACHE_DIR_KEY,
  METRICS_KEY,
  READ_ONLY_KEYS,
  SUBDIR_KEY,
  mergeOptions,
  parseOption,
  splitOptionList,
  type ParsedOption,
} from './mount-options.js';
import type { InjectOptions, ResolvedVolume } from '../inject/types.js';

export interface MountSettings {
  image: string;
  resources: V1ResourceRequirements;
  /** Options passed to `juicefs mount` (subdir, cache-dir and read-only are separate fields). */
  options: ParsedOption[];
  readOnly: boolean;
  /** Subdirectory to mount, relative to the volume root; undefined mounts the root. */
  subdir?: string;
  cacheDirs: string[];
  env: V1EnvVar[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  warnings: string[];
}

type Layer = Partial<Record<ResourceAttr, string>>;

function attributeLayer(attrs: Record<string, string>, where: string): Layer {
  const layer: Layer = {};
  for (const key of [ATTR.cpuRequest, ATTR.cpuLimit, ATTR.memoryRequest, ATTR.memoryLimit] as const) {
    const v = attrs[key];
    if (v === undefined) continue;
    if (parseQuantity(v) === undefined)
      throw new DenyError('invalid-pv', `${where}: ${key} "${v}" is not a resource quantity`);
    layer[key] = v;
  }
  return layer;
}

function patchLayer(requests: ResourceList | undefined, limits: ResourceList | undefined): Layer {
  const layer: Layer = {};
  if (requests?.cpu !== undefined) layer[ATTR.cpuRequest] = requests.cpu;
  if (requests?.memory !== undefined) layer[ATTR.memoryRequest] = requests.memory;
  if (limits?.cpu !== undefined) layer[ATTR.cpuLimit] = limits.cpu;
  if (limits?.memory !== undefined) layer[ATTR.memoryLimit] = limits.memory;
  return layer;
}

/** Applies layers in order; a value ≤ 0 removes that entry. */
function resolveResources(layers: Layer[]): V1ResourceRequirements {
  const merged: Layer = {
    [ATTR.cpuRequest]: DEFAULT_RESOURCES.requests.cpu,
    [ATTR.memoryRequest]: DEFAULT_RESOURCES.requests.memory,
    [ATTR.cpuLimit]: DEFAULT_RESOURCES.limits.cpu,
    [ATTR.memoryLimit]: DEFAULT_RESOURCES.limits.memory,
  };
  for (const layer of layers) Object.assign(merged, layer);
  const pick = (key: ResourceAttr): string | undefined => {
    const v = merged[key];
    return v !== undefined && (parseQuantity(v) ?? 0) > 0 ? v : undefined;
  };
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  const setIf = (target: Record<string, string>, name: string, v: string | undefined) => {
    if (v !== undefined) target[name] = v;
  };
  setIf(requests, 'cpu', pick(ATTR.cpuRequest));
  setIf(requests, 'memory', pick(ATTR.memoryRequest));
  setIf(limits, 'cpu', pick(ATTR.cpuLimit));
  setIf(limits, 'memory', pick(ATTR.memoryLimit));
  // The API server refuses a request above its limit; such a request is
  // lowered to the limit rather than producing a pod that cannot be created.
  for (const name of ['cpu', 'memory']) {
    if (requests[name] && limits[name] && parseQuantity(requests[name])! > parseQuantity(limits[name])!) {
      requests[name] = limits[name];
    }
  }
  const out: V1ResourceRequirements = {};
  if (Object.keys(requests).length) out.requests = requests;
  if (Object.keys(limits).length) out.limits = limits;
  return out;
}

/** Normalises a subdirectory: relative, no `..`, no empty result (the root is undefined). */
export function normaliseSubdir(raw: string | undefined, where: string): string | undefined {
  if (raw === undefined) return undefined;
  if (/[\u0000-\u001f]/.test(raw)) throw new DenyError('invalid-pv', `${where}: subdirectory has control characters`);
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..'))
    throw new DenyError('invalid-pv', `${where}: subdirectory "${raw}" escapes the volume ("..")`);
  return parts.length ? parts.join('/') : undefined;
}

function parseOptions(texts: string[], where: string): ParsedOption[] {
  return texts.map((t) => {
    const parsed = parseOption(t);
    if (typeof parsed === 'string') throw new DenyError('invalid-pv', `${where}: ${parsed}`);
    return parsed;
  });
}

/** A map attribute: a JSON object, or `k=v` pairs separated by commas. */
function parseMapAttribute(text: string | undefined, key: string, where: string): Record<string, string> {
  if (!text || !text.trim()) return {};
  if (text.trim().startsWith('{')) {
    try {
      const v = JSON.parse(text) as unknown;
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, val]) => [k, String(val)]));
    } catch (err) {
      throw new DenyError('invalid-pv', `${where}: ${key} is not a JSON map (${(err as Error).message})`);
    }
  }
  const out: Record<string, string> = {};
  for (const pair of text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new DenyError('invalid-pv', `${where}: ${key} entry "${pair}" is not key=value`);
    out[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return out;
}

function mergeEnv(lists: V1EnvVar[][]): V1EnvVar[] {
  const byName = new Map<string, V1EnvVar>();
  for (const list of lists) for (const e of list) byName.set(e.name, e);
  return [...byName.values()];
}

/**
 * The settings of one volume. `podTuning` is what the pod's own (user-written)
 * annotations allow (bounded, like PVC annotations). Throws DenyError when an
 * admin-controlled source is malformed.
 */
export function computeMountSettings(
  volume: ResolvedVolume,
  options: InjectOptions,
  podTuning: UserTuning['accepted'],
): MountSettings {
  const where = `PersistentVolume ${volume.pvName}`;
  const { config } = options;
  const warnings: string[] = [];
  const secretKeys = new Set(volume.secret.keys);
  if (!secretKeys.has(SECRET_KEYS.metaurl)) {
    if (secretKeys.has(SECRET_KEYS.token)) {
      throw new DenyError(
        'unsupported',
        `Secret of ${where}: JuiceFS Enterprise Edition (token without metaurl) is not supported by this injector`,
      );
    }
    throw new DenyError('invalid-secret', `Secret of ${where}: key "${SECRET_KEYS.metaurl}" is missing`);
  }
  const patches = patchesFor(config.mountPodPatch, {
    name: volume.pvcName,
    labels: volume.pvcLabels,
    storageClassName: volume.storageClassName,
  });

  let image = options.defaultMountImage ?? DEFAULT_CE_MOUNT_IMAGE;
  if (volume.attributes[ATTR.mountImage]) image = volume.attributes[ATTR.mountImage];
  for (const p of patches) if (p.ceMountImage) image = p.ceMountImage;

  const pvcTuning = filterUserAnnotations(
    volume.pvcAnnotations,
    config.annotationBounds,
    `PersistentVolumeClaim ${volume.pvcName}`,
  );
  warnings.push(...pvcTuning.warnings);
  const resources = resolveResources([
    attributeLayer(volume.attributes, where),
    ...patches.map((p) => patchLayer(p.resources?.requests, p.resources?.limits)),
    pvcTuning.accepted,
    podTuning,
  ]);

  const merged = mergeOptions([
    parseOptions(volume.mountOptions, where),
    parseOptions(splitOptionList(volume.attributes[ATTR.mountOptions]), where),
    ...patches.map((p) => parseOptions(p.mountOptions ?? [], 'ConfigMap mountPodPatch')),
  ]);
  let readOnly = volume.readOnly;
  let optionSubdir: string | undefined;
  let cacheDirs = [DEFAULT_CACHE_DIR];
  const passed: ParsedOption[] = [];
  for (const opt of merged) {
    if (READ_ONLY_KEYS.has(opt.key)) readOnly = true;
    else if (opt.key === SUBDIR_KEY) optionSubdir = opt.value;
    else if (opt.key === METRICS_KEY)
      continue; // the metrics address is part of the contract
    else if (opt.key === CACHE_DIR_KEY) {
      const dirs = (opt.value ?? '').split(':').filter((d) => d);
      if (!dirs.length || dirs.some((d) => d !== 'memory' && !path.posix.isAbsolute(d))) {
        throw new DenyError(
          'invalid-pv',
          `${where}: cache-dir "${opt.value ?? ''}" must be absolute paths separated by ":"`,
        );
      }
      cacheDirs = dirs;
    } else passed.push(opt);
  }
  const base = normaliseSubdir(optionSubdir, where);
  const own = normaliseSubdir(volume.subdir, where);
  const subdir = base && own ? `${base}/${own}` : (own ?? base);

  return {
    image,
    resources,
    options: passed,
    readOnly,
    subdir,
    cacheDirs,
    env: mergeEnv(patches.map((p) => p.env ?? [])),
    labels: Object.assign(
      parseMapAttribute(volume.attributes[ATTR.mountLabels], ATTR.mountLabels, where),
      ...patches.map((p) => p.labels ?? {}),
    ),
    annotations: Object.assign(
      parseMapAttribute(volume.attributes[ATTR.mountAnnotations], ATTR.mountAnnotations, where),
      ...patches.map((p) => p.annotations ?? {}),
    ),
    warnings,
  };
}
