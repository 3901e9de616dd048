// The migration check (`jfs-sidecar check`): a JuiceFS CSI Driver user's objects (the global ConfigMap,
// StorageClasses, PVs, PVCs, Secrets, a left-behind juicefs-admission-webhook) → per object and field, whether it
// is honoured here, honoured with a difference, or refused, and why. Every answer comes from the tables the product
// runs on: CONFIG_FIELDS / ENTRY_FIELDS and the parser's issues (src/config/schema.ts), the settings table
// (src/contract/attributes.ts), the option table (src/mount/mount-options.ts) and the Secret keys
// (src/contract/keys.ts, secret-copy.ts). Pure: objects in, rows out.
import { pvDirectory } from '../mount/volume-path.js';
import type {
  KubernetesObject,
  V1ConfigMap,
  V1MutatingWebhookConfiguration,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Secret,
  V1StorageClass,
} from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import {
  CONFIG_FIELDS,
  ConfigError,
  ENTRY_FIELDS,
  parseGlobalConfig,
  type FieldSpec,
  type FieldStatus,
} from '../config/schema.js';
import { ATTRIBUTE_SPECS, AttributeError, USER_KEYS } from '../contract/attributes.js';
import {
  CONFIG_MAP_KEY,
  CONFIG_MAP_NAME,
  CSI_DRIVER_NAME as DRIVER_NAME,
  JUICEFS_KEY_PREFIX,
  SECRET_KEYS,
} from '../contract/keys.js';
import { FORMAT_SECRET_KEYS, SECRET_KEY_ALIASES } from '../contract/secret-copy.js';
import { DROPPED_OPTIONS, optionKind, parseOption, READ_ONLY_KEYS } from '../mount/mount-options.js';

export interface CheckRow {
  /** `Kind namespace/name`. */
  object: string;
  field: string;
  status: FieldStatus;
  note: string;
}

/** The reference driver's webhook configuration; left in place it would inject its own sidecar beside ours. */
export const REFERENCE_WEBHOOK_NAME = 'juicefs-admission-webhook';

const WHERE = {
  both: 'sidecar and Mount Pod',
  'mount-pod': 'Mount Pod',
  sidecar: 'sidecar',
  selection: 'selects entries',
  config: 'webhook, controller, node',
} as const;

function describe(o: KubernetesObject): string {
  const ns = o.metadata?.namespace;
  return `${o.kind} ${ns ? `${ns}/` : ''}${o.metadata?.name ?? '?'}`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A field's row from its spec and the value written (a switch's refusal or difference depends on the value). */
function specRow(object: string, field: string, s: FieldSpec, value: unknown): CheckRow {
  const refused = s.refuse?.(value);
  if (refused) return { object, field, status: 'refused', note: refused };
  const differs = s.differs?.(value);
  if (differs) return { object, field, status: 'differs', note: `${WHERE[s.appliesTo]}: ${differs}` };
  return { object, field, status: s.status, note: `${WHERE[s.appliesTo]}: ${s.note}` };
}

