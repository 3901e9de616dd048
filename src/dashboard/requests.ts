// The bodies of the dashboard's write requests, checked before anything is sent to the API server: a bad
// body is a 400 with what is wrong, never a crash and never a half-made object. Pure. The API server's own
// schema of the upgrade CRD checks the rest (its refusal is passed on as it is).
import type { UpgradeSelector, UpgradeSpec, UpgradeStrategy } from '../upgrade/types.js';
import { UPGRADE_KINDS, type UpgradeKind } from '../upgrade/types.js';
import { UserFacingError } from './user-api.js';

const bad = (message: string) => new UserFacingError(400, message);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
/** An image reference: no spaces or control characters (the API server checks the rest when the pod is patched). */
const IMAGE = /^[^\s\p{Cc}]{1,512}$/u;

function stringList(v: unknown, what: string): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x.length > 0))
    throw bad(`${what} must be a list of names`);
  return v as string[];
}

function selectorOf(v: unknown): UpgradeSelector | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v)) throw bad('selector must be an object');
  const out: UpgradeSelector = {};
  const namespaces = stringList(v.namespaces, 'selector.namespaces');
  if (namespaces) out.namespaces = namespaces;
  const pvcNames = stringList(v.pvcNames, 'selector.pvcNames');
  if (pvcNames) out.pvcNames = pvcNames;
  const storageClassNames = stringList(v.storageClassNames, 'selector.storageClassNames');
  if (storageClassNames) out.storageClassNames = storageClassNames;
  if (v.podSelector !== undefined) {
    const ps = v.podSelector;
    if (!isObject(ps)) throw bad('selector.podSelector must be a label selector');
    const labels = ps.matchLabels;
    if (labels !== undefined && (!isObject(labels) || !Object.values(labels).every((x) => typeof x === 'string')))
      throw bad('selector.podSelector.matchLabels must map label keys to strings');
    if (ps.matchExpressions !== undefined && !Array.isArray(ps.matchExpressions))
      throw bad('selector.podSelector.matchExpressions must be a list');
    out.podSelector = ps;
  }
  return out;
}

function strategyOf(v: unknown): UpgradeStrategy | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v)) throw bad('strategy must be an object');
  const out: UpgradeStrategy = {};
  const mu = v.maxUnavailable;
  if (mu !== undefined) {
    const ok =
      (typeof mu === 'number' && Number.isInteger(mu) && mu >= 1) || (typeof mu === 'string' && /^\d+%$/.test(mu));
    if (!ok) throw bad('strategy.maxUnavailable must be a whole number ≥ 1 or "N%"');
    out.maxUnavailable = mu;
  }
  if (v.partition !== undefined) {
    if (typeof v.partition !== 'number' || !Number.isInteger(v.partition) || v.partition < 0)
      throw bad('strategy.partition must be a whole number ≥ 0');
    out.partition = v.partition;
  }
  if (v.order !== undefined) {
    if (v.order !== 'name' && v.order !== 'creation') throw bad('strategy.order must be "name" or "creation"');
    out.order = v.order;
  }
  return out;
}

/** POST /api/upgrades: `{ name?, spec: { kind, target: { image } | { fromSettings: true }, selector?, strategy? } }` */
export function parseUpgradeRequest(body: unknown): { name?: string; spec: UpgradeSpec } {
  if (!isObject(body)) throw bad('the body must be a JSON object');
  const name = body.name;
  if (name !== undefined && (typeof name !== 'string' || !DNS_SUBDOMAIN.test(name)))
    throw bad('name must be a lowercase DNS name (letters, digits, "-" and ".")');
  const spec = body.spec;
  if (!isObject(spec)) throw bad('spec must be an object');
  const kind = spec.kind ?? 'sidecar';
  if (typeof kind !== 'string' || !UPGRADE_KINDS.includes(kind as UpgradeKind))
    throw bad(`spec.kind must be one of ${UPGRADE_KINDS.join(', ')}`);
  const target = spec.target;
  if (!isObject(target)) throw bad('spec.target must be an object');
  const image = target.image;
  if (image !== undefined && (typeof image !== 'string' || !IMAGE.test(image)))
    throw bad('spec.target.image must be an image reference without spaces');
  if (image === undefined && target.fromSettings !== true)
    throw bad('spec.target needs an image, or fromSettings: true (the image the settings now say)');
  const out: UpgradeSpec = {
    kind: kind as UpgradeKind,
    target: image !== undefined ? { image: image } : { fromSettings: true },
  };
  const selector = selectorOf(spec.selector);
  if (selector) out.selector = selector;
  const strategy = strategyOf(spec.strategy);
  if (strategy) out.strategy = strategy;
  if (spec.paused !== undefined) {
    if (typeof spec.paused !== 'boolean') throw bad('spec.paused must be true or false');
    out.paused = spec.paused;
  }
  return { name: name, spec: out };
}

/** PUT /api/config: `{ text, resourceVersion? }`. */
export function parseConfigRequest(body: unknown): { text: string; resourceVersion?: string } {
  if (!isObject(body)) throw bad('the body must be a JSON object');
  if (typeof body.text !== 'string') throw bad('text must be the new config.yaml, a string');
  if (body.resourceVersion !== undefined && typeof body.resourceVersion !== 'string')
    throw bad('resourceVersion must be a string');
  return { text: body.text, resourceVersion: body.resourceVersion };
}
