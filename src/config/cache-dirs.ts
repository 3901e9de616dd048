// `mountPodPatch[].cacheDirs` of the ConfigMap, as the reference driver reads it: a list of `{type: HostPath, path}`,
// `{type: PVC, name}`, `{type: EmptyDir, medium?, sizeLimit?}`, `{type: Ephemeral, storage, storageClassName?,
// accessModes?}`. Parsed here, applied by the mount spec (src/mount/settings.ts). Pure.
import { hostPathProblem } from '../contract/attributes.js';
import { MountTemplateError, renderMountTemplate } from '../contract/mount-template.js';
import { isPositive, parseQuantity } from '../contract/quantity.js';

export type CacheDirEntry =
  | { type: 'HostPath'; path: string }
  | { type: 'PVC'; name: string }
  | { type: 'EmptyDir'; medium?: string; sizeLimit?: string }
  | { type: 'Ephemeral'; storage: string; storageClassName?: string; accessModes: string[] };

/** A cacheDirs entry the schema refuses; the message names the entry and the field. */
export class CacheDirsError extends Error {
  override name = 'CacheDirsError';
}

const FIELDS: Record<CacheDirEntry['type'], readonly string[]> = {
  HostPath: ['type', 'path'],
  PVC: ['type', 'name'],
  EmptyDir: ['type', 'medium', 'sizeLimit'],
  Ephemeral: ['type', 'storage', 'storageClassName', 'accessModes'],
};
const ACCESS_MODES = new Set(['ReadWriteOnce', 'ReadWriteOncePod', 'ReadWriteMany']);
const MEDIA = /^(Memory|HugePages(-[0-9]+[KMG]i)?)?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function templated(where: string, text: string): string {
  try {
    return renderMountTemplate(text, { volumeId: 'pv', subPath: 'sub' });
  } catch (err) {
    if (err instanceof MountTemplateError) throw new CacheDirsError(`${where}: ${err.message}`);
    throw err;
  }
}

function quantityText(v: unknown, where: string): string {
  const text = typeof v === 'number' ? String(v) : v;
  const q = typeof text === 'string' ? parseQuantity(text) : undefined;
  if (!q || !isPositive(q)) throw new CacheDirsError(`${where}: "${String(v)}" is not a positive quantity`);
  return text as string;
}

function entry(raw: unknown, where: string): CacheDirEntry {
  if (!isRecord(raw)) throw new CacheDirsError(`${where}: expected a map with a type`);
  const type = raw.type;
  if (typeof type !== 'string' || !(type in FIELDS)) {
    throw new CacheDirsError(`${where}.type: "${String(type)}" is not one of HostPath, PVC, EmptyDir, Ephemeral`);
  }
  const allowed = FIELDS[type as CacheDirEntry['type']];
  const extra = Object.keys(raw).find((k) => !allowed.includes(k));
  if (extra) throw new CacheDirsError(`${where}.${extra}: not a field of a ${type} entry (${allowed.join(', ')})`);
  switch (type) {
    case 'HostPath': {
      if (typeof raw.path !== 'string' || !raw.path) throw new CacheDirsError(`${where}.path: required for HostPath`);
      const problem = hostPathProblem(templated(`${where}.path`, raw.path));
      if (problem) throw new CacheDirsError(`${where}.path: "${raw.path}" ${problem}`);
      return { type, path: raw.path };
    }
    case 'PVC': {
      if (typeof raw.name !== 'string' || !DNS_SUBDOMAIN.test(templated(`${where}.name`, raw.name))) {
        throw new CacheDirsError(`${where}.name: a PVC name is required for PVC`);
      }
      return { type, name: raw.name };
    }
    case 'EmptyDir': {
      if (raw.medium !== undefined && (typeof raw.medium !== 'string' || !MEDIA.test(raw.medium))) {
        throw new CacheDirsError(
          `${where}.medium: ${JSON.stringify(raw.medium)} is no emptyDir medium ("", Memory, HugePages)`,
        );
      }
      return {
        type,
        ...(raw.medium ? { medium: raw.medium } : {}),
        ...(raw.sizeLimit !== undefined ? { sizeLimit: quantityText(raw.sizeLimit, `${where}.sizeLimit`) } : {}),
      };
    }
    default: {
      if (raw.storage === undefined) throw new CacheDirsError(`${where}.storage: required for Ephemeral`);
      const storage = quantityText(raw.storage, `${where}.storage`);
      if (
        raw.storageClassName !== undefined &&
        (typeof raw.storageClassName !== 'string' || !DNS_SUBDOMAIN.test(raw.storageClassName))
      ) {
        throw new CacheDirsError(`${where}.storageClassName: not a StorageClass name`);
      }
      const modes = raw.accessModes ?? ['ReadWriteOnce'];
      if (!Array.isArray(modes) || modes.length === 0 || !modes.every((m) => ACCESS_MODES.has(m as string))) {
        throw new CacheDirsError(`${where}.accessModes: a list of ${[...ACCESS_MODES].join(', ')}`);
      }
      return {
        type: 'Ephemeral',
        storage,
        ...(raw.storageClassName ? { storageClassName: raw.storageClassName } : {}),
        accessModes: modes as string[],
      };
    }
  }
}

/** `cacheDirs` of one mountPodPatch entry (`where` names it); undefined when absent. Throws CacheDirsError. */
export function parseCacheDirs(raw: unknown, where: string): CacheDirEntry[] | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!Array.isArray(raw)) throw new CacheDirsError(`${where}: expected a list`);
  return raw.map((e, i) => entry(e, `${where}[${i}]`));
}
