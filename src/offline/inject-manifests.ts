// Offline injection (like `istioctl kube-inject`): multi-document YAML in,
// the same documents out, in order, with every pod and pod template injected.
import type { KubernetesObject, V1Pod, V1PodTemplateSpec } from '@kubernetes/client-node';
import { parseAllDocuments, stringify } from 'yaml';
import { DenyError } from '../contract/deny.js';
import type { InjectOptions, InjectOutcome } from '../inject/types.js';
import { injectWithView } from '../inject/inject-with-view.js';
import { ObjectView } from '../resolve/object-view.js';

export class ManifestError extends Error {
  override name = 'ManifestError';
}

export function parseManifests(text: string, source: string): KubernetesObject[] {
  const out: KubernetesObject[] = [];
  parseAllDocuments(text).forEach((doc, i) => {
    if (doc.errors.length) throw new ManifestError(`${source}: document ${i + 1}: ${doc.errors[0].message}`);
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) return;
    if (typeof value !== 'object' || Array.isArray(value))
      throw new ManifestError(`${source}: document ${i + 1} is not an object`);
    const obj = value as KubernetesObject;
    if (obj.kind === 'List' && Array.isArray((obj as { items?: unknown }).items)) {
      out.push(...(obj as { items: KubernetesObject[] }).items);
    } else out.push(obj);
  });
  return out;
}

/** Where a workload keeps its pod template. */
export function podTemplateOf(obj: KubernetesObject): V1PodTemplateSpec | undefined {
  const spec = (obj as { spec?: Record<string, unknown> }).spec;
  switch (obj.kind) {
    case 'Deployment':
    case 'StatefulSet':
    case 'DaemonSet':
    case 'ReplicaSet':
    case 'Job':
    case 'ReplicationController':
    case 'PodTemplate':
      return (obj.kind === 'PodTemplate' ? (obj as { template?: V1PodTemplateSpec }).template : spec?.template) as
        V1PodTemplateSpec | undefined;
    case 'CronJob':
      return (spec?.jobTemplate as { spec?: { template?: V1PodTemplateSpec } } | undefined)?.spec?.template;
    default:
      return undefined;
  }
}

/** How a denial names the object: `Kind namespace/name`. */
export function describeObject(obj: KubernetesObject): string {
  const m = obj.metadata ?? {};
  return `${obj.kind} ${m.namespace ? `${m.namespace}/` : ''}${m.name ?? m.generateName ?? '<unnamed>'}`;
}

export interface ObjectResult {
  object: KubernetesObject;
  outcome?: InjectOutcome;
}

/**
 * Injects every pod and pod template; other objects pass through unchanged.
 * A denial throws DenyError with the workload named in its message.
 */
export function injectObjects(objects: KubernetesObject[], options: InjectOptions): ObjectResult[] {
  const view = new ObjectView(objects);
  return objects.map((object) => {
    const namespace = object.metadata?.namespace ?? 'default';
    if (object.kind === 'Pod') {
      const outcome = run(object, object, namespace, view, options);
      return { object: outcome.kind === 'injected' ? outcome.pod : object, outcome };
    }
    const template = podTemplateOf(object);
    if (!template) return { object };
    const pod: V1Pod = { metadata: { ...(template.metadata ?? {}), namespace }, spec: template.spec };
    const outcome = run(object, pod, namespace, view, options);
    if (outcome.kind !== 'injected') return { object, outcome };
    const copy = structuredClone(object);
    const target = podTemplateOf(copy)!;
    const { namespace: _ns, ...metadata } = outcome.pod.metadata ?? {};
    target.metadata = metadata;
    target.spec = outcome.pod.spec;
    return { object: copy, outcome };
  });
}

function run(
  object: KubernetesObject,
  pod: V1Pod,
  namespace: string,
  view: ObjectView,
  options: InjectOptions,
): InjectOutcome {
  try {
    return injectWithView(pod, namespace, view, options);
  } catch (err) {
    if (err instanceof DenyError) throw new DenyError(err.code, `${describeObject(object)}: ${err.message}`);
    throw err;
  }
}

export function stringifyManifests(objects: KubernetesObject[]): string {
  return objects.map((o) => stringify(o, { lineWidth: 0, aliasDuplicateObjects: false })).join('---\n');
}
