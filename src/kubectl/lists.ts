// `kubectl jfs pods|mounts|pvc|pv`: the objects read with the user's credentials, linked by src/diagnose/inventory.ts,
// printed as a kubectl-like table or (-o json|yaml) as the linked rows.
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod, V1StorageClass } from '@kubernetes/client-node';
import { ATTR, MOUNT_POD_APP_VALUE, MOUNT_POD_LABEL_APP, SYSTEM_NAMESPACE } from '../contract/keys.js';
import {
  describeAppPod,
  describeMountPod,
  isJuiceFSClaim,
  isJuiceFSPv,
  isMountPod,
  mountPodsOfPv,
  type AppPodInfo,
  type MountPodInfo,
} from '../diagnose/inventory.js';
import { isStatus } from '../k8s/errors.js';
import type { Cluster } from './cluster.js';
import { age, serialise, table, type Column, type OutputFormat } from './output.js';

export interface ListOptions {
  output: OutputFormat;
  systemNamespace?: string;
}

async function orEmpty<T>(read: Promise<T[]>): Promise<T[]> {
  try {
    return await read;
  } catch (err) {
    if (isStatus(err, 403, 404)) return [];
    throw err;
  }
}

/** Pods and PVCs of -n (or every namespace with -A), the PVs, classes and Mount Pods they link to. */
async function readAll(c: Cluster, systemNamespace: string) {
  const ns = c.namespace;
  const [pods, pvcs, pvs, storageClasses, mountPods] = await Promise.all([
    c.allNamespaces
      ? c.core.listPodForAllNamespaces().then((l) => l.items)
      : c.core.listNamespacedPod({ namespace: ns }).then((l) => l.items),
    c.allNamespaces
      ? c.core.listPersistentVolumeClaimForAllNamespaces().then((l) => l.items)
      : c.core.listNamespacedPersistentVolumeClaim({ namespace: ns }).then((l) => l.items),
    orEmpty<V1PersistentVolume>(c.core.listPersistentVolume().then((l) => l.items)),
    orEmpty<V1StorageClass>(c.storage.listStorageClass().then((l) => l.items)),
    orEmpty<V1Pod>(
      c.core
        .listNamespacedPod({
          namespace: systemNamespace,
          labelSelector: `${MOUNT_POD_LABEL_APP}=${MOUNT_POD_APP_VALUE}`,
        })
        .then((l) => l.items),
    ),
  ]);
  return { pods, pvcs, pvs, storageClasses, mountPods };
}

const byName = (a: { namespace: string; name: string }, b: { namespace: string; name: string }) =>
  a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name);

export async function listPods(c: Cluster, o: ListOptions): Promise<string> {
  const all = await readAll(c, o.systemNamespace ?? SYSTEM_NAMESPACE);
  const rows = all.pods.flatMap((p) => describeAppPod(p, all) ?? []).sort(byName);
  if (o.output === 'json' || o.output === 'yaml') return serialise('JuiceFSAppPod', rows, o.output);
  if (rows.length === 0)
    return `No pods using JuiceFS found${c.allNamespaces ? '' : ` in ${c.namespace} namespace`}.\n`;
  const cols: Column<AppPodInfo>[] = [
    ...(c.allNamespaces ? [{ header: 'NAMESPACE', value: (r: AppPodInfo) => r.namespace }] : []),
    { header: 'NAME', value: (r) => r.name },
    { header: 'MODE', value: (r) => (r.mode === 'none' ? 'unserved' : r.mode) },
    { header: 'PVCS', value: (r) => r.pvcs.join(',') },
    {
      header: 'CLIENT',
      value: (r) =>
        (r.mode === 'mount-pod' ? r.mountPods.map((m) => m.split('/')[1]) : r.clients.map((x) => x.container)).join(
          ',',
        ),
    },
    { header: 'VERSION', value: (r) => [...new Set(r.clients.map((x) => x.version))].join(',') },
    { header: 'READY', value: (r) => r.ready },
    { header: 'STATUS', value: (r) => r.status },
    { header: 'RESTARTS', value: (r) => String(r.restarts) },
    { header: 'AGE', value: (r) => age(r.createdAt) },
    { header: 'NODE', value: (r) => r.node ?? '', wide: true },
    { header: 'CLIENT IMAGE', value: (r) => [...new Set(r.clients.map((x) => x.image))].join(','), wide: true },
  ];
  return table(rows, cols, o.output === 'wide');
}

export async function listMounts(c: Cluster, o: ListOptions): Promise<string> {
  const system = o.systemNamespace ?? SYSTEM_NAMESPACE;
  const mountPods = await c.core
    .listNamespacedPod({ namespace: system, labelSelector: `${MOUNT_POD_LABEL_APP}=${MOUNT_POD_APP_VALUE}` })
    .then((l) => l.items);
  // The app pods behind the references: every namespace when the user may list them, else -n's.
  const apps = await c.core
    .listPodForAllNamespaces()
    .then((l) => l.items)
    .catch(() => c.core.listNamespacedPod({ namespace: c.namespace }).then((l) => l.items));
  const rows = mountPods
    .map((m) =>
      describeMountPod(
        m,
        apps.filter((p) => !isMountPod(p)),
      ),
    )
    .sort(byName);
  if (o.output === 'json' || o.output === 'yaml') return serialise('JuiceFSMountPod', rows, o.output);
  if (rows.length === 0) return `No Mount Pods found in ${system} namespace.\n`;
  const cols: Column<MountPodInfo>[] = [
    { header: 'NAME', value: (r) => r.name },
    { header: 'PV', value: (r) => r.pv ?? '' },
    { header: 'NODE', value: (r) => r.node ?? '' },
    { header: 'REFS', value: (r) => String(r.references) },
    { header: 'APP PODS', value: (r) => r.appPods.join(',') },
    { header: 'VERSION', value: (r) => r.client?.version ?? '' },
    { header: 'STATUS', value: (r) => r.status },
    { header: 'AGE', value: (r) => age(r.createdAt) },
    { header: 'IMAGE', value: (r) => r.client?.image ?? '', wide: true },
    { header: 'NAMESPACE', value: (r) => r.namespace, wide: true },
  ];
  return table(rows, cols, o.output === 'wide');
}

