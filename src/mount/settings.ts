// Mount settings of one JuiceFS volume: image, resources, options, env, cache
// directories, labels and annotations, from the admin's sources in precedence
// and the user's bounded tuning. One code path for the sidecar and the Mount Pod.
import type { V1CSIVolumeSource, V1EnvVar, V1ResourceRequirements } from '@kubernetes/client-node';
import path from 'node:path';
import type { GlobalConfig, MountPodPatch, ResourcesPatch } from '../config/schema.js';
import { patchesFor, type NodeIdentity } from '../config/selector.js';
import {
  AttributeError,
  DEFAULT_RESOURCE_VALUES,
  hostPathProblem,
  parseVolumeAttributes,
  RESOURCE_FIELDS,
  type ResourceAttr,
  type VolumeAttributes,
} from '../contract/attributes.js';
import { DenyError } from '../contract/deny.js';
import { CACHE_MOUNT_PATHS, DEFAULT_CACHE_DIR, DEFAULT_CE_MOUNT_IMAGE, SECRET_KEYS } from '../contract/keys.js';
import { MountTemplateError, renderMountTemplate, type MountTemplateValues } from '../contract/mount-template.js';
import { canonicalQuantity, compareQuantities, isPositive, parseQuantity } from '../contract/quantity.js';
import { joinSubdirs, normaliseSubdir, SubdirError } from '../contract/subdir.js';
import type { UserTuning } from './allowlist.js';
import {
  CACHE_DIR_KEY,
  canonicalOption,
  METRICS_KEY,
  optionKind,
  READ_ONLY_KEYS,
  SUBDIR_KEY,
  mergeOptions,
  parseOption,
  splitOptionList,
  type ParsedOption,
} from './mount-options.js';
import { mergeClientPatch, percentageLayer, renderTemplates, type ClientPatch, type TemplateValues } from './patch.js';
import type { PvcIdentity, SecretInfo, VolumeSource } from './volume.js';

/**
 * One cache storage of the client, and where the client sees it. `host`: a host folder at the same path (a sidecar
 * in hostPath mode, a Mount Pod; an emptyDir at that path in a serverless pod, which has no host path).
 */
export type CacheStorage =
  | { kind: 'host'; path: string }
  | { kind: 'pvc'; path: string; claimName: string }
  | { kind: 'emptyDir'; path: string; medium?: string; sizeLimit?: string }
  | { kind: 'inline'; path: string; csi: V1CSIVolumeSource }
  | { kind: 'ephemeral'; path: string; storage: string; storageClassName?: string; accessModes: string[] };

