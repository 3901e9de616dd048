// Comparing what the API server stored with what a golden file says. The
// server adds defaults (imagePullPolicy, terminationMessagePath, …) and the
// ServiceAccount token volume; everything the golden file states must be there
// exactly, and lists must have exactly the golden items, in order.
import type { V1Container, V1Pod } from '@kubernetes/client-node';

/** The first place where `actual` does not contain `expected`, or undefined. */
export function findMismatch(expected: unknown, actual: unknown, at = ''): string | undefined {
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return `${at}: expected a list, got ${JSON.stringify(actual)}`;
    if (actual.length !== expected.length) {
      return `${at}: expected ${expected.length} items, got ${actual.length} (${JSON.stringify(actual.map((a) => (a as { name?: string })?.name ?? a))})`;
    }
    for (let i = 0; i < expected.length; i++) {
      const m = findMismatch(expected[i], actual[i], `${at}[${i}]`);
      if (m) return m;
    }
    return undefined;
  }
  if (expected !== null && typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object')
      return `${at}: expected an object, got ${JSON.stringify(actual)}`;
    for (const [k, v] of Object.entries(expected)) {
      const m = findMismatch(v, (actual as Record<string, unknown>)[k], `${at}.${k}`);
      if (m) return m;
    }
    return undefined;
  }
  return expected === actual ? undefined : `${at}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`;
}

const isTokenVolume = (name: string) => name.startsWith('kube-api-access-');

/** The pod without what the ServiceAccount admission plugin adds. */
export function withoutServiceAccountToken(pod: V1Pod): V1Pod {
  const copy = structuredClone(pod);
  const spec = copy.spec!;
  spec.volumes = spec.volumes?.filter((v) => !isTokenVolume(v.name));
  const strip = (c: V1Container) => {
    c.volumeMounts = c.volumeMounts?.filter((m) => !isTokenVolume(m.name));
    if (c.volumeMounts?.length === 0) delete c.volumeMounts;
  };
  spec.containers.forEach(strip);
  spec.initContainers?.forEach(strip);
  if (spec.volumes?.length === 0) delete spec.volumes;
  return copy;
}