interface PvcRow {
  namespace: string;
  name: string;
  status: string;
  volume: string;
  capacity: string;
  storageClass: string;
  pods: string[];
  createdAt?: string;
}

export async function listPvcs(c: Cluster, o: ListOptions): Promise<string> {
  const all = await readAll(c, o.systemNamespace ?? SYSTEM_NAMESPACE);
  const users = all.pods.flatMap((p) => describeAppPod(p, all) ?? []);
  const rows: PvcRow[] = all.pvcs
    .filter((p) => isJuiceFSClaim(p, all))
    .map((p: V1PersistentVolumeClaim) => ({
      namespace: p.metadata?.namespace ?? '',
      name: p.metadata?.name ?? '',
      status: p.status?.phase ?? 'Pending',
      volume: p.spec?.volumeName ?? '',
      capacity: p.status?.capacity?.storage ?? '',
      storageClass: p.spec?.storageClassName ?? '',
      pods: users
        .filter((u) => u.namespace === p.metadata?.namespace && u.pvcs.includes(p.metadata?.name ?? ''))
        .map((u) => u.name),
      createdAt: p.metadata?.creationTimestamp ? new Date(p.metadata.creationTimestamp).toISOString() : undefined,
    }))
    .sort(byName);
  if (o.output === 'json' || o.output === 'yaml') return serialise('JuiceFSClaim', rows, o.output);
  if (rows.length === 0) return `No JuiceFS PVCs found${c.allNamespaces ? '' : ` in ${c.namespace} namespace`}.\n`;
  return table(
    rows,
    [
      ...(c.allNamespaces ? [{ header: 'NAMESPACE', value: (r: PvcRow) => r.namespace }] : []),
      { header: 'NAME', value: (r) => r.name },
      { header: 'STATUS', value: (r) => r.status },
      { header: 'VOLUME', value: (r) => r.volume },
      { header: 'CAPACITY', value: (r) => r.capacity },
      { header: 'STORAGECLASS', value: (r) => r.storageClass },
      { header: 'PODS', value: (r) => r.pods.join(',') },
      { header: 'AGE', value: (r) => age(r.createdAt) },
    ],
    o.output === 'wide',
  );
}

interface PvRow {
  name: string;
  capacity: string;
  status: string;
  claim: string;
  storageClass: string;
  subPath: string;
  mountPods: string[];
  volumeHandle: string;
  secret: string;
  createdAt?: string;
}

export async function listPvs(c: Cluster, o: ListOptions): Promise<string> {
  const system = o.systemNamespace ?? SYSTEM_NAMESPACE;
  const [pvs, mountPods] = await Promise.all([
    c.core.listPersistentVolume().then((l) => l.items),
    orEmpty<V1Pod>(
      c.core
        .listNamespacedPod({ namespace: system, labelSelector: `${MOUNT_POD_LABEL_APP}=${MOUNT_POD_APP_VALUE}` })
        .then((l) => l.items),
    ),
  ]);
  const rows: PvRow[] = pvs
    .filter(isJuiceFSPv)
    .map((pv) => {
      const ref = pv.spec?.csi?.nodePublishSecretRef;
      return {
        name: pv.metadata?.name ?? '',
        capacity: pv.spec?.capacity?.storage ?? '',
        status: pv.status?.phase ?? '',
        claim: pv.spec?.claimRef ? `${pv.spec.claimRef.namespace}/${pv.spec.claimRef.name}` : '',
        storageClass: pv.spec?.storageClassName ?? '',
        subPath: pv.spec?.csi?.volumeAttributes?.[ATTR.subPath] ?? '',
        mountPods: mountPodsOfPv(pv.metadata?.name ?? '', mountPods).map((m) => m.metadata?.name ?? ''),
        volumeHandle: pv.spec?.csi?.volumeHandle ?? '',
        secret: ref?.name ? `${ref.namespace ?? 'default'}/${ref.name}` : '',
        createdAt: pv.metadata?.creationTimestamp ? new Date(pv.metadata.creationTimestamp).toISOString() : undefined,
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
  if (o.output === 'json' || o.output === 'yaml') return serialise('JuiceFSVolume', rows, o.output);
  if (rows.length === 0) return 'No JuiceFS PVs found.\n';
  return table(
    rows,
    [
      { header: 'NAME', value: (r) => r.name },
      { header: 'CAPACITY', value: (r) => r.capacity },
      { header: 'STATUS', value: (r) => r.status },
      { header: 'CLAIM', value: (r) => r.claim },
      { header: 'STORAGECLASS', value: (r) => r.storageClass },
      { header: 'MOUNT PODS', value: (r) => r.mountPods.join(',') },
      { header: 'AGE', value: (r) => age(r.createdAt) },
      { header: 'SUBPATH', value: (r) => r.subPath, wide: true },
      { header: 'VOLUMEHANDLE', value: (r) => r.volumeHandle, wide: true },
      { header: 'SECRET', value: (r) => r.secret, wide: true },
    ],
    o.output === 'wide',
  );
}