export interface MountSettings {
  image: string;
  resources: V1ResourceRequirements;
  /** Options passed to `juicefs mount` (subdir, cache-dir and read-only are separate fields). */
  options: ParsedOption[];
  readOnly: boolean;
  /** Subdirectory to mount, relative to the volume root; undefined mounts the root. */
  subdir?: string;
  /** The client's `--cache-dir` folders as it sees them (`memory` included), one per cache storage. */
  cacheDirs: string[];
  /** The storage behind each cache folder but `memory`. */
  cache: CacheStorage[];
  /** `juicefs/host-path`: host files or folders the client sees at the same path. */
  hostPaths: string[];
  /**
   * The address of the client's metrics (`metrics=host:port`) when the volume's options set it, as the reference
   * driver lets them; otherwise the injector's port (9567 + index) on 0.0.0.0.
   */
  metrics?: { address: string; port: number };
  env: V1EnvVar[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** The volume's attributes, parsed by the table (src/contract/attributes.ts); Mount Pod-only ones included. */
  attributes: VolumeAttributes;
  /** The selected mountPodPatch entries' container and pod fields, merged; `${MOUNT_POINT}` left to the builder. */
  patch: ClientPatch;
  /** The values of the entries' templates for this volume (`${MOUNT_POINT}` aside). */
  templates: TemplateValues;
  /**
   * The quota a sidecar sets once mounted (`juicefs quota set`, in whole GiB, on the mounted directory), for a PV
   * the controller has set none on; undefined: none.
   */
  quota?: { path: string; gib: number };
  warnings: string[];
}

/** What the settings depend on beyond the volume: the global config and the deployment's default image. */
export interface MountContext {
  config: GlobalConfig;
  /** Mount image from the webhook/node flag or env; undefined means the built-in default. */
  defaultMountImage?: string;
}

type Layer = Partial<Record<ResourceAttr, string>>;

function attributeLayer(attrs: VolumeAttributes): Layer {
  const layer: Layer = {};
  for (const { key, name } of RESOURCE_FIELDS) if (attrs[name] !== undefined) layer[key] = attrs[name];
  return layer;
}

function patchLayer(resources: ResourcesPatch | undefined): Layer {
  const layer: Layer = {};
  for (const { key, list, resource } of RESOURCE_FIELDS) {
    const v = resources?.[list]?.[resource];
    if (v !== undefined) layer[key] = v;
  }
  return layer;
}

/** Resources other than cpu and memory (ephemeral-storage, extended resources, hugepages), by list, in order. */
type ExtraLayer = { requests?: Record<string, string>; limits?: Record<string, string> };

/** Applies layers in order; a value ≤ 0 removes that entry. */
function resolveResources(layers: Layer[], extras: ExtraLayer[] = []): V1ResourceRequirements {
  const merged: Layer = { ...DEFAULT_RESOURCE_VALUES };
  for (const layer of layers) Object.assign(merged, layer);
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  for (const { key, list, resource } of RESOURCE_FIELDS) {
    const v = merged[key];
    if (v !== undefined && isPositive(parseQuantity(v) ?? { num: 0n, den: 1n }))
      (list === 'requests' ? requests : limits)[resource] = v;
  }
  for (const extra of extras) {
    for (const list of ['requests', 'limits'] as const) {
      for (const [name, v] of Object.entries(extra[list] ?? {})) {
        if (name === 'cpu' || name === 'memory') continue;
        const target = list === 'requests' ? requests : limits;
        if (isPositive(parseQuantity(v) ?? { num: 0n, den: 1n })) target[name] = v;
        else delete target[name];
      }
    }
  }
  // The API server refuses a request above its limit; such a request is
  // lowered to the limit rather than producing a pod that cannot be created.
  for (const name of Object.keys(requests)) {
    if (
      requests[name] &&
      limits[name] &&
      compareQuantities(parseQuantity(requests[name])!, parseQuantity(limits[name])!) > 0
    ) {
      requests[name] = limits[name];
    }
  }
  const out: V1ResourceRequirements = {};
  if (Object.keys(requests).length) out.requests = requests;
  if (Object.keys(limits).length) out.limits = limits;
  return out;
}

/** The one subdirectory rule (src/contract/subdir.ts), as a denial naming the volume. */
function subdirOf(raw: string | undefined, where: string): string | undefined {
  if (raw === undefined) return undefined;
  try {
    return normaliseSubdir(raw);
  } catch (err) {
    if (err instanceof SubdirError) throw new DenyError('invalid-pv', `${where}: ${err.message}`);
    throw err;
  }
}

/** The table's parse of a volume's attributes, an invalid one a denial naming the key. */
export function volumeAttributes(source: VolumeSource): VolumeAttributes {
  try {
    return parseVolumeAttributes(source.attributes);
  } catch (err) {
    if (err instanceof AttributeError)
      throw new DenyError('invalid-pv', `PersistentVolume ${source.pvName}: ${err.message}`);
    throw err;
  }
}

function parseOptions(texts: string[], where: string): ParsedOption[] {
  return texts.map((t) => {
    const parsed = parseOption(t);
    if (typeof parsed === 'string') throw new DenyError('invalid-pv', `${where}: ${parsed}`);
    if (optionKind(parsed.key) === 'unknown' && !READ_ONLY_KEYS.has(parsed.key)) {
      throw new DenyError(
        'invalid-pv',
        `${where}: mount option "${parsed.key}" is no flag of juicefs mount (which would exit with "unknown option"); FUSE options have no "-", e.g. allow_other, nonempty`,
      );
    }
    return canonicalOption(parsed);
  });
}

/** A `metrics=` option: `host:port` or `:port` (juicefs's form), port 1–65535, so that the pod can declare it. */
function metricsAddress(value: string | undefined, where: string): MountSettings['metrics'] {
  const m = /^([A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})$/.exec(value ?? '');
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) {
    throw new DenyError(
      'invalid-pv',
      `${where}: mount option metrics="${value ?? ''}" must be host:port with a port from 1 to 65535`,
    );
  }
  return { address: value!, port };
}

