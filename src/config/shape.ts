// Structural checks of Kubernetes objects written in the ConfigMap (probes, lifecycle, volumes, containers, DNS
// config), driven by @kubernetes/client-node's own type maps: an unknown field anywhere inside is named, where the
// reference driver's YAML decoding drops it without a word.
import * as k8s from '@kubernetes/client-node';

interface Attribute {
  baseName: string;
  type: string;
  format?: string;
}
type Model = { getAttributeTypeMap(): Attribute[] };

function modelOf(type: string): Model | undefined {
  const candidate = (k8s as unknown as Record<string, unknown>)[type];
  if (typeof candidate === 'function' && 'getAttributeTypeMap' in candidate) return candidate as unknown as Model;
  return undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Problems of `value` as the named client-node type (`V1Probe`, `Array<V1Volume>`, …), each naming its path. */
export function shapeProblems(value: unknown, type: string, where: string): string[] {
  const out: string[] = [];
  check(value, type, where, out);
  return out;
}

function check(value: unknown, type: string, where: string, out: string[]): void {
  if (value === null || value === undefined) return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    if (!Array.isArray(value)) {
      out.push(`${where}: expected a list`);
      return;
    }
    value.forEach((v, i) => check(v, array[1], `${where}[${i}]`, out));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (!isRecord(value)) {
      out.push(`${where}: expected a map`);
      return;
    }
    for (const [k, v] of Object.entries(value)) check(v, map[1], `${where}.${k}`, out);
    return;
  }
  switch (type) {
    case 'string':
      if (typeof value !== 'string') out.push(`${where}: expected a string`);
      return;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) out.push(`${where}: expected a number`);
      return;
    case 'boolean':
      if (typeof value !== 'boolean') out.push(`${where}: expected true or false`);
      return;
    case 'IntOrString':
      if (typeof value !== 'string' && typeof value !== 'number') out.push(`${where}: expected a number or a string`);
      return;
    case 'Date':
    case 'any':
    case 'object':
      return;
  }
  const model = modelOf(type);
  if (!model) return;
  if (!isRecord(value)) {
    out.push(`${where}: expected a map`);
    return;
  }
  const attributes = model.getAttributeTypeMap();
  for (const [k, v] of Object.entries(value)) {
    const attr = attributes.find((a) => a.baseName === k);
    if (!attr) out.push(`${where}.${k}: unknown field`);
    else check(v, attr.type, `${where}.${k}`, out);
  }
}
