// What the validating webhook checks, before an object is stored, rather than
// when a pod first mounts it: a JuiceFS Secret the admin marks with
// `juicefs.com/validate-secret: "true"` (as the reference driver selects them)
// and every new PV of this driver. Pure: objects in, a verdict out; whether
// the metadata engine answers (`juicefs status`, opted into) is the shell's.
import type { V1PersistentVolume, V1Secret } from '@kubernetes/client-node';
import { AttributeError, parseVolumeAttributes } from '../contract/attributes.js';
import { CSI_DRIVER_NAME, SECRET_KEYS } from '../contract/keys.js';
import { parseEnvs, SecretFormatError, unfitSourceSecret } from '../contract/secret-copy.js';
import { SubdirError } from '../contract/subdir.js';
import { pvDirectory } from '../mount/volume-path.js';

export interface Verdict {
  /** Why the object is refused; undefined: allowed. */
  denied?: string;
  /** Shown to whoever applied it, for what works but not as they may expect. */
  warnings: string[];
}

/** The metadata engines juicefs registers (pkg/meta); an address with no scheme is Redis, as juicefs reads it. */
const META_SCHEMES = new Set([
  'redis',
  'rediss',
  'unix',
  'mysql',
  'postgres',
  'sqlite3',
  'badger',
  'etcd',
  'fdb',
  'memkv',
  'tikv',
]);

/** Why a metaurl is not one juicefs can open, or undefined. */
export function metaurlProblem(metaurl: string): string | undefined {
  if (metaurl.trim() !== metaurl || /\s/.test(metaurl)) return 'metaurl has white space in it';
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(metaurl);
  if (!m) return metaurl.includes('://') ? 'metaurl has no scheme' : undefined;
  if (!META_SCHEMES.has(m[1]))
    return `metaurl scheme "${m[1]}" is no metadata engine of juicefs (${[...META_SCHEMES].join(', ')})`;
  if (metaurl.length === m[0].length) return 'metaurl names no address after its scheme';
  return undefined;
}

/** A JuiceFS Secret, as the admin stores it (data base64, stringData plain, as the API server merges them). */
export function validateSecret(secret: V1Secret): Verdict {
  const warnings: string[] = [];
  const data: Record<string, string> = { ...secret.data };
  for (const [k, v] of Object.entries(secret.stringData ?? {})) data[k] = Buffer.from(v, 'utf8').toString('base64');
  const where = `Secret ${secret.metadata?.namespace ?? ''}/${secret.metadata?.name ?? ''}`;
  const unfit = unfitSourceSecret({
    namespace: secret.metadata?.namespace ?? '',
    name: secret.metadata?.name ?? '',
    type: secret.type,
    data,
  });
  if (unfit) return { denied: unfit, warnings };
  const text = (key: string) => (data[key] === undefined ? undefined : Buffer.from(data[key], 'base64').toString());
  const metaurl = text(SECRET_KEYS.metaurl);
  if (metaurl === undefined) {
    warnings.push(`${where} is an Enterprise Edition Secret (token): jfs-sidecar does not mount those yet`);
  } else {
    const problem = metaurlProblem(metaurl);
    if (problem) return { denied: `${where}: ${problem}`, warnings };
  }
  try {
    // Refuses what does not parse and any variable off the client's allow-list (src/contract/client-env.ts).
    parseEnvs(text(SECRET_KEYS.envs));
  } catch (err) {
    if (err instanceof SecretFormatError) return { denied: `${where}: ${err.message}`, warnings };
    throw err;
  }
  const configs = text('configs');
  if (configs !== undefined)
    warnings.push(`${where}: "configs" (files mounted into the client) is not supported by jfs-sidecar yet; ignored`);
  return { warnings };
}

/**
 * A new PV of this driver: refused when another PV already has its volumeHandle (two PVs of one handle share one
 * Mount Pod and one set of references, so deleting either unmounts the other's pods) or when its directory escapes
 * the volume; a setting the mount will refuse is a warning now rather than a surprise at the first pod.
 */
export function validatePv(pv: V1PersistentVolume, existing: readonly V1PersistentVolume[]): Verdict {
  const warnings: string[] = [];
  const csi = pv.spec?.csi;
  if (csi?.driver !== CSI_DRIVER_NAME) return { warnings };
  const name = pv.metadata?.name ?? '';
  const twin = existing.find(
    (o) =>
      o.spec?.csi?.driver === CSI_DRIVER_NAME &&
      o.spec.csi.volumeHandle === csi.volumeHandle &&
      o.metadata?.name !== name,
  );
  if (twin)
    return {
      denied:
        `PersistentVolume ${name}: volumeHandle "${csi.volumeHandle}" is already PersistentVolume ` +
        `${twin.metadata?.name}'s; give each PV its own handle`,
      warnings,
    };
  try {
    pvDirectory(pv);
  } catch (err) {
    if (err instanceof SubdirError) return { denied: `PersistentVolume ${name}: ${err.message}`, warnings };
    throw err;
  }
  try {
    parseVolumeAttributes(csi.volumeAttributes ?? {});
  } catch (err) {
    if (err instanceof AttributeError)
      warnings.push(`PersistentVolume ${name}: ${err.message}; pods using it will be refused`);
    else throw err;
  }
  return { warnings };
}