const BUFFER_SIZE_KEY = 'buffer-size';
const MIB = 1024n * 1024n;

/**
 * `buffer-size` as the reference driver reads it: `N%` is that share of the client's memory limit (in MiB, rounded
 * up; over 100 % is 100 %), and a size in MiB above the limit is lowered to it, since a buffer the limit cannot hold
 * ends in an OOM kill.
 */
function bufferSize(
  opt: ParsedOption,
  resources: V1ResourceRequirements,
  where: string,
  warnings: string[],
): ParsedOption {
  const text = (opt.value ?? '').trim();
  const limitText = resources.limits?.memory;
  const limit = limitText === undefined ? undefined : parseQuantity(String(limitText));
  const limitMib = limit && isPositive(limit) ? limit.num / limit.den / MIB : undefined;
  const pct = /^([0-9]+(?:\.[0-9]+)?)%$/.exec(text);
  if (pct) {
    if (limit === undefined || !isPositive(limit)) {
      throw new DenyError(
        'invalid-pv',
        `${where}: buffer-size=${text} is a share of the memory limit, and there is none`,
      );
    }
    let share = Number(pct[1]);
    if (share > 100) {
      warnings.push(`${where}: buffer-size=${text} is above 100 % of the memory limit; 100 % is used`);
      share = 100;
    }
    const bytes = Math.ceil((Number(limit.num) / Number(limit.den)) * (share / 100));
    return { key: opt.key, value: String(Math.ceil(bytes / Number(MIB))) };
  }
  if (/^[0-9]+$/.test(text) && limitMib !== undefined && BigInt(text) > limitMib) {
    warnings.push(`${where}: buffer-size=${text} MiB is above the memory limit; ${limitMib} MiB is used`);
    return { key: opt.key, value: String(limitMib) };
  }
  return opt;
}

/** A host path of the admin's, its templates rendered, as a folder the pod can mount (else a denial). */
function hostFolder(text: string, values: MountTemplateValues, where: string, what: string): string {
  let rendered: string;
  try {
    rendered = renderMountTemplate(text, values);
  } catch (err) {
    if (err instanceof MountTemplateError) throw new DenyError('invalid-pv', `${where}: ${what} ${err.message}`);
    throw err;
  }
  const problem = hostPathProblem(rendered);
  if (problem) throw new DenyError('invalid-pv', `${where}: ${what} "${rendered}" ${problem}`);
  // One spelling per folder: the API server refuses two mounts at one path.
  return path.posix.normalize(rendered).replace(/(.)\/+$/, '$1');
}

/**
 * The client's cache storage, in the reference driver's order: cache PVCs (`juicefs/mount-cache-pvc`, then the
 * ConfigMap's PVC entries), the emptyDir (the ConfigMap's, else `juicefs/mount-cache-emptydir`), generic ephemeral
 * volumes (ConfigMap), inline CSI volumes (`juicefs/mount-cache-inline-volume`), the `cache-dir` option's folders, the
 * ConfigMap's HostPath entries; `/var/jfsCache` when none is given. The last mountPodPatch entry with `cacheDirs`
 * gives them, as the reference merges its patches.
 */
