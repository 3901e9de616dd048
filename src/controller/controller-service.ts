// CSI Identity and Controller services: each PV is a subdirectory of the
// JuiceFS volume (named by the PV, or the StorageClass pathPattern), with its
// capacity as a JuiceFS quota.
import type { V1Node, V1PersistentVolume, V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { chmod, mkdir, readdir, rename, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { GlobalConfig } from '../config/schema.js';
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
import { isCanonicalSubdir, SubdirError } from '../contract/subdir.js';
import { Code, CsiError, requiredString, type ServiceImpl } from '../csi/server.js';
import {
  CredentialsError,
  credentialsFromSecrets,
  type JuicefsVolumes,
  type VolumeCredentials,
} from '../juicefs/volume.js';
import { KeyedLock } from '../util/keyed-lock.js';
import {
  listRecords,
  listSnapshots,
  readRecord,
  readSnapshot,
  REGISTRY_DIR,
  removeRecord,
  removeSnapshot,
  writeRecord,
  writeSnapshot,
  type SnapshotRecord,
  type VolumeRecord,
} from './registry.js';
import {
  PageError,
  pageOf,
  parseSnapshotHandle,
  SNAPSHOT_DATA_DIR,
  snapshotDir,
  snapshotHandle,
  snapshotOrder,
  timestampOf,
} from './snapshots.js';
import { pvsSharing, referenceRecord, volumeDirectory } from '../mount/volume-path.js';

/** Keys external-provisioner adds with --extra-create-metadata. */
const PVC_NAME = 'csi.storage.k8s.io/pvc/name';
const PVC_NAMESPACE = 'csi.storage.k8s.io/pvc/namespace';
const RESERVED_PREFIX = 'csi.storage.k8s.io/';
const GIB = 2 ** 30;

type Req = Record<string, unknown>;
/** CSI's VolumeContentSource as proto-loader gives it (`oneofs: true`: `type` names the field set). */
interface ContentSource {
  type?: 'snapshot' | 'volume';
  snapshot?: { snapshot_id?: string } | null;
  volume?: { volume_id?: string } | null;
}
/** Where restores are cloned before they are renamed into their directory. */
const RESTORING_DIR = '.jfs-sidecar/restoring';

/** Whether a directory exists and has anything in it. */
async function hasEntries(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length > 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
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
  /**
   * Looks a PV up by name: a volume with no record (one the reference driver provisioned) is found through its PV,
   * whose name is its volume id.
   */
  getPv?: (name: string) => Promise<V1PersistentVolume | undefined>;
  /** Lists the PVs: DeleteVolume keeps a directory another PV mounts, recorded or not. */
  listPvs?: () => Promise<V1PersistentVolume[]>;
  /** The global ConfigMap's quota switches (enableSetQuota, enableControllerSetQuota); unset: both on. */
  config?: () => Pick<GlobalConfig, 'enableSetQuota' | 'enableControllerSetQuota'>;
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
 * and later removes it; never the root, its own registry or the snapshots.
 */
export function checkSubdir(dir: string): string {
  if (!isCanonicalSubdir(dir)) {
    throw new CsiError(Code.INVALID_ARGUMENT, `subdirectory "${dir}" is empty, absolute or escapes the volume`);
  }
  const top = dir.split('/')[0];
  if (top === REGISTRY_DIR.split('/')[0] || top === SNAPSHOT_DATA_DIR) {
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

  /**
   * The volume's subdirectory (its `subPath`), its directory in the JuiceFS volume (under the `subdir` mount option,
   * which the mount joins in front) and its context (templates rendered), as CreateVolume records and returns them.
   */
  async function renderVolume(
    name: string,
    parameters: Record<string, string>,
    mountFlags: readonly string[],
  ): Promise<{ subdir: string; dir: string; context: Record<string, string> }> {
    const directory = (subdir: string, flags: readonly string[], context: Record<string, string>) => {
      try {
        return checkSubdir(volumeDirectory(subdir, flags, context[ATTR.mountOptions]));
      } catch (err) {
        if (err instanceof SubdirError)
          throw new CsiError(Code.INVALID_ARGUMENT, `mount option subdir: ${err.message}`);
        throw err;
      }
    };
    const sources = await templateSources(parameters, mountFlags);
    if (!sources) {
      const subdir = checkSubdir(name);
      const context = volumeContext(parameters, subdir);
      return { subdir, dir: directory(subdir, mountFlags, context), context };
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
      return { subdir, dir: directory(subdir, options.options, context), context };
    } catch (err) {
      if (err instanceof PathPatternError || err instanceof TemplateError)
        throw new CsiError(Code.INVALID_ARGUMENT, err.message);
      throw err;
    }
  }

  /**
   * The volume's record, or for a volume with none (the reference driver provisioned it) what its PV says by the
   * reference's rules (src/mount/volume-path.ts), marked `derived`. Undefined: no volume of this driver.
   */
  async function findRecord(root: string, id: string): Promise<(VolumeRecord & { derived?: true }) | undefined> {
    const record = await readRecord(root, id);
    if (record) return record;
    const pv = await opts.getPv?.(id);
    let derived: VolumeRecord | undefined;
    try {
      derived = referenceRecord(id, pv);
    } catch (err) {
      if (err instanceof SubdirError) throw new CsiError(Code.FAILED_PRECONDITION, `PV ${id}: ${err.message}`);
      throw err;
    }
    if (!derived) return undefined;
    checkSubdir(derived.subdir);
    return { ...derived, derived: true };
  }

  /** A snapshot by its handle: ours by its record, the reference's by its directory. */
  async function findSnapshot(root: string, handle: string): Promise<{ dir: string; sizeBytes: number } | undefined> {
    const parsed = parseSnapshotHandle(handle);
    if (!parsed) return undefined;
    const record = await readSnapshot(root, parsed.name);
    if (record) return record.ready && record.sourceVolumeId === parsed.sourceVolumeId ? record : undefined;
    const dir = snapshotDir(parsed.name, parsed.sourceVolumeId);
    return existsSync(path.join(root, dir)) ? { dir, sizeBytes: 0 } : undefined;
  }

  /**
   * A snapshot's copy cloned into a new volume's directory: cloned beside it first and renamed in last, so the
   * directory holds all of the snapshot or nothing, and a retry after a crash starts over.
   */
  async function restore(root: string, from: string, to: string): Promise<void> {
    const full = path.join(root, to);
    if (await hasEntries(full)) return; // an earlier attempt's rename, its last step, happened
    const staging = `${RESTORING_DIR}/${createHash('sha256').update(to).digest('hex')}`;
    await volumes.removeTree(root, staging);
    await mkdir(path.join(root, RESTORING_DIR), { recursive: true });
    await volumes.cloneTree(root, from, staging);
    await mkdir(path.dirname(full), { recursive: true });
    await rmdir(full).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await rename(path.join(root, staging), full);
  }

  function snapshotOf(r: SnapshotRecord) {
    return {
      snapshot_id: snapshotHandle(r.name, r.sourceVolumeId),
      source_volume_id: r.sourceVolumeId,
      size_bytes: String(r.sizeBytes),
      creation_time: timestampOf(r.createdAt),
      ready_to_use: r.ready,
    };
  }

  return {
    CreateVolume: async (req: Req) => {
      const name = requiredString(req, 'name');
      const caps = checkCapabilities(req.volume_capabilities, true);
      if (caps.some((c) => c.block))
        throw new CsiError(Code.INVALID_ARGUMENT, 'JuiceFS volumes are filesystems; block access is not supported');
      const contentSource = req.volume_content_source as ContentSource | null;
      if (contentSource?.type === 'volume')
        throw new CsiError(Code.INVALID_ARGUMENT, 'cloning a volume is not supported: restore one of its snapshots');
      const fromSnapshot = contentSource?.type === 'snapshot' ? (contentSource.snapshot?.snapshot_id ?? '') : undefined;
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
      // As the reference: a new PV's directory is new and empty, so reading it only would read nothing; with a
      // pathPattern it may name data that is already there.
      if (!parameters[ATTR.pathPattern] && caps.some((c) => c.access_mode?.mode === 'MULTI_NODE_READER_ONLY'))
        throw new CsiError(
          Code.INVALID_ARGUMENT,
          'a new PV is a new, empty directory: read-only many (ROX) needs a pathPattern naming existing data',
        );
      const c = creds(req.secrets);
      // csi-provisioner passes the StorageClass mountOptions as every capability's mount flags.
      const mountFlags = caps.find((c) => c.mount)?.mount?.mount_flags ?? [];
      const { dir, context } = await renderVolume(name, parameters, mountFlags);

      return lock.run(name, () =>
        volumes.withMount(c, async (root) => {
          const existing = await readRecord(root, name);
          if (
            existing &&
            (existing.capacityBytes !== quotaBytes || existing.subdir !== dir || existing.source !== fromSnapshot)
          ) {
            throw new CsiError(
              Code.ALREADY_EXISTS,
              `volume ${name} exists with ${existing.capacityBytes} bytes at "${existing.subdir}"` +
                (existing.source ? ` from snapshot ${existing.source}` : ''),
            );
          }
          const full = path.join(root, dir);
          let snapshot: { dir: string; sizeBytes: number } | undefined;
          if (fromSnapshot !== undefined) {
            snapshot = await findSnapshot(root, fromSnapshot);
            if (!snapshot) throw new CsiError(Code.NOT_FOUND, `snapshot ${fromSnapshot} does not exist`);
            if (quotaBytes && snapshot.sizeBytes > quotaBytes)
              throw new CsiError(
                Code.OUT_OF_RANGE,
                `snapshot ${fromSnapshot} is of a ${snapshot.sizeBytes}-byte volume, more than the ${quotaBytes} asked`,
              );
            if (!existing && (await hasEntries(full)))
              throw new CsiError(
                Code.FAILED_PRECONDITION,
                `directory "${dir}" already holds data: a volume restored from a snapshot needs a new directory`,
              );
          }
          // The record comes first: an interrupted create leaves a record a retry completes, never an unknown
          // directory.
          if (!existing)
            await writeRecord(root, {
              id: name,
              subdir: dir,
              capacityBytes: quotaBytes,
              createdAt: new Date().toISOString(),
              ...(fromSnapshot !== undefined && { source: fromSnapshot }),
            });
          if (snapshot) await restore(root, snapshot.dir, dir);
          else {
            await mkdir(full, { recursive: true });
            // Apps run as any user: the new directory is theirs to write.
            await chmod(full, 0o777);
          }
          // The reference's switches: no quota at all, or the sidecar's at its mount (the marker tells it apart).
          const { enableSetQuota = true, enableControllerSetQuota = true } = opts.config?.() ?? {};
          const quotaHere = quotaBytes > 0 && enableSetQuota && enableControllerSetQuota;
          if (quotaHere) await volumes.setQuota(c, dir, quotaBytes);
          log.info({ volume: name, dir, capacityBytes: quotaBytes }, existing ? 'volume exists' : 'volume created');
          return {
            volume: {
              volume_id: name,
              capacity_bytes: String(quotaBytes),
              volume_context: { ...context, ...(quotaHere && { [ATTR.controllerQuotaSet]: 'true' }) },
              ...(contentSource?.type && { content_source: contentSource }),
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
          const record = await findRecord(root, id);
          if (!record) return {}; // unknown or already deleted: success
          const subdir = checkSubdir(record.subdir);
          // Recorded volumes, and PVs whatever provisioned them (the reference driver's have no record).
          const sharers = [
            ...(await listRecords(root)).filter((r) => r.id !== id && r.subdir === subdir).map((r) => r.id),
            ...(opts.listPvs ? pvsSharing(await opts.listPvs(), id, subdir) : []),
          ];
          if (sharers.length === 0) {
            await volumes.removeTree(root, subdir);
            await volumes.deleteQuota(c, subdir);
          } else {
            log.info({ volume: id, subdir, sharedWith: [...new Set(sharers)] }, 'directory kept: other volumes use it');
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
      const record = await volumes.withMount(c, async (root) => {
        const r = await findRecord(root, id);
        // A volume known only by the reference's rules is one when its directory is there.
        return r && (!r.derived || existsSync(path.join(root, r.subdir))) ? r : undefined;
      });
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
      capabilities: ['CREATE_DELETE_VOLUME', 'EXPAND_VOLUME', 'CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS'].map(
        (type) => ({ rpc: { type } }),
      ),
    }),

    CreateSnapshot: async (req: Req) => {
      const name = requiredString(req, 'name');
      const source = requiredString(req, 'source_volume_id');
      const c = creds(req.secrets);
      return lock.run(`snapshot/${name}`, () =>
        volumes.withMount(c, async (root) => {
          const existing = await readSnapshot(root, name);
          if (existing && existing.sourceVolumeId !== source)
            throw new CsiError(
              Code.ALREADY_EXISTS,
              `snapshot ${name} exists of another volume (${existing.sourceVolumeId})`,
            );
          if (existing?.ready) return { snapshot: snapshotOf(existing) };
          const volume = await findRecord(root, source);
          if (!volume || !existsSync(path.join(root, volume.subdir)))
            throw new CsiError(Code.NOT_FOUND, `source volume ${source} does not exist`);
          // The record comes first (not ready): a crash leaves a record whose retry clones again.
          const record: SnapshotRecord = existing ?? {
            name,
            sourceVolumeId: source,
            dir: snapshotDir(name, source),
            sizeBytes: volume.capacityBytes,
            createdAt: new Date().toISOString(),
            ready: false,
          };
          if (!existing) await writeSnapshot(root, record);
          await volumes.removeTree(root, record.dir); // what an interrupted attempt left
          await mkdir(path.dirname(path.join(root, record.dir)), { recursive: true });
          await volumes.cloneTree(root, volume.subdir, record.dir);
          const ready = { ...record, ready: true };
          await writeSnapshot(root, ready);
          log.info({ snapshot: name, volume: source, dir: record.dir }, 'snapshot taken');
          return { snapshot: snapshotOf(ready) };
        }),
      );
    },

    DeleteSnapshot: async (req: Req) => {
      const id = requiredString(req, 'snapshot_id');
      const parsed = parseSnapshotHandle(id);
      if (!parsed) return {}; // no handle of ours, nor of the reference: nothing to delete
      const c = creds(req.secrets);
      return lock.run(`snapshot/${parsed.name}`, () =>
        volumes.withMount(c, async (root) => {
          const record = await readSnapshot(root, parsed.name);
          // A record of that name for another source: another snapshot, not this handle's.
          if (record && record.sourceVolumeId !== parsed.sourceVolumeId) return {};
          const dir = record?.dir ?? snapshotDir(parsed.name, parsed.sourceVolumeId);
          await volumes.removeTree(root, dir);
          if (record) await removeSnapshot(root, parsed.name);
          // The per-volume folder and .snapshots go with their last snapshot (another may just be starting).
          for (const parent of [path.dirname(dir), SNAPSHOT_DATA_DIR])
            await rmdir(path.join(root, parent)).catch(() => undefined);
          return {};
        }),
      );
    },

    ListSnapshots: async (req: Req) => {
      const max = Number(req.max_entries ?? 0);
      if (!Number.isInteger(max) || max < 0)
        throw new CsiError(Code.INVALID_ARGUMENT, `max_entries ${String(req.max_entries)} is negative`);
      const c = creds(req.secrets);
      const byId = typeof req.snapshot_id === 'string' && req.snapshot_id ? parseSnapshotHandle(req.snapshot_id) : null;
      if (byId === undefined) return { entries: [], next_token: '' }; // no handle: no such snapshot
      const source = typeof req.source_volume_id === 'string' ? req.source_volume_id : '';
      const records = await volumes.withMount(c, (root) => listSnapshots(root));
      const matching = records
        .filter(
          (r) =>
            r.ready &&
            (!byId || (r.name === byId.name && r.sourceVolumeId === byId.sourceVolumeId)) &&
            (!source || r.sourceVolumeId === source),
        )
        .sort(snapshotOrder);
      try {
        const page = pageOf(matching, max, typeof req.starting_token === 'string' ? req.starting_token : '');
        return { entries: page.entries.map((r) => ({ snapshot: snapshotOf(r) })), next_token: page.nextToken };
      } catch (err) {
        if (err instanceof PageError) throw new CsiError(Code.ABORTED, err.message);
        throw err;
      }
    },

    ControllerExpandVolume: async (req: Req) => {
      const id = requiredString(req, 'volume_id');
      const range = req.capacity_range as { required_bytes?: string; limit_bytes?: string } | null;
      if (!range) throw new CsiError(Code.INVALID_ARGUMENT, 'capacity_range is required');
      const required = bytes(range.required_bytes) || bytes(range.limit_bytes);
      const c = creds(req.secrets);
      return lock.run(id, () =>
        volumes.withMount(c, async (root) => {
          const found = await findRecord(root, id);
          if (!found || (found.derived && !existsSync(path.join(root, found.subdir))))
            throw new CsiError(Code.NOT_FOUND, `volume ${id} does not exist`);
          const { derived, ...record } = found;
          // First touch of a volume the reference provisioned: from now on it has a record like any other.
          if (derived) {
            await writeRecord(root, record);
            log.info({ volume: id, subdir: record.subdir }, 'record written for a volume provisioned without one');
          }
          if (required <= record.capacityBytes)
            return { capacity_bytes: String(record.capacityBytes), node_expansion_required: false };
          if (opts.config?.().enableSetQuota === false) {
            // No quotas: the new size is only recorded (the reference fails the expansion, which leaves it stuck).
            const recorded = Math.ceil(required / GIB) * GIB;
            await writeRecord(root, { ...record, capacityBytes: recorded });
            log.info({ volume: id, capacityBytes: recorded }, 'expanded without a quota (enableSetQuota: false)');
            return { capacity_bytes: String(recorded), node_expansion_required: false };
          }
          const quotaBytes = await volumes.setQuota(c, record.subdir, required);
          await writeRecord(root, { ...record, capacityBytes: quotaBytes });
          return { capacity_bytes: String(quotaBytes), node_expansion_required: false };
        }),
      );
    },
  };
}
