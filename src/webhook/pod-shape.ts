// Whether a value has the shape of a V1Pod, field by field, from the
// attribute type maps @kubernetes/client-node generates from the API's
// OpenAPI (the same source the API server's own decoder follows). The API
// server never sends a pod of the wrong shape; anyone else may, and the
// injector is written for typed pods (`metadata.labels` a map, `spec.volumes`
// a list). A wrong-typed field is a well-formed denial here, not a TypeError
// in the injector. Unknown fields are left alone (a newer API server may send
// fields this client does not know); null is accepted only for timestamps,
// which Go serialises as null when unset (`creationTimestamp: null`).
import * as k8s from '@kubernetes/client-node';

interface Attribute {
  baseName: string;
  type: string;
}

const models = k8s as unknown as Record<string, { getAttributeTypeMap?: () => Attribute[] } | undefined>;

function attributesOf(type: string): Attribute[] | undefined {
  const model = models[type];
  return typeof model?.getAttributeTypeMap === 'function' ? model.getAttributeTypeMap() : undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const describe = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'a list' : `a ${typeof v}`);

/** `Array<T>` and `{ [key: string]: T; }` type names, parsed once per name: this runs on every admission. */
const containers = new Map<string, { list?: string; map?: string }>();

function containerOf(type: string): { list?: string; map?: string } {
  let parsed = containers.get(type);
  if (!parsed) {
    parsed = {
      list: /^Array<(.+)>$/.exec(type)?.[1],
      map: /^\{ \[key: string\]: (.+); \}$/.exec(type)?.[1],
    };
    containers.set(type, parsed);
  }
  return parsed;
}

/** The first field of `value` not of the OpenAPI type `type`, as "path must be …, not …"; undefined when none. */
export function shapeError(value: unknown, type: string, path: string): string | undefined {
  const { list, map } = containerOf(type);
  if (list !== undefined) {
    if (!Array.isArray(value)) return `${path} must be a list, not ${describe(value)}`;
    for (let i = 0; i < value.length; i++) {
      const err = shapeError(value[i], list, `${path}[${i}]`);
      if (err) return err;
    }
    return undefined;
  }
  if (map !== undefined) {
    if (!isRecord(value)) return `${path} must be a map, not ${describe(value)}`;
    for (const [k, v] of Object.entries(value)) {
      const err = shapeError(v, map, `${path}[${JSON.stringify(k)}]`);
      if (err) return err;
    }
    return undefined;
  }
  switch (type) {
    case 'string':
    case 'boolean':
      return typeof value === type ? undefined : `${path} must be a ${type}, not ${describe(value)}`;
    case 'number':
      return typeof value === 'number' && Number.isFinite(value)
        ? undefined
        : `${path} must be a number, not ${describe(value)}`;
    case 'Date':
      return typeof value === 'string' || value === null
        ? undefined
        : `${path} must be a timestamp string, not ${describe(value)}`;
    case 'IntOrString':
      return typeof value === 'string' || typeof value === 'number'
        ? undefined
        : `${path} must be a number or a string, not ${describe(value)}`;
    case 'any':
    case 'object':
      return undefined;
  }
  const attributes = attributesOf(type);
  if (!attributes) return undefined; // a type this client does not model: nothing to check against
  if (!isRecord(value)) return `${path} must be an object, not ${describe(value)}`;
  for (const a of attributes) {
    const v = value[a.baseName];
    if (v === undefined) continue;
    const err = shapeError(v, a.type, `${path}.${a.baseName}`);
    if (err) return err;
  }
  return undefined;
}

/** Why `object` is not a pod the injector can read, or undefined. */
export function podShapeError(object: unknown, path = 'request.object'): string | undefined {
  return shapeError(object, 'V1Pod', path);
}