function cacheStorage(
  attributes: VolumeAttributes,
  patches: MountPodPatch[],
  optionCacheDirs: string | undefined,
  values: MountTemplateValues,
  where: string,
): { cacheDirs: string[]; cache: CacheStorage[] } {
  const entries = [...patches].reverse().find((p) => p.cacheDirs)?.cacheDirs ?? [];
  const cache: CacheStorage[] = [];
  const claimNames = [...(attributes.cachePvc ?? []), ...entries.flatMap((e) => (e.type === 'PVC' ? [e.name] : []))];
  claimNames.forEach((raw, i) => {
    let claimName: string;
    try {
      claimName = renderMountTemplate(raw, values);
    } catch (err) {
      if (err instanceof MountTemplateError) throw new DenyError('invalid-pv', `${where}: cache PVC ${err.message}`);
      throw err;
    }
    cache.push({ kind: 'pvc', path: CACHE_MOUNT_PATHS.pvc(i), claimName });
  });
  const emptyDir = entries.find((e) => e.type === 'EmptyDir') ?? attributes.cacheEmptyDir;
  if (emptyDir) {
    const { medium, sizeLimit } = emptyDir;
    cache.push({
      kind: 'emptyDir',
      path: CACHE_MOUNT_PATHS.emptyDir,
      ...(medium && { medium }),
      ...(sizeLimit && { sizeLimit: canonicalQuantity(sizeLimit) ?? sizeLimit }),
    });
  }
  let e = 0;
  for (const entry of entries) {
    if (entry.type !== 'Ephemeral') continue;
    const { storage, storageClassName, accessModes } = entry;
    cache.push({
      kind: 'ephemeral',
      path: CACHE_MOUNT_PATHS.ephemeral(e++),
      storage,
      accessModes,
      ...(storageClassName && { storageClassName }),
    });
  }
  (attributes.cacheInlineVolume ?? []).forEach((csi, i) =>
    cache.push({ kind: 'inline', path: CACHE_MOUNT_PATHS.inline(i), csi }),
  );
  const options = optionCacheDirs === undefined ? [] : optionCacheDirs.split(':').filter((d) => d);
  if (optionCacheDirs !== undefined && !options.length) {
    throw new DenyError('invalid-pv', `${where}: cache-dir "" names no folder`);
  }
  const memory = options.includes('memory');
  const rule = `cache-dir "${optionCacheDirs ?? ''}" must be distinct absolute paths separated by ":", without ".." or "$("`;
  const optionDir = (d: string) => {
    try {
      return hostFolder(d, values, where, 'cache-dir');
    } catch (err) {
      if (err instanceof DenyError) throw new DenyError('invalid-pv', `${where}: ${rule} (${err.message})`);
      throw err;
    }
  };
  const hostDirs = [
    ...options.filter((d) => d !== 'memory').map(optionDir),
    ...entries.flatMap((x) => (x.type === 'HostPath' ? [hostFolder(x.path, values, where, 'cacheDirs HostPath')] : [])),
  ];
  if (new Set(hostDirs).size !== hostDirs.length) {
    throw new DenyError('invalid-pv', `${where}: ${rule}; a cache folder is given twice (${hostDirs.join(':')})`);
  }
  if (!cache.length && !hostDirs.length && !memory) hostDirs.push(DEFAULT_CACHE_DIR);
  cache.push(...hostDirs.map((p) => ({ kind: 'host' as const, path: p })));
  return { cacheDirs: [...cache.map((c) => c.path), ...(memory ? ['memory'] : [])], cache };
}

function mergeEnv(lists: V1EnvVar[][]): V1EnvVar[] {
  const byName = new Map<string, V1EnvVar>();
  for (const list of lists) for (const e of list) byName.set(e.name, e);
  return [...byName.values()];
}