function checkConfigMap(cm: V1ConfigMap): CheckRow[] {
  const object = describe(cm);
  const rows: CheckRow[] = [];
  for (const key of Object.keys({ ...cm.data, ...cm.binaryData })) {
    if (key !== CONFIG_MAP_KEY)
      rows.push({ object, field: `data.${key}`, status: 'refused', note: `only ${CONFIG_MAP_KEY} is read` });
  }
  const text = cm.data?.[CONFIG_MAP_KEY];
  if (text === undefined) return rows;
  let config;
  let raw: unknown;
  try {
    config = parseGlobalConfig(text);
    raw = parseYaml(text);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return [
      ...rows,
      { object, field: CONFIG_MAP_KEY, status: 'refused', note: `${err.message}: nothing of it applies` },
    ];
  }
  if (!isRecord(raw)) return rows;
  const issueAt = (path: string) => config.issues.find((i) => i.path === path);
  for (const [key, value] of Object.entries(raw)) {
    const s = CONFIG_FIELDS[key];
    if (!s) {
      rows.push({ object, field: key, status: 'refused', note: issueAt(key)?.message ?? 'unknown field' });
      continue;
    }
    const invalid = issueAt(key);
    if (invalid && !s.refuse?.(value)) rows.push({ object, field: key, status: 'refused', note: invalid.message });
    else if (key !== 'mountPodPatch') rows.push(specRow(object, key, s, value));
  }
  const entries = Array.isArray(raw.mountPodPatch) ? (raw.mountPodPatch as unknown[]) : [];
  entries.forEach((entry, i) => {
    const refusal = config.issues.find((x) => x.entry === i && x.effect === 'entry-refused');
    if (!isRecord(entry)) {
      rows.push({
        object,
        field: `mountPodPatch[${i}]`,
        status: 'refused',
        note: refusal?.message ?? 'expected a map',
      });
      return;
    }
    for (const [key, value] of Object.entries(entry)) {
      const field = `mountPodPatch[${i}].${key}`;
      const s = (ENTRY_FIELDS as Record<string, FieldSpec | undefined>)[key];
      if (refusal) {
        const own =
          refusal.path === field || refusal.path.startsWith(`${field}.`) || refusal.path.startsWith(`${field}[`);
        rows.push({
          object,
          field,
          status: 'refused',
          note: own ? refusal.message : `the entry is refused (${refusal.path}), so this is not applied either`,
        });
      } else if (s) rows.push(specRow(object, field, s, value));
    }
  });
  return rows;
}

/** A per-volume setting (PV volumeAttributes, StorageClass parameters) by the settings table. */
function attributeRow(object: string, field: string, key: string, value: string, where: 'pv' | 'sc'): CheckRow {
  const s = ATTRIBUTE_SPECS.find((a) => a.key === key);
  if (key.startsWith('csi.storage.k8s.io/'))
    return {
      object,
      field,
      status: 'honoured',
      note: 'CSI secret reference (csi-provisioner, the webhook, the controller)',
    };
  if (!s) {
    return {
      object,
      field,
      status: 'refused',
      note: key.startsWith(JUICEFS_KEY_PREFIX)
        ? 'no such volume setting here (the settings table, README "Volume settings"): it is ignored'
        : 'not a JuiceFS setting: it is ignored',
    };
  }
  if (where === 'pv' && s.writtenIn === 'storage-class')
    return { object, field, status: 'refused', note: `${key} is read from StorageClasses only` };
  try {
    s.parse(value);
  } catch (err) {
    if (err instanceof AttributeError) return { object, field, status: 'refused', note: `invalid: ${err.message}` };
    throw err;
  }
  return { object, field, status: 'honoured', note: s.summary };
}

function optionRows(object: string, prefix: string, options: string[]): CheckRow[] {
  return options.map((text, i) => {
    const field = `${prefix}[${i}] ${text}`;
    const parsed = parseOption(text);
    if (typeof parsed === 'string') return { object, field, status: 'refused', note: parsed };
    if (READ_ONLY_KEYS.has(parsed.key)) return { object, field, status: 'honoured', note: 'a read-only mount' };
    const kind = optionKind(parsed.key);
    if (kind === 'dropped' || DROPPED_OPTIONS.has(parsed.key))
      return { object, field, status: 'differs', note: 'dropped, as mount.juicefs drops it' };
    if (kind === 'unknown')
      return {
        object,
        field,
        status: 'refused',
        note: `no flag of juicefs mount (the volume is denied until it is fixed)`,
      };
    return {
      object,
      field,
      status: 'honoured',
      note: kind === 'flag' ? `juicefs mount --${parsed.key}` : 'a FUSE option (-o)',
    };
  });
}

