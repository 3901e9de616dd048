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