function canonicalResources(r: V1ResourceRequirements): V1ResourceRequirements {
  const canon = (list: Record<string, string> | undefined) =>
    list && Object.fromEntries(Object.entries(list).map(([k, v]) => [k, canonicalQuantity(v) ?? v]));
  return {
    ...r,
    ...(r.requests && { requests: canon(r.requests) }),
    ...(r.limits && { limits: canon(r.limits) }),
  };
}

/**
 * The settings of one volume. `claim` is the PVC that claims it (what
 * `mountPodPatch[].pvcSelector` matches), when known; `userTuning` is what
 * namespace users' annotations (PVC, pod) passed the allow-list with, lowest
 * precedence first. Throws DenyError when an admin-controlled source is
 * malformed.
 */
/** The client image: the deployment's default, then the PV's `juicefs/mount-image`, then the last entry naming one. */
function imageOf(attributes: VolumeAttributes, patches: { ceMountImage?: string }[], context: MountContext): string {
  let image = context.defaultMountImage ?? DEFAULT_CE_MOUNT_IMAGE;
  if (attributes.mountImage) image = attributes.mountImage;
  for (const p of patches) if (p.ceMountImage) image = p.ceMountImage;
  return image;
}

/**
 * The client image a volume's settings name now, by the same rule as computeMountSettings but from what a cluster
 * view holds without the Secret (an upgrade's `target.fromSettings`): the PV's attributes, its claim, the ConfigMap.
 * `${VOLUME_NAME}` (the Secret's `name`) renders empty here: an image templated on it cannot be told.
 */
export function settingsImage(
  volume: Pick<VolumeSource, 'pvName' | 'subdir' | 'attributes'>,
  claim: PvcIdentity | undefined,
  context: MountContext,
  node?: NodeIdentity,
): string {
  const attributes = volumeAttributes({ ...volume, readOnly: false, mountOptions: [], secret: NO_SECRET });
  const selected = patchesFor(
    context.config.mountPodPatch,
    claim
      ? { name: claim.name, labels: claim.labels, storageClassName: claim.storageClassName }
      : { name: '', labels: {} },
    node,
  );
  const templates: TemplateValues = { VOLUME_ID: volume.pvName, VOLUME_NAME: '', SUB_PATH: volume.subdir ?? '' };
  const patches = selected.map((p) => renderTemplates(p, templates, `ConfigMap mountPodPatch[${p.index ?? '?'}]`));
  return imageOf(attributes, patches, context);
}
const NO_SECRET: SecretInfo = { name: '', keys: [], envNames: [], formatFlags: [] };

