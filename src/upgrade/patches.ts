// The writes of an in-place upgrade, as JSON patches diffed with fast-json-patch and led by `test`
// preconditions (the pod is the one observed: same UID, and for status the same resourceVersion). Pure.
import type { V1Container, V1Pod, V1PodCondition } from '@kubernetes/client-node';
import fjp, { type Operation } from 'fast-json-patch';
import { ANNOTATION_UPGRADE, UPGRADE_READY_CONDITION } from './types.js';

/**
 * The client containers' new images (the only spec change the after-admission policy lets the upgrader make,
 * ADR 0006), and the annotation naming the upgrade.
 */
export function imagePatch(pod: V1Pod, images: Record<string, string>, upgradeName: string): Operation[] {
  const spec = pod.spec!;
  const swap = (cs: V1Container[]) => cs.map((c) => (images[c.name] ? { ...c, image: images[c.name] } : c));
  const before = {
    metadata: { annotations: pod.metadata?.annotations ?? {} },
    spec: { initContainers: spec.initContainers ?? [], containers: spec.containers },
  };
  const after = {
    metadata: { annotations: { ...before.metadata.annotations, [ANNOTATION_UPGRADE]: upgradeName } },
    spec: { initContainers: swap(before.spec.initContainers), containers: swap(spec.containers) },
  };
  // An absent annotations map must be created whole: a diff would add a key under a missing parent.
  const ops = pod.metadata?.annotations
    ? fjp.compare(before, after)
    : [
        { op: 'add' as const, path: '/metadata/annotations', value: after.metadata.annotations },
        ...fjp.compare({ spec: before.spec }, { spec: after.spec }),
      ];
  return [{ op: 'test', path: '/metadata/uid', value: pod.metadata?.uid }, ...ops];
}

/** The readiness gate's condition set to `ready` (pods/status), unless it says so already: then []. */
export function gatePatch(pod: V1Pod, ready: boolean, reason: string, message: string, now: Date): Operation[] {
  const conditions = pod.status?.conditions ?? [];
  const status = ready ? 'True' : 'False';
  const old = conditions.find((c) => c.type === UPGRADE_READY_CONDITION);
  if (old?.status === status) return [];
  const next: V1PodCondition = {
    type: UPGRADE_READY_CONDITION,
    status,
    reason,
    message,
    // The API carries times as RFC 3339 strings; the generated type says Date.
    lastTransitionTime: now.toISOString() as unknown as Date,
  };
  const after = old ? conditions.map((c) => (c === old ? next : c)) : [...conditions, next];
  const tests: Operation[] = [
    { op: 'test', path: '/metadata/uid', value: pod.metadata?.uid },
    { op: 'test', path: '/metadata/resourceVersion', value: pod.metadata?.resourceVersion },
  ];
  if (!pod.status?.conditions) return [...tests, { op: 'add', path: '/status/conditions', value: after }];
  return [...tests, ...fjp.compare({ status: { conditions } }, { status: { conditions: after } })];
}