function checkStorageClass(sc: V1StorageClass): CheckRow[] {
  const object = describe(sc);
  const rows: CheckRow[] = [
    { object, field: 'provisioner', status: 'honoured', note: `${DRIVER_NAME}: CreateVolume makes the PV's directory` },
  ];
  for (const [key, value] of Object.entries(sc.parameters ?? {}))
    rows.push(attributeRow(object, `parameters.${key}`, key, value, 'sc'));
  rows.push(...optionRows(object, 'mountOptions', sc.mountOptions ?? []));
  if (sc.reclaimPolicy)
    rows.push({
      object,
      field: 'reclaimPolicy',
      status: 'honoured',
      note: 'Delete removes the directory, Retain keeps it',
    });
  if (sc.volumeBindingMode)
    rows.push({
      object,
      field: 'volumeBindingMode',
      status: 'honoured',
      note: 'WaitForFirstConsumer: an unbound PVC is injected from its StorageClass',
    });
  if (sc.allowVolumeExpansion !== undefined)
    rows.push({
      object,
      field: 'allowVolumeExpansion',
      status: 'honoured',
      note: 'ControllerExpandVolume raises the quota',
    });
  return rows;
}

function checkPv(pv: V1PersistentVolume): CheckRow[] {
  const object = describe(pv);
  const csi = pv.spec!.csi!;
  const rows: CheckRow[] = [
    { object, field: 'spec.csi.volumeHandle', status: 'honoured', note: 'the volume id (Mount Pod, templates)' },
  ];
  if (csi.nodePublishSecretRef)
    rows.push({ object, field: 'spec.csi.nodePublishSecretRef', status: 'honoured', note: "the volume's Secret" });
  if (csi.fsType)
    rows.push({ object, field: 'spec.csi.fsType', status: 'honoured', note: 'the file system type (juicefs)' });
  if (csi.readOnly !== undefined)
    rows.push({ object, field: 'spec.csi.readOnly', status: 'honoured', note: 'read-only mount' });
  for (const [key, value] of Object.entries(csi.volumeAttributes ?? {}))
    rows.push(attributeRow(object, `spec.csi.volumeAttributes.${key}`, key, value, 'pv'));
  rows.push(...optionRows(object, 'spec.mountOptions', pv.spec?.mountOptions ?? []));
  if (pv.spec?.accessModes)
    rows.push({ object, field: 'spec.accessModes', status: 'honoured', note: 'ReadOnlyMany alone mounts read-only' });
  rows.push(directoryRow(object, pv));
  return rows;
}

/** Where the PV's data lies, as its mount and the controller (expansion, DeleteVolume) find it. */
function directoryRow(object: string, pv: V1PersistentVolume): CheckRow {
  let dir: string | undefined;
  try {
    dir = pvDirectory(pv);
  } catch (err) {
    return { object, field: 'directory', status: 'refused', note: (err as Error).message };
  }
  if (!dir) return { object, field: 'directory', status: 'honoured', note: 'mounts the volume root; never deleted' };
  const reclaim = pv.spec?.persistentVolumeReclaimPolicy ?? 'Retain';
  return {
    object,
    field: 'directory',
    status: 'honoured',
    note:
      `data at /${dir} (subPath under the subdir option), with or without a record of this controller: expansion ` +
      `sets the quota there` +
      (reclaim === 'Delete'
        ? '; deleting the PVC removes it unless another PV mounts it'
        : `; reclaim ${reclaim} keeps it`),
  };
}

function checkPvc(pvc: V1PersistentVolumeClaim): CheckRow[] {
  const object = describe(pvc);
  const rows: CheckRow[] = [];
  if (Object.keys(pvc.metadata?.labels ?? {}).length)
    rows.push({
      object,
      field: 'metadata.labels',
      status: 'honoured',
      note: 'matched by pvcSelector (an entry selected by them sets only bounded resources, ADR 0005)',
    });
  for (const key of Object.keys(pvc.metadata?.annotations ?? {})) {
    if (!key.startsWith(JUICEFS_KEY_PREFIX)) continue;
    rows.push(
      USER_KEYS.includes(key)
        ? {
            object,
            field: `metadata.annotations.${key}`,
            status: 'honoured',
            note: 'user tuning, within annotationBounds',
          }
        : {
            object,
            field: `metadata.annotations.${key}`,
            status: 'refused',
            note: 'a namespace user may tune only resources, within annotationBounds (the reference lets PVC annotations override the image and more)',
          },
    );
  }
  return rows;
}

