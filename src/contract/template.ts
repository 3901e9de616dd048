// Placeholders in StorageClass parameters and pathPattern, as JuiceFS CSI users
// write them: `${.PVC.name}` (also lowercase `${.pvc.name}`, the form the
// reference driver's docs use), `${.PVC.namespace}`, `${.PVC.labels.<key>}`,
// `${.PVC.annotations.<key>}`, and for the node a volume is provisioned for
// (WaitForFirstConsumer) `${.node.name}`, `${.node.podCIDR}`,
// `${.node.labels.<key>}`, `${.node.annotations.<key>}`.
//
// One renderer for the controller (which renders at CreateVolume into the PV's
// attributes) and the webhook (which renders an unbound PVC's StorageClass at
// admission, before the PV exists): both must get the same text.

export interface TemplateObject {
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface TemplatePvc extends TemplateObject {
  name: string;
  namespace: string;
}

export interface TemplateNode extends TemplateObject {
  name: string;
  podCIDR?: string;
}

export interface TemplateSources {
  pvc: TemplatePvc;
  /** The PVC's selected node; absent when the PVC has none (Immediate binding) or it is not known yet. */
  node?: TemplateNode;
}

export class TemplateError extends Error {
  override name = 'TemplateError';
}

// `${ .<object>.<field> }`; a label or annotation key runs to the closing brace (keys hold dots and slashes).
const PLACEHOLDER = /\$\{\s*\.(PVC|pvc|node)\.(?:(labels|annotations)\.([^}\s]+)|([A-Za-z]+))\s*\}/g;
const FIELDS = { pvc: ['name', 'namespace'], node: ['name', 'podCIDR'] } as const;

/**
 * Characters a value taken from a PVC's labels or annotations may bring into
 * the text. Those are the user's; the text is the admin's (mount options, an
 * image, a pathPattern): a `,`, `=`, `:` or space in a user's annotation would
 * add options or change an image. Label values are within this set already.
 * pathPattern also allows `/` (its result goes through the subdirectory rule).
 */
const USER_VALUE = /^[A-Za-z0-9._-]*$/;
const USER_PATH_VALUE = /^[A-Za-z0-9._/-]*$/;

export interface Placeholder {
  /** The placeholder as written. */
  text: string;
  object: 'pvc' | 'node';
  /** `name`, `namespace`, `podCIDR`, or `labels.<key>` / `annotations.<key>`. */
  field: string;
}

/** Every placeholder of a text; one that names no known field throws. */
export function placeholders(text: string): Placeholder[] {
  const out: Placeholder[] = [];
  for (const m of text.matchAll(PLACEHOLDER)) {
    const object = m[1] === 'node' ? 'node' : 'pvc';
    const field = m[2] ? `${m[2]}.${m[3]}` : m[4];
    if (!m[2] && !(FIELDS[object] as readonly string[]).includes(field)) {
      throw new TemplateError(`"${text}": ${m[0]} names no field of the ${object === 'pvc' ? 'PVC' : 'node'}`);
    }
    out.push({ text: m[0], object, field });
  }
  // Only `${.…}` is this syntax; `${HOME}` and the like are left as they are, as the reference driver does.
  const bad = /\$\{\s*\.[^}]*\}?/.exec(text.replace(PLACEHOLDER, ''));
  if (bad) throw new TemplateError(`"${text}": unknown placeholder ${bad[0]}`);
  return out;
}

function valueOf(obj: TemplateObject, fields: Record<string, string | undefined>, field: string) {
  const dot = field.indexOf('.');
  if (dot < 0) return fields[field];
  const map = field.startsWith('labels.') ? obj.labels : obj.annotations;
  return map?.[field.slice(dot + 1)];
}

function lookup(p: Placeholder, { pvc, node }: TemplateSources): string | undefined {
  if (p.object === 'pvc') return valueOf(pvc, { name: pvc.name, namespace: pvc.namespace }, p.field);
  return node && valueOf(node, { name: node.name, podCIDR: node.podCIDR }, p.field);
}

export interface RenderOptions {
  /** A placeholder with no value throws (pathPattern); otherwise it renders empty, as in the reference driver. */
  strict?: boolean;
  /** The text is a path: a PVC label or annotation value may hold `/`. */
  path?: boolean;
}

export interface Rendered {
  text: string;
  /** Placeholders that had no value (rendered empty unless strict). */
  missing: string[];
}

/**
 * Renders a text. Throws TemplateError for an unknown placeholder, a node
 * placeholder when no node is known, a user's value with characters outside
 * the safe set, or (strict) a placeholder with no value.
 */
