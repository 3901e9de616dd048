// The one table of per-volume settings (DESIGN.md, "Compatibility contract"
// and "No privilege through the back door"): each PV volumeAttributes /
// StorageClass parameters key → its parser, who may set it, and where it
// applies. The settings parser, the user allow-list, the ConfigMap's default
// bounds, the Mount Pod plan and the README's table are all driven by it.
import type { V1CSIVolumeSource } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { parseDuration } from './duration.js';
import { ATTR, CSI_DRIVER_NAME, DEFAULT_RESOURCES } from './keys.js';
import { MountTemplateError, renderMountTemplate } from './mount-template.js';
import { hasControlCharacters } from './names.js';
import { checkPathPattern } from './path-pattern.js';
import { isPositive, parseQuantity } from './quantity.js';

/**
 * How a sidecar gets its volume's credentials (ADR 0010): `copy`, a per-PVC Secret copy in the pod's namespace
 * (readable by the namespace's users); `broker`, fetched from the controller at start into memory.
 */
export type CredentialsMode = 'copy' | 'broker';

/** An attribute value that its parser refuses; the message names the key and the value. */
export class AttributeError extends Error {
  override name = 'AttributeError';
  constructor(
    readonly key: string,
    /** What is wrong, without the key (e.g. `"x" is not a resource quantity`). */
    readonly problem: string,
  ) {
    super(`${key} ${problem}`);
  }
}

export interface AttributeSpec<T> {
  key: string;
  /**
   * admin: PV volumeAttributes and StorageClass parameters only;
   * user: also PVC and pod annotations, by namespace users, within the admin's `annotationBounds`.
   */
  setBy: 'admin' | 'user';
  /**
   * Which client it shapes: the sidecar, the Mount Pod, both; `provisioning`: the controller's CreateVolume (and the
   * webhook's WaitForFirstConsumer).
   */
  appliesTo: 'sidecar' | 'mount-pod' | 'both' | 'provisioning';
  /** Where an admin writes it. */
  writtenIn: 'pv-and-storage-class' | 'storage-class';
  /** One line for the README. */
  summary: string;
  /** The value, or AttributeError naming the key. */
  parse(text: string): T;
}

function spec<T>(s: AttributeSpec<T>): AttributeSpec<T> {
  return s;
}

const fail = (key: string, text: string, why: string): never => {
  throw new AttributeError(key, `"${text}" ${why}`);
};

function quantity(key: string): (text: string) => string {
  return (text) => (parseQuantity(text) === undefined ? fail(key, text, 'is not a resource quantity') : text);
}

/** A map attribute: a JSON object, or `k=v` pairs separated by commas. */
/**
 * A map attribute (`juicefs/mount-labels`, `juicefs/mount-annotations`): a JSON map, a YAML map (the block style the
 * reference driver's docs use), or `k=v,k=v`.
 */