function checkSecret(secret: V1Secret): CheckRow[] {
  const object = describe(secret);
  const known = new Set<string>(Object.values(SECRET_KEYS));
  return Object.keys({ ...secret.data, ...secret.stringData }).map((key) => {
    const field = `data.${key}`;
    if (key === SECRET_KEYS.token)
      return { object, field, status: 'refused', note: 'Enterprise Edition (token) volumes are not supported here' };
    if (known.has(key)) return { object, field, status: 'honoured', note: 'read by the client or its format step' };
    if (SECRET_KEY_ALIASES[key])
      return { object, field, status: 'honoured', note: `read as ${SECRET_KEY_ALIASES[key]}` };
    if ((FORMAT_SECRET_KEYS as readonly string[]).includes(key))
      return { object, field, status: 'honoured', note: `juicefs format --${key} (through env, never argv)` };
    return { object, field, status: 'refused', note: 'not a key the client reads here: it is ignored' };
  });
}

function checkWebhookConfig(w: V1MutatingWebhookConfiguration): CheckRow[] {
  const failing = (w.webhooks ?? []).filter((h) => (h.failurePolicy ?? 'Fail') === 'Fail').map((h) => h.name);
  return [
    {
      object: describe(w),
      field: 'webhooks',
      status: 'refused',
      note:
        "the reference driver's sidecar webhook: delete it before enabling this one, or both inject into the same pods" +
        (failing.length
          ? `; with failurePolicy Fail (${failing.join(', ')}), once its Service is gone it blocks every pod CREATE ` +
            'in the namespaces it selects'
          : ''),
    },
  ];
}

/** Whether an object is one a JuiceFS CSI user's migration concerns. */
function relevant(o: KubernetesObject): boolean {
  switch (o.kind) {
    case 'ConfigMap':
      return o.metadata?.name === CONFIG_MAP_NAME;
    case 'StorageClass':
      return (o as V1StorageClass).provisioner === DRIVER_NAME;
    case 'PersistentVolume':
      return (o as V1PersistentVolume).spec?.csi?.driver === DRIVER_NAME;
    case 'PersistentVolumeClaim':
    case 'Secret':
      return true;
    case 'MutatingWebhookConfiguration':
      return o.metadata?.name === REFERENCE_WEBHOOK_NAME;
    default:
      return false;
  }
}

/** Rows of every relevant object, in input order; other objects are not listed. */
export function checkObjects(objects: KubernetesObject[]): CheckRow[] {
  return objects.filter(relevant).flatMap((o) => {
    switch (o.kind) {
      case 'ConfigMap':
        return checkConfigMap(o);
      case 'StorageClass':
        return checkStorageClass(o as V1StorageClass);
      case 'PersistentVolume':
        return checkPv(o);
      case 'PersistentVolumeClaim':
        return checkPvc(o);
      case 'Secret':
        return checkSecret(o);
      default:
        return checkWebhookConfig(o);
    }
  });
}

/** The rows as a table (fixed columns, the note last). */
export function renderCheckTable(rows: CheckRow[]): string {
  const head = { object: 'OBJECT', field: 'FIELD', status: 'STATUS', note: 'NOTE' };
  const width = (k: 'object' | 'field' | 'status') => Math.max(head[k].length, ...rows.map((r) => r[k].length));
  const [wo, wf, ws] = [width('object'), width('field'), width('status')];
  const line = (r: CheckRow | typeof head) =>
    `${r.object.padEnd(wo)}  ${r.field.padEnd(wf)}  ${r.status.padEnd(ws)}  ${r.note}`.trimEnd();
  return [line(head), ...rows.map(line)].join('\n') + '\n';
}