export function renderTemplate(text: string, sources: TemplateSources, opts: RenderOptions = {}): Rendered {
  const found = placeholders(text);
  const missing: string[] = [];
  let out = text;
  for (const p of found) {
    if (p.object === 'node' && !sources.node) {
      throw new TemplateError(
        `"${text}": ${p.text} needs the node the volume is for, which is known only when the PVC has a selected ` +
          'node (a StorageClass with volumeBindingMode WaitForFirstConsumer, once the pod is scheduled)',
      );
    }
    const v = lookup(p, sources);
    if (v === undefined || v === '') {
      if (opts.strict) throw new TemplateError(`"${text}": ${p.text} has no value`);
      missing.push(p.text);
    } else if (p.object === 'pvc' && p.field.includes('.') && !(opts.path ? USER_PATH_VALUE : USER_VALUE).test(v)) {
      throw new TemplateError(
        `"${text}": ${p.text} is "${v}", which holds characters a PVC's value may not bring into this setting ` +
          `(allowed: letters, digits, ".", "_", "-"${opts.path ? ', "/"' : ''})`,
      );
    }
    out = out.split(p.text).join(v ?? '');
  }
  return { text: out, missing };
}

/** The annotation the scheduler sets on a WaitForFirstConsumer PVC: the node its pod goes to. */
export const SELECTED_NODE_ANNOTATION = 'volume.kubernetes.io/selected-node';

/** Keys the external-provisioner owns (secret references use its own `${pvc.name}` syntax; metadata it adds). */
export const PROVISIONER_KEY_PREFIX = 'csi.storage.k8s.io/';

export interface RenderedParameters {
  parameters: Record<string, string>;
  /** `<key>: <placeholder>` for every placeholder with no value (rendered empty). */
  missing: string[];
}

/**
 * A StorageClass's parameters with their placeholders rendered, as the
 * reference driver's provisioner does: every key but the provisioner's own
 * and `pathPattern` (rendered strictly, by ./path-pattern.ts, from the
 * original). A TemplateError names the key.
 */
export function renderParameters(
  parameters: Record<string, string>,
  sources: TemplateSources,
  skip: ReadonlySet<string>,
): RenderedParameters {
  const out: Record<string, string> = {};
  const missing: string[] = [];
  for (const [key, value] of Object.entries(parameters)) {
    if (key.startsWith(PROVISIONER_KEY_PREFIX) || skip.has(key)) {
      out[key] = value;
      continue;
    }
    try {
      const r = renderTemplate(value, sources);
      out[key] = r.text;
      missing.push(...r.missing.map((m) => `${key}: ${m}`));
    } catch (err) {
      if (err instanceof TemplateError) throw new TemplateError(`parameter ${key} ${err.message}`);
      throw err;
    }
  }
  return { parameters: out, missing };
}

/**
 * What rendering the parameters (the provisioner's own aside) needs: any placeholder at all, the node, the PVC
 * beyond its name and namespace. An unknown placeholder throws TemplateError naming the key.
 */
export function parametersNeed(parameters: Record<string, string>): {
  templated: boolean;
  node: boolean;
  pvcObject: boolean;
} {
  const need = { templated: false, node: false, pvcObject: false };
  for (const [key, value] of Object.entries(parameters)) {
    if (key.startsWith(PROVISIONER_KEY_PREFIX)) continue;
    let found: Placeholder[];
    try {
      found = placeholders(value);
    } catch (err) {
      if (err instanceof TemplateError) throw new TemplateError(`parameter ${key} ${err.message}`);
      throw err;
    }
    need.templated ||= found.length > 0;
    need.node ||= found.some((p) => p.object === 'node');
    need.pvcObject ||= found.some((p) => p.object === 'pvc' && p.field.includes('.'));
  }
  return need;
}

/**
 * A StorageClass's `mountOptions` with their placeholders rendered (missing values empty, as the reference driver
 * renders them), each rendered entry split at commas as the reference splits it.
 */
export function renderMountOptions(
  options: readonly string[],
  sources: TemplateSources,
): { options: string[]; missing: string[] } {
  const out: string[] = [];
  const missing: string[] = [];
  for (const option of options) {
    try {
      const r = renderTemplate(option, sources);
      out.push(
        ...r.text
          .split(',')
          .map((o) => o.trim())
          .filter((o) => o),
      );
      missing.push(...r.missing.map((m) => `mountOptions: ${m}`));
    } catch (err) {
      if (err instanceof TemplateError) throw new TemplateError(`mountOptions ${err.message}`);
      throw err;
    }
  }
  return { options: out, missing };
}

/** Whether any of a StorageClass's mountOptions is templated (an unknown placeholder throws TemplateError). */
export function mountOptionsNeed(options: readonly string[]): ReturnType<typeof parametersNeed> {
  return parametersNeed(Object.fromEntries(options.map((o, i) => [`mountOptions[${i}]`, o])));
}
