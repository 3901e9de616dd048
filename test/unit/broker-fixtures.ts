// What the broker's unit tests share: the golden broker case's objects, the pod the injector makes from them (as the
// API server keeps it: a uid, the default ServiceAccount) and a TokenReview of a token bound to that pod.
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import type { TokenReviewResult } from '../../src/controller/broker-decision.js';
import type { InjectOptions } from '../../src/inject/types.js';
import { injectObjects, parseManifests } from '../../src/offline/inject-manifests.js';

export const BROKER_POD_UID = '11111111-2222-3333-4444-555555555555';

/** test/testdata/broker.yaml, parsed. */
export function brokerObjects(): KubernetesObject[] {
  return parseManifests(readFileSync(new URL('../testdata/broker.yaml', import.meta.url), 'utf8'), 'broker.yaml');
}

/** The injected pod of those objects, with the uid and ServiceAccount the API server gives it. */
export function injectedBrokerPod(objs: KubernetesObject[], options: Omit<InjectOptions, 'mode'>): V1Pod {
  const [result] = injectObjects(objs, { mode: 'sidecar', ...options }).filter((r) => r.object.kind === 'Pod');
  const pod = structuredClone(result.object) as V1Pod;
  pod.metadata!.uid = BROKER_POD_UID;
  pod.spec!.serviceAccountName = 'default';
  return pod;
}

/** A valid review of a broker-audience token bound to that pod. */
export function brokerReview(over: Partial<TokenReviewResult> = {}): TokenReviewResult {
  return {
    authenticated: true,
    audiences: ['juicefs.com/credentials'],
    user: {
      username: 'system:serviceaccount:team-a:default',
      extra: {
        'authentication.kubernetes.io/pod-name': ['app'],
        'authentication.kubernetes.io/pod-uid': [BROKER_POD_UID],
      },
    },
    ...over,
  };
}