function parseMap(key: string, text: string): Record<string, string> {
  if (!text.trim()) return {};
  const trimmed = text.trim();
  const yamlLike = /^[{[-]/.test(trimmed) || trimmed.includes('\n') || /:(\s|$)/m.test(trimmed);
  if (yamlLike) {
    let v: unknown;
    try {
      v = parseYaml(text);
    } catch (err) {
      throw new AttributeError(key, `is not a JSON or YAML map (${(err as Error).message.split('\n')[0]})`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v))
      throw new AttributeError(key, 'is not a JSON or YAML map');
    const out: Record<string, string> = {};
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
      if (val === null || val === undefined) out[k] = '';
      else if (typeof val === 'string' || typeof val === 'number' || typeof val === 'boolean') out[k] = String(val);
      else throw new AttributeError(key, `entry "${k}" is not a plain value`);
    }
    return out;
  }
  const out: Record<string, string> = {};
  for (const pair of text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new AttributeError(key, `entry "${pair}" is not key=value`);
    out[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return out;
}

/** A comma-separated list, entries trimmed, empty ones dropped (the reference driver's split). */
function commaList(text: string): string[] {
  return text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
}

/** A text with `${VOLUME_ID}`-style templates, checked on a sample rendering (the real one: the mount spec). */
function sampleRendering(key: string, text: string): string {
  try {
    return renderMountTemplate(text, { volumeId: 'pv', subPath: 'sub' });
  } catch (err) {
    if (err instanceof MountTemplateError) throw new AttributeError(key, err.message);
    throw err;
  }
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** A host folder or file given to the client: absolute, no `..` (the API server refuses it), no `$(` (expanded). */
export function hostPathProblem(p: string): string | undefined {
  if (!p.startsWith('/')) return 'is not an absolute path';
  if (p.split('/').includes('..')) return 'holds ".."';
  if (p.includes('$(') || hasControlCharacters(p) || p.includes(',') || p.includes(':')) {
    return 'holds "$(", ",", ":" or a control character';
  }
  return undefined;
}

/** The emptyDir of `juicefs/mount-cache-emptydir`: `medium[:sizeLimit]` as the reference writes it. */
export interface CacheEmptyDirSpec {
  medium?: string;
  sizeLimit?: string;
}

const MEDIA = /^(Memory|HugePages(-[0-9]+[KMG]i)?)$/;

function parseCacheEmptyDir(text: string): CacheEmptyDirSpec | undefined {
  if (!text.trim()) return undefined;
  const parts = text.split(':').map((p) => p.trim());
  if (parts.length > 2) fail(ATTR.cacheEmptyDir, text, 'is not "medium" or "medium:sizeLimit" (e.g. Memory:1Gi)');
  const [medium, sizeLimit] = parts;
  if (medium && !MEDIA.test(medium)) fail(ATTR.cacheEmptyDir, text, 'names no emptyDir medium ("", Memory, HugePages)');
  if (sizeLimit !== undefined && sizeLimit !== '') {
    const q = parseQuantity(sizeLimit);
    if (!q || !isPositive(q))
      fail(ATTR.cacheEmptyDir, text, `has a sizeLimit "${sizeLimit}" that is no positive quantity`);
  }
  return { ...(medium ? { medium } : {}), ...(sizeLimit ? { sizeLimit } : {}) };
}

const CSI_FIELDS = new Set(['driver', 'readOnly', 'fsType', 'volumeAttributes', 'nodePublishSecretRef']);

/** `juicefs/mount-cache-inline-volume`: a JSON list of CSI volume sources (the pod's `volumes[].csi`). */
function parseInlineVolumes(text: string): V1CSIVolumeSource[] {
  const key = ATTR.cacheInlineVolume;
  let list: unknown;
  try {
    list = JSON.parse(text);
  } catch {
    return fail(key, text, 'is not a JSON list of CSI volume sources');
  }
  if (!Array.isArray(list)) return fail(key, text, 'is not a JSON list of CSI volume sources');
  return list.map((raw: unknown, i) => {
    const at = `entry ${i}`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(key, text, `${at} is not a map`);
    const v = raw as Record<string, unknown>;
    const unknownField = Object.keys(v).find((k) => !CSI_FIELDS.has(k));
    if (unknownField) fail(key, text, `${at} has a field "${unknownField}" that a CSI volume source has not`);
    if (typeof v.driver !== 'string' || !DNS_SUBDOMAIN.test(v.driver)) fail(key, text, `${at} names no driver`);
    // The cache of a JuiceFS volume on a JuiceFS volume would need the Mount Pod or sidecar it is the cache of.
    if (v.driver === CSI_DRIVER_NAME) fail(key, text, `${at}: a JuiceFS volume cannot be the cache of one`);
    if (v.readOnly !== undefined && typeof v.readOnly !== 'boolean') fail(key, text, `${at}: readOnly is no boolean`);
    if (v.readOnly === true) fail(key, text, `${at}: a read-only volume cannot hold a cache`);
    if (v.fsType !== undefined && typeof v.fsType !== 'string') fail(key, text, `${at}: fsType is no string`);
    const attrs = v.volumeAttributes;
    if (
      attrs !== undefined &&
      (typeof attrs !== 'object' ||
        attrs === null ||
        Array.isArray(attrs) ||
        Object.values(attrs).some((x) => typeof x !== 'string'))
    )
      fail(key, text, `${at}: volumeAttributes is no map of strings`);
    const ref = v.nodePublishSecretRef as Record<string, unknown> | undefined;
    if (ref !== undefined && (typeof ref !== 'object' || ref === null || typeof ref.name !== 'string'))
      fail(key, text, `${at}: nodePublishSecretRef has no name`);
    return v as unknown as V1CSIVolumeSource;
  });
}

/**
 * The four resource keys, the one place they are listed: the table's name of each, and which entry of the container's
 * resources it sets.
 */
export const RESOURCE_FIELDS = [
  { key: ATTR.cpuRequest, name: 'cpuRequest', list: 'requests', resource: 'cpu' },
  { key: ATTR.cpuLimit, name: 'cpuLimit', list: 'limits', resource: 'cpu' },
  { key: ATTR.memoryRequest, name: 'memoryRequest', list: 'requests', resource: 'memory' },
  { key: ATTR.memoryLimit, name: 'memoryLimit', list: 'limits', resource: 'memory' },
] as const;
export type ResourceAttr = (typeof RESOURCE_FIELDS)[number]['key'];
export const RESOURCE_ATTRS: readonly ResourceAttr[] = RESOURCE_FIELDS.map((f) => f.key);

/** The default of each resource key (DEFAULT_RESOURCES, by key). */
export const DEFAULT_RESOURCE_VALUES: Record<ResourceAttr, string> = Object.fromEntries(
  RESOURCE_FIELDS.map((f) => [f.key, DEFAULT_RESOURCES[f.list][f.resource]]),
) as Record<ResourceAttr, string>;

function resource(key: ResourceAttr, what: string) {
  return spec<string>({
    key,
    setBy: 'user',
    appliesTo: 'both',
    writtenIn: 'pv-and-storage-class',
    summary: `${what} of the client (a quantity; ≤ 0 removes the entry; default ${DEFAULT_RESOURCE_VALUES[key]})`,
    parse: quantity(key),
  });
}

function mountPodMap(key: string, what: string) {
  return spec<Record<string, string>>({
    key,
    setBy: 'admin',
    appliesTo: 'mount-pod',
    writtenIn: 'pv-and-storage-class',
    summary: `${what} of the Mount Pod (a JSON or YAML map, or \`k=v,k=v\`)`,
    parse: (text) => parseMap(key, text),
  });
}

export const ATTRIBUTES = {
  mountImage: spec<string | undefined>({
    key: ATTR.mountImage,
    setBy: 'admin',
    appliesTo: 'both',
    writtenIn: 'pv-and-storage-class',
    summary: 'image of the client (empty: the default)',
    parse: (text) => {
      if (!text) return undefined;
      if (/\s/.test(text) || hasControlCharacters(text)) fail(ATTR.mountImage, text, 'is not an image reference');
      return text;
    },
  }),
  cpuRequest: resource(ATTR.cpuRequest, 'CPU request'),
  cpuLimit: resource(ATTR.cpuLimit, 'CPU limit'),
  memoryRequest: resource(ATTR.memoryRequest, 'memory request'),
  memoryLimit: resource(ATTR.memoryLimit, 'memory limit'),
  deleteDelay: spec<string | undefined>({
    key: ATTR.deleteDelay,
    setBy: 'admin',
    appliesTo: 'mount-pod',
    writtenIn: 'pv-and-storage-class',
    summary: 'how long a Mount Pod outlives its last reference (a Go duration, e.g. `1m30s`)',
    parse: (text) => {
      if (!text) return undefined;
      if (parseDuration(text) === undefined) fail(ATTR.deleteDelay, text, 'is not a duration (e.g. 30s, 1m30s)');
      return text;
    },
  }),
  cleanCache: spec<boolean>({
    key: ATTR.cleanCache,
    setBy: 'admin',
    appliesTo: 'mount-pod',
    writtenIn: 'pv-and-storage-class',
    summary: '`"true"`: a Job removes the volume\'s cache once its Mount Pod is gone',
    parse: (text) =>
      text === 'true'
        ? true
        : text === 'false' || text === ''
          ? false
          : fail(ATTR.cleanCache, text, 'is not "true" or "false"'),
  }),
  mountLabels: mountPodMap(ATTR.mountLabels, 'labels'),
  mountAnnotations: mountPodMap(ATTR.mountAnnotations, 'annotations'),
  mountOptions: spec<string>({
    key: ATTR.mountOptions,
    setBy: 'admin',
    appliesTo: 'both',
    writtenIn: 'pv-and-storage-class',
    summary: '`juicefs mount` options, `k=v,k` (each one checked as PV `mountOptions` are)',
    // Each option is parsed by the mount spec (src/mount/mount-options.ts), which names it in its error.
    parse: (text) => text,
  }),
  subPath: spec<string>({
    key: ATTR.subPath,
    setBy: 'admin',
    appliesTo: 'both',
    writtenIn: 'pv-and-storage-class',
    summary: 'subdirectory of the JuiceFS volume to mount (set by the controller on the PVs it creates)',
    // The subdirectory rule (./subdir.ts) applies where it is mounted, to the result of subPath and the subdir option
    // together.
    parse: (text) => text,
  }),
  renderedMountOptions: spec<string[]>({
    key: ATTR.renderedMountOptions,
    setBy: 'admin',
    appliesTo: 'both',
    writtenIn: 'pv-and-storage-class',
    summary:
      'set by the controller on the PVs it creates when the StorageClass `mountOptions` hold templates: them, ' +
      "rendered (a JSON list), in place of the PV's `mountOptions`, which csi-provisioner copies unrendered",
    parse: (text) => {
      let list: unknown;
      try {
        list = JSON.parse(text);
      } catch {
        return fail(ATTR.renderedMountOptions, text, 'is not a JSON list of strings');
      }
      if (!Array.isArray(list) || !list.every((o) => typeof o === 'string'))
        return fail(ATTR.renderedMountOptions, text, 'is not a JSON list of strings');
      return list;
    },
  }),
  controllerQuotaSet: spec<boolean>({
    key: ATTR.controllerQuotaSet,
    setBy: 'admin',
    appliesTo: 'sidecar',
    writtenIn: 'pv-and-storage-class',
    summary:
      "set by the controller (the reference's key) on the PVs whose quota it set in CreateVolume; the sidecar sets a " +
      "quota from the PVC's request only on PVs without it",
    // Any value means set, as the reference reads it.
    parse: () => true,
  }),
  pathPattern: spec<string>({
    key: ATTR.pathPattern,
    setBy: 'admin',
    appliesTo: 'provisioning',
    writtenIn: 'storage-class',
    summary:
      'subdirectory of a new PV from its PVC (and node), e.g. `${.pvc.namespace}-${.pvc.name}`; a placeholder with no ' +
      'value is an error (see Templates)',
    parse: (text) => {
      if (!checkPathPattern(text)) fail(ATTR.pathPattern, text, 'has an unknown placeholder');
      return text;
    },
  }),
  credentials: spec<CredentialsMode | undefined>({
    key: ATTR.credentials,
    setBy: 'admin',
    appliesTo: 'sidecar',
    writtenIn: 'pv-and-storage-class',
    summary:
      "`copy`: the sidecar reads a per-PVC Secret copy in the pod's namespace; `broker`: no copy, the sidecar fetches " +
      "the credentials from the controller at start (ADR 0010); empty: the webhook's and controller's `--credentials`",
    parse: (text) => {
      if (!text) return undefined;
      if (text !== 'copy' && text !== 'broker') fail(ATTR.credentials, text, 'is not "copy" or "broker"');
      return text as CredentialsMode;
    },
  }),
  fdHolder: spec<boolean | undefined>({
    key: ATTR.fdHolder,
    setBy: 'admin',
    appliesTo: 'both',
    writtenIn: 'pv-and-storage-class',
    summary:
      '`"false"`: no FUSE fd holder for this volume\'s sidecar or Mount Pod (a crashed or upgraded sidecar then leaves ' +
      'the apps on a dead mount; a crashed Mount Pod client fails I/O at once and its targets are re-bound to a fresh ' +
      'mount, instead of blocking until its replacement takes the connection over; ADR 0015); `"true"`: a holder (the ' +
      'node service for Mount Pods; in the pod with native placement; classic placement never has one); empty: ' +
      '`"true"` (ADR 0015, 0019)',
    parse: (text) =>
      text === ''
        ? undefined
        : text === 'true'
          ? true
          : text === 'false'
            ? false
            : fail(ATTR.fdHolder, text, 'is not "true" or "false"'),
  }),
  cachePvc: spec<string[]>({
    key: ATTR.cachePvc,
    setBy: 'admin',
    appliesTo: 'both',
    writtenIn: 'pv-and-storage-class',
    summary:
      'PVCs the client caches in, `a,b` (templates `${VOLUME_ID}`, `${SUB_PATH}`), mounted at `/var/jfsCache-<i>`: ' +
      "a sidecar's in the pod's namespace, a Mount Pod's in the Mount Pods' namespace (see Cache)",
    parse: (text) => {
      const names = commaList(text);
      for (const n of names) {
        if (!DNS_SUBDOMAIN.test(sampleRendering(ATTR.cachePvc, n)))
          fail(ATTR.cachePvc, text, `has "${n}", no PVC name`);
      }
      return names;
    },
  }),
  cacheEmptyDir: spec<CacheEmptyDirSpec | undefined>({
    key: ATTR.cacheEmptyDir,
    setBy: 'admin',
    appliesTo: 'both',
    writtenIn: 'pv-and-storage-class',
    summary:
      'an emptyDir the client caches in, `medium[:sizeLimit]` (e.g. `Memory:1Gi`, `:10Gi`), at `/var/jfsCache-emptyDir`',
    parse: parseCacheEmptyDir,
  }),
  cacheInlineVolume: spec<V1CSIVolumeSource[]>({
    key: ATTR.cacheInlineVolume,
    setBy: 'admin',
    appliesTo: 'both',
    writtenIn: 'pv-and-storage-class',
    summary:
      'inline CSI volumes the client caches in, a JSON list of `volumes[].csi` (`driver`, `fsType`, `volumeAttributes`, ' +
      '`nodePublishSecretRef`), at `/var/jfsCache-inlineVolume-<i>`',
    parse: parseInlineVolumes,
  }),
  hostPath: spec<string[]>({
    key: ATTR.hostPath,
    setBy: 'admin',
    appliesTo: 'both',
    writtenIn: 'pv-and-storage-class',
    summary:
      'host files or folders mounted into the client at the same path, `/a,/b` (templates `${VOLUME_ID}`, ' +
      '`${SUB_PATH}`); not in serverless pods, which have no host path',
    parse: (text) => {
      const paths = commaList(text);
      for (const p of paths) {
        const problem = hostPathProblem(sampleRendering(ATTR.hostPath, p));
        if (problem) fail(ATTR.hostPath, text, `has "${p}", which ${problem}`);
      }
      return paths;
    },
  }),
  mountServiceAccount: spec<string | undefined>({
    key: ATTR.mountServiceAccount,
    setBy: 'admin',
    appliesTo: 'mount-pod',
    writtenIn: 'pv-and-storage-class',
    summary:
      "service account of the Mount Pod, its token mounted (cloud IAM of the client); empty: the node service's own, " +
      'without its token',
    parse: (text) => {
      if (!text) return undefined;
      if (!DNS_SUBDOMAIN.test(text)) fail(ATTR.mountServiceAccount, text, 'is not a service account name');
      return text;
    },
  }),
} as const;

export type AttributeName = keyof typeof ATTRIBUTES;
type ValueOf<N extends AttributeName> = ReturnType<(typeof ATTRIBUTES)[N]['parse']>;
/** Every attribute of the table a volume sets, parsed. */
export type VolumeAttributes = { [N in AttributeName]?: ValueOf<N> };

export const ATTRIBUTE_SPECS: readonly AttributeSpec<unknown>[] = Object.values(ATTRIBUTES);

/** The keys a namespace user may set (PVC and pod annotations), within the admin's bounds. */
export const USER_KEYS: readonly string[] = ATTRIBUTE_SPECS.filter((s) => s.setBy === 'user').map((s) => s.key);

/**
 * Parses every key of the table that `attributes` carries (other keys, e.g.
 * the provisioner's secret parameters, are not the mount's). Throws
 * AttributeError naming the first invalid key: an admin's mistake is never
 * silently replaced by a default.
 */
export function parseVolumeAttributes(attributes: Record<string, string>): VolumeAttributes {
  const out: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(ATTRIBUTES) as [AttributeName, AttributeSpec<unknown>][]) {
    const text = attributes[s.key];
    if (text !== undefined) out[name] = s.parse(text);
  }
  return out;
}

const WHO = {
  admin: 'admin',
  user: 'admin; namespace users too, in PVC and pod annotations, within `annotationBounds`',
} as const;
const WHERE = {
  sidecar: 'sidecar',
  'mount-pod': 'Mount Pod',
  both: 'sidecar and Mount Pod',
  provisioning: 'CreateVolume (and WaitForFirstConsumer injection)',
} as const;
const WRITTEN = { 'pv-and-storage-class': 'PV, StorageClass', 'storage-class': 'StorageClass' } as const;

/** The README's table of volume settings, rendered from ATTRIBUTES (a unit test keeps the README equal to it). */
export function renderAttributeTable(): string {
  const rows = ATTRIBUTE_SPECS.map(
    (s) => `| \`${s.key}\` | ${WRITTEN[s.writtenIn]} | ${WHO[s.setBy]} | ${WHERE[s.appliesTo]} | ${s.summary} |`,
  );
  return ['| key | written in | set by | applies to | value |', '| --- | --- | --- | --- | --- |', ...rows].join('\n');
}