export function computeMountSettings(
  volume: VolumeSource,
  claim: PvcIdentity | undefined,
  context: MountContext,
  userTuning: UserTuning['accepted'][],
  /** The node (mountPodPatch nodeSelector) and, for a sidecar, its app containers' resources (resourcePercentages). */
  scope: { node?: NodeIdentity; appResources?: V1ResourceRequirements } = {},
): MountSettings {
  const where = `PersistentVolume ${volume.pvName}`;
  const { config } = context;
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
  const attributes = volumeAttributes(volume);
  // Without a PVC (a static PV no claim names) the selectors see a PVC without name or labels.
  const selected = claim
    ? patchesFor(
        config.mountPodPatch,
        { name: claim.name, labels: claim.labels, storageClassName: claim.storageClassName },
        scope.node,
      )
    : patchesFor(config.mountPodPatch, { name: '', labels: {} }, scope.node);
  // The reference's templates, in every value of the entries that apply (the mount point is the builder's).
  const templates: TemplateValues = {
    VOLUME_ID: volume.pvName,
    VOLUME_NAME: volume.secret.volumeName ?? '',
    SUB_PATH: volume.subdir ?? '',
  };
  const patches = selected.map((p) => renderTemplates(p, templates, `ConfigMap mountPodPatch[${p.index ?? '?'}]`));
  const clientPatch = mergeClientPatch(patches);
  const percentages = percentageLayer(clientPatch.resourcePercentages, scope.appResources);

  const image = imageOf(attributes, patches, context);

  const resources = resolveResources(
    [
      attributeLayer(attributes),
      ...patches.map((p) => patchLayer(p.resources)),
      patchLayer(percentages),
      ...userTuning,
    ],
    patches.map((p) => p.resources ?? {}),
  );

  const merged = mergeOptions([
    // The controller's rendering of templated StorageClass mountOptions replaces what csi-provisioner copied.
    parseOptions(attributes.renderedMountOptions ?? volume.mountOptions, where),
    parseOptions(splitOptionList(attributes.mountOptions), where),
    ...patches.map((p) => parseOptions(p.mountOptions ?? [], `ConfigMap mountPodPatch[${p.index ?? '?'}]`)),
  ]);
  let readOnly = volume.readOnly;
  let optionSubdir: string | undefined;
  let optionCacheDirs: string | undefined;
  let metrics: MountSettings['metrics'];
  const passed: ParsedOption[] = [];
  for (const opt of merged) {
    if (READ_ONLY_KEYS.has(opt.key)) readOnly = true;
    else if (opt.key === SUBDIR_KEY) optionSubdir = opt.value;
    else if (opt.key === METRICS_KEY) metrics = metricsAddress(opt.value, where);
    else if (optionKind(opt.key) === 'dropped') warnings.push(`${where}: mount option "${opt.key}" ignored`);
    else if (opt.key === CACHE_DIR_KEY) optionCacheDirs = opt.value ?? '';
    else if (opt.key === BUFFER_SIZE_KEY) passed.push(bufferSize(opt, resources, where, warnings));
    else passed.push(opt);
  }
  const base = subdirOf(optionSubdir, where);
  const own = subdirOf(volume.subdir, where);
  const subdir = joinSubdirs(base, own);
  const quota = sidecarQuota(volume, claim, attributes, config, subdir);
  const templateValues = { volumeId: volume.pvName, subPath: subdir ?? '' };
  const { cacheDirs, cache } = cacheStorage(attributes, patches, optionCacheDirs, templateValues, where);
  const hostPaths = [
    ...new Set((attributes.hostPath ?? []).map((p) => hostFolder(p, templateValues, where, 'juicefs/host-path'))),
  ].filter((p) => !cache.some((c) => c.kind === 'host' && c.path === p));

  return {
    image,
    // As the API server stores them (5000m → 5): the pod read back equals what was planned.
    resources: canonicalResources(resources),
    options: passed,
    readOnly,
    subdir,
    cacheDirs,
    cache,
    hostPaths,
    ...(metrics && { metrics }),
    env: mergeEnv(patches.map((p) => p.env ?? [])),
    labels: Object.assign({}, attributes.mountLabels, ...patches.map((p) => p.labels ?? {})) as Record<string, string>,
    annotations: Object.assign({}, attributes.mountAnnotations, ...patches.map((p) => p.annotations ?? {})) as Record<
      string,
      string
    >,
    attributes,
    patch: clientPatch,
    templates,
    ...(quota && { quota }),
    warnings,
  };
}

/**
 * The reference's sidecar rule: a PV with its own subdirectory gets its PVC's request as a quota at the mount,
 * unless quotas are off or the controller set one (its marker, or, for a PV it is still to provision, its switch).
 * Whole GiB rounded up, as the controller's.
 */
function sidecarQuota(
  volume: VolumeSource,
  claim: PvcIdentity | undefined,
  attributes: VolumeAttributes,
  config: GlobalConfig,
  subdir: string | undefined,
): MountSettings['quota'] {
  if (!config.enableSetQuota || attributes.controllerQuotaSet || !volume.subdir || !subdir) return undefined;
  if (volume.provisioning && config.enableControllerSetQuota) return undefined;
  const bytes = claim?.requestBytes ?? 0;
  if (bytes <= 0) return undefined;
  return { path: `/${subdir}`, gib: Math.max(1, Math.ceil(bytes / 2 ** 30)) };
}
