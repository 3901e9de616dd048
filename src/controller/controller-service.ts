// CSI Identity and Controller services: each PV is a subdirectory of the
// JuiceFS volume (named by the PV, or the StorageClass pathPattern), with its
// capacity as a JuiceFS quota.
import type { V1Node, V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { ATTR } from '../contract/keys.js';
import { PathPatternError, renderPathPattern } from '../contract/path-pattern.js';
import {
  mountOptionsNeed,
  parametersNeed,
  renderMountOptions,
  renderParameters,
  SELECTED_NODE_ANNOTATION,
  TemplateError,
  type TemplateSources,
} from '../contract/template.js';
import { isCanonicalSubdir } from '../contract/subdir.js';
import { Code, CsiError, requiredString, type ServiceImpl } from '../csi/server.js';
import {
  CredentialsError,
  credentialsFromSecrets,
  type JuicefsVolumes,
  type VolumeCredentials,
} from '../juicefs/volume.js';
import { KeyedLock } from '../util/keyed-lock.js';
import { listRecords, readRecord, REGISTRY_DIR, removeRecord, writeRecord } from './registry.js';

/** Keys external-provisioner adds with --extra-create-metadata. */
const PVC_NAME = 'csi.storage.k8s.io/pvc/name';
const PVC_NAMESPACE = 'csi.storage.k8s.io/pvc/namespace';
const RESERVED_PREFIX = 'csi.storage.k8s.io/';
const GIB = 2 ** 30;

type Req = Record<string, unknown>;
interface Capability {
  block?: unknown;
  mount?: { mount_flags?: string[] } | null;
  access_mode?: { mode?: string };
  access_type?: string;
}

export interface ControllerOptions {
  volumes: JuicefsVolumes;
  version: string;
  log: Logger;
  /**
   * Looks a PVC up, for pathPatterns that use its labels or annotations (the provisioner passes only name and
   * namespace).
   */
  getPvc?: (namespace: string, name: string) => Promise<V1PersistentVolumeClaim | undefined>;
  /** Looks a node up, for templates that use `${.node.…}` (the PVC's selected node). */
  getNode?: (name: string) => Promise<V1Node | undefined>;
}

function bytes(v: unknown): number {
  const n = Number(v ?? 0);
  if (!Number.isFinite(n) || n < 0)
    throw new CsiError(Code.INVALID_ARGUMENT, `capacity ${String(v)} is not a non-negative number`);
  return n;
}

function creds(secrets: unknown): VolumeCredentials {
  try {
    return credentialsFromSecrets(secrets as Record<string, string>);
  } catch (err) {
    if (err instanceof CredentialsError) throw new CsiError(Code.INVALID_ARGUMENT, err.message);
    throw err;
  }
}

/**
 * A subdirectory the controller may own: the one subdirectory rule
 * (contract/subdir.ts) in its canonical form, since the controller records it
 * and later removes it; never the root, never its own registry.
 */
export function checkSubdir(dir: string): string {
  if (!isCanonicalSubdir(dir)) {
    throw new CsiError(Code.INVALID_ARGUMENT, `subdirectory "${dir}" is empty, absolute or escapes the volume`);
  }
  if (dir === REGISTRY_DIR.split('/')[0] || dir.startsWith(`${REGISTRY_DIR.split('/')[0]}/`)) {
    throw new CsiError(Code.INVALID_ARGUMENT, `subdirectory "${dir}" is reserved`);
  }
  return dir;
}

function checkCapabilities(caps: unknown, required: boolean): Capability[] {
  const list = (Array.isArray(caps) ? caps : []) as Capability[];
  if (required && list.length === 0) throw new CsiError(Code.INVALID_ARGUMENT, 'volume_capabilities is required');
  for (const c of list) {
    if (!c.mount && !c.block) throw new CsiError(Code.INVALID_ARGUMENT, 'a volume capability names no access type');
    if (!c.access_mode || !c.access_mode.mode || c.access_mode.mode === 'UNKNOWN') {
      throw new CsiError(Code.INVALID_ARGUMENT, 'a volume capability names no access mode');
    }
  }
  return list;
}

/** Parameters that travel to the sidecar/node as volume_context (admin settings; no provisioner-internal keys). */
function volumeContext(parameters: Record<string, string>, subdir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parameters)) {
    if (k.startsWith(RESERVED_PREFIX) || k === ATTR.pathPattern) continue;
    out[k] = v;
  }
  out[ATTR.subPath] = subdir;
  return out;
}

