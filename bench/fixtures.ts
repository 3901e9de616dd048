// Synthetic cluster objects for the benchmarks: N PVC/PV pairs of JuiceFS
// volumes sharing one Secret, and AdmissionReviews of pods that use them.
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';

export const BENCH_NS = 'bench';

export function pairs(n: number): KubernetesObject[] {
  const out: KubernetesObject[] = [
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'juicefs-secret', namespace: 'juicefs-system' },
      data: {
        name: Buffer.from('bench').toString('base64'),
        metaurl: Buffer.from('redis://redis:6379/1').toString('base64'),
      },
    } as KubernetesObject,
  ];
  for (let i = 0; i < n; i++) {
    out.push({
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name: `pv-${i}` },
      spec: {
        capacity: { storage: '1Gi' },
        accessModes: ['ReadWriteMany'],
        storageClassName: '',
        csi: {
          driver: 'csi.juicefs.com',
          volumeHandle: `pv-${i}`,
          nodePublishSecretRef: { name: 'juicefs-secret', namespace: 'juicefs-system' },
          volumeAttributes: { subPath: `pv-${i}` },
        },
        // Pre-bound to its PVC, as after binding: the webhook admits only a PV whose claimRef names the claim.
        claimRef: { namespace: BENCH_NS, name: `pvc-${i}` },
      },
    } as KubernetesObject);
    out.push({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: `pvc-${i}`, namespace: BENCH_NS },
      spec: {
        accessModes: ['ReadWriteMany'],
        storageClassName: '',
        volumeName: `pv-${i}`,
        resources: { requests: { storage: '1Gi' } },
      },
    } as KubernetesObject);
  }
  return out;
}

export function podUsing(pvc: string, name?: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { ...(name ? { name } : { generateName: 'app-' }), namespace: BENCH_NS },
    spec: {
      containers: [{ name: 'app', image: 'busybox', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName: pvc } }],
    },
  };
}

export function reviewFor(pod: V1Pod, uid: string): string {
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      operation: 'CREATE',
      namespace: BENCH_NS,
      object: pod,
    },
  });
}

/**
 * The same pairs as the API server hands them to an informer: uid, resourceVersion, timestamps, finalizers,
 * managedFields of the writers a provisioned volume has (kubectl apply, kube-controller-manager,
 * csi-provisioner), kubectl's last-applied copy, binding annotations and status. What the cache would hold
 * without a transform (bench/run.ts compares it with the lean objects the informers keep).
 */
export function apiServerPairs(
  n: number,
  keep: (o: KubernetesObject) => KubernetesObject = (o) => o,
): KubernetesObject[] {
  const at = new Date('2026-01-01T00:00:00Z');
  const field = (manager: string, operation: string, fields: object, subresource?: string) => ({
    manager,
    operation,
    apiVersion: 'v1',
    time: at,
    fieldsType: 'FieldsV1',
    fieldsV1: fields,
    ...(subresource ? { subresource } : {}),
  });
  return pairs(n).map((o, i) => keep(shapeAsApiServer(o, i)));

  function shapeAsApiServer(o: KubernetesObject, i: number): KubernetesObject {
    const meta = {
      ...o.metadata,
      uid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      resourceVersion: String(1000 + i),
      creationTimestamp: at,
    };
    if (o.kind === 'PersistentVolumeClaim') {
      const applied = JSON.stringify({ apiVersion: 'v1', kind: o.kind, metadata: o.metadata, spec: (o as V1Pod).spec });
      return {
        ...o,
        metadata: {
          ...meta,
          finalizers: ['kubernetes.io/pvc-protection'],
          annotations: {
            'kubectl.kubernetes.io/last-applied-configuration': applied,
            'pv.kubernetes.io/bind-completed': 'yes',
            'pv.kubernetes.io/bound-by-controller': 'yes',
          },
          managedFields: [
            field('kubectl-client-side-apply', 'Update', {
              'f:metadata': { 'f:annotations': { '.': {}, 'f:kubectl.kubernetes.io/last-applied-configuration': {} } },
              'f:spec': { 'f:accessModes': {}, 'f:resources': { 'f:requests': { '.': {}, 'f:storage': {} } } },
            }),
            field('kube-controller-manager', 'Update', {
              'f:metadata': { 'f:annotations': { 'f:pv.kubernetes.io/bind-completed': {} } },
              'f:spec': { 'f:volumeName': {} },
            }),
            field(
              'kube-controller-manager',
              'Update',
              { 'f:status': { 'f:accessModes': {}, 'f:capacity': { '.': {}, 'f:storage': {} }, 'f:phase': {} } },
              'status',
            ),
          ],
        },
        status: { phase: 'Bound', accessModes: ['ReadWriteMany'], capacity: { storage: '1Gi' } },
      } as KubernetesObject;
    }
    if (o.kind === 'PersistentVolume') {
      return {
        ...o,
        metadata: {
          ...meta,
          finalizers: ['kubernetes.io/pv-protection', 'external-provisioner.volume.kubernetes.io/finalizer'],
          annotations: { 'pv.kubernetes.io/provisioned-by': 'csi.juicefs.com' },
          managedFields: [
            field('csi-provisioner', 'Update', {
              'f:metadata': { 'f:annotations': { '.': {}, 'f:pv.kubernetes.io/provisioned-by': {} } },
              'f:spec': { 'f:accessModes': {}, 'f:capacity': {}, 'f:csi': { '.': {}, 'f:driver': {} } },
            }),
            field('kube-controller-manager', 'Update', { 'f:spec': { 'f:claimRef': {} } }),
            field('kube-controller-manager', 'Update', { 'f:status': { 'f:phase': {} } }, 'status'),
          ],
        },
        spec: {
          ...(o as { spec: object }).spec,
          claimRef: {
            kind: 'PersistentVolumeClaim',
            namespace: BENCH_NS,
            name: `pvc-${(i - 1) / 2}`,
            uid: `00000000-0000-4000-8000-${String(i + 1).padStart(12, '0')}`,
            apiVersion: 'v1',
            resourceVersion: String(999 + i),
          },
          persistentVolumeReclaimPolicy: 'Retain',
          volumeMode: 'Filesystem',
        },
        status: { phase: 'Bound', lastPhaseTransitionTime: at },
      } as KubernetesObject;
    }
    return { ...o, metadata: meta };
  }
}