export function controllerService(opts: ControllerOptions): ServiceImpl {
  const { volumes, log } = opts;
  // One operation per volume name at a time: the CO may retry while a call is still running.
  const lock = new KeyedLock();

  /**
   * The PVC and node a new volume's templates read (./../contract/template.ts): name and namespace from the
   * provisioner's metadata, the PVC object when a template reads its labels or annotations or the node, the node
   * from the PVC's selected-node annotation. Undefined when nothing is templated.
   */
  async function templateSources(
    parameters: Record<string, string>,
    mountFlags: readonly string[],
  ): Promise<TemplateSources | undefined> {
    let need: ReturnType<typeof parametersNeed>;
    try {
      const [p, m] = [parametersNeed(parameters), mountOptionsNeed(mountFlags)];
      need = { templated: p.templated || m.templated, node: p.node || m.node, pvcObject: p.pvcObject || m.pvcObject };
    } catch (err) {
      if (err instanceof TemplateError) throw new CsiError(Code.INVALID_ARGUMENT, err.message);
      throw err;
    }
    // A fixed pathPattern needs no PVC but, as before, the provisioner's metadata: it names where the PV goes.
    if (!need.templated && !parameters[ATTR.pathPattern]) return undefined;
    const pvcName = parameters[PVC_NAME];
    const namespace = parameters[PVC_NAMESPACE];
    if (!pvcName || !namespace) {
      throw new CsiError(
        Code.INVALID_ARGUMENT,
        'templated parameters (pathPattern, ${.PVC.…}) need the PVC name and namespace: run csi-provisioner with ' +
          '--extra-create-metadata',
      );
    }
    if (!need.node && !need.pvcObject) return { pvc: { name: pvcName, namespace } };
    const pvc = await opts.getPvc?.(namespace, pvcName);
    if (!pvc)
      throw new CsiError(Code.UNAVAILABLE, `PersistentVolumeClaim ${namespace}/${pvcName} not found for its templates`);
    const sources: TemplateSources = {
      pvc: { name: pvcName, namespace, labels: pvc.metadata?.labels, annotations: pvc.metadata?.annotations },
    };
    const selected = pvc.metadata?.annotations?.[SELECTED_NODE_ANNOTATION];
    if (need.node && selected) {
      const node = await opts.getNode?.(selected);
      if (!node)
        throw new CsiError(Code.UNAVAILABLE, `node ${selected} (selected for ${namespace}/${pvcName}) not found`);
      sources.node = {
        name: selected,
        podCIDR: node.spec?.podCIDR,
        labels: node.metadata?.labels,
        annotations: node.metadata?.annotations,
      };
    }
    return sources;
  }

  /** The volume's subdirectory and its context (templates rendered), as CreateVolume records and returns them. */
  async function renderVolume(
    name: string,
    parameters: Record<string, string>,
    mountFlags: readonly string[],
  ): Promise<{ subdir: string; context: Record<string, string> }> {
    const sources = await templateSources(parameters, mountFlags);
    if (!sources) {
      const subdir = checkSubdir(name);
      return { subdir, context: volumeContext(parameters, subdir) };
    }
    try {
      const rendered = renderParameters(parameters, sources, new Set([ATTR.pathPattern]));
      const options = renderMountOptions(mountFlags, sources);
      const missing = [...rendered.missing, ...options.missing];
      if (missing.length > 0) log.warn({ volume: name, missing }, 'placeholders with no value rendered empty');
      const pattern = parameters[ATTR.pathPattern];
      const subdir = checkSubdir(pattern ? renderPathPattern(pattern, sources) : name);
      const context = volumeContext(rendered.parameters, subdir);
      // The PV's mountOptions are csi-provisioner's unrendered copy; the mount reads this one instead.
      if (mountOptionsNeed(mountFlags).templated) context[ATTR.renderedMountOptions] = JSON.stringify(options.options);
      return { subdir, context };
    } catch (err) {
      if (err instanceof PathPatternError || err instanceof TemplateError)
        throw new CsiError(Code.INVALID_ARGUMENT, err.message);
      throw err;
    }
  }

  return {
    CreateVolume: async (req: Req) => {
      const name = requiredString(req, 'name');
      const caps = checkCapabilities(req.volume_capabilities, true);
      if (caps.some((c) => c.block))
        throw new CsiError(Code.INVALID_ARGUMENT, 'JuiceFS volumes are filesystems; block access is not supported');
      if ((req.volume_content_source as { type?: string } | null)?.type) {
        throw new CsiError(
          Code.INVALID_ARGUMENT,
          'creating a volume from a snapshot or another volume is not supported',
        );
      }
      const range = (req.capacity_range ?? {}) as { required_bytes?: string; limit_bytes?: string };
      const required = bytes(range.required_bytes);
      const limit = bytes(range.limit_bytes);
      if (limit && required > limit) throw new CsiError(Code.INVALID_ARGUMENT, 'required_bytes is above limit_bytes');
      const quotaBytes = required || limit ? Math.max(1, Math.ceil((required || limit) / GIB)) * GIB : 0;
      if (limit && quotaBytes > limit)
        throw new CsiError(
          Code.OUT_OF_RANGE,
          `quotas are whole GiB: ${quotaBytes} bytes would exceed limit_bytes ${limit}`,
        );
      const parameters = (req.parameters ?? {}) as Record<string, string>;
      const c = creds(req.secrets);
      // csi-provisioner passes the StorageClass mountOptions as every capability's mount flags.
      const mountFlags = caps.find((c) => c.mount)?.mount?.mount_flags ?? [];
      const { subdir, context } = await renderVolume(name, parameters, mountFlags);

      return lock.run(name, () =>
        volumes.withMount(c, async (root) => {
          const existing = await readRecord(root, name);
          if (existing && (existing.capacityBytes !== quotaBytes || existing.subdir !== subdir)) {
            throw new CsiError(
              Code.ALREADY_EXISTS,
              `volume ${name} exists with ${existing.capacityBytes} bytes at "${existing.subdir}"`,
            );
          }
          // The record comes first: an interrupted create leaves a record a retry completes, never an unknown
          // directory.
          if (!existing)
            await writeRecord(root, {
              id: name,
              subdir,
              capacityBytes: quotaBytes,
              createdAt: new Date().toISOString(),
            });
          const dir = path.join(root, subdir);
          await mkdir(dir, { recursive: true });
          // Apps run as any user: the new directory is theirs to write.
          await chmod(dir, 0o777);
          if (quotaBytes > 0) await volumes.setQuota(c, subdir, quotaBytes);
          log.info({ volume: name, subdir, capacityBytes: quotaBytes }, existing ? 'volume exists' : 'volume created');
          return {
            volume: {
              volume_id: name,
              capacity_bytes: String(quotaBytes),
              volume_context: context,
            },
          };
        }),
      );
    },

    DeleteVolume: async (req: Req) => {
      const id = requiredString(req, 'volume_id');
      const c = creds(req.secrets);
      return lock.run(id, () =>
        volumes.withMount(c, async (root) => {
          const record = await readRecord(root, id);
          if (!record) return {}; // unknown or already deleted: success
          const subdir = checkSubdir(record.subdir);
          const sharers = (await listRecords(root)).filter((r) => r.id !== id && r.subdir === subdir);
          if (sharers.length === 0) {
            await volumes.removeTree(root, subdir);
            await volumes.deleteQuota(c, subdir);
          } else {
            log.info(
              { volume: id, subdir, sharedWith: sharers.map((r) => r.id) },
              'directory kept: other volumes use it',
            );
          }
          // The record goes last, so an interrupted delete is retried to completion.
          await removeRecord(root, id);
          return {};
        }),
      );
    },

    ValidateVolumeCapabilities: async (req: Req) => {
      const id = requiredString(req, 'volume_id');
      const caps = checkCapabilities(req.volume_capabilities, true);
      const c = creds(req.secrets);
      const record = await volumes.withMount(c, (root) => readRecord(root, id));
      if (!record) throw new CsiError(Code.NOT_FOUND, `volume ${id} does not exist`);
      if (caps.some((cap) => cap.block)) return { message: 'block access is not supported' };
      return {
        confirmed: {
          volume_context: req.volume_context ?? {},
          volume_capabilities: caps,
          parameters: req.parameters ?? {},
          mutable_parameters: req.mutable_parameters ?? {},
        },
      };
    },

    ControllerGetCapabilities: async () => ({
      capabilities: [{ rpc: { type: 'CREATE_DELETE_VOLUME' } }, { rpc: { type: 'EXPAND_VOLUME' } }],
    }),

    ControllerExpandVolume: async (req: Req) => {
      const id = requiredString(req, 'volume_id');
      const range = req.capacity_range as { required_bytes?: string; limit_bytes?: string } | null;
      if (!range) throw new CsiError(Code.INVALID_ARGUMENT, 'capacity_range is required');
      const required = bytes(range.required_bytes) || bytes(range.limit_bytes);
      const c = creds(req.secrets);
      return lock.run(id, () =>
        volumes.withMount(c, async (root) => {
          const record = await readRecord(root, id);
          if (!record) throw new CsiError(Code.NOT_FOUND, `volume ${id} does not exist`);
          if (required <= record.capacityBytes)
            return { capacity_bytes: String(record.capacityBytes), node_expansion_required: false };
          const quotaBytes = await volumes.setQuota(c, record.subdir, required);
          await writeRecord(root, { ...record, capacityBytes: quotaBytes });
          return { capacity_bytes: String(quotaBytes), node_expansion_required: false };
        }),
      );
    },
  };
}
