// The diagnosis's gathering shell: reads, with the user's own credentials, what src/diagnose/ needs for one pod,
// PVC or PV. What the user may not read (Mount Pods, Secrets, webhook configurations) is left out or marked
// unknown, never an error: the diagnosis says what it can.
import type {
  CoreV1Event,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1StorageClass,
} from '@kubernetes/client-node';
import { MOUNT_POD_APP_VALUE, MOUNT_POD_LABEL_APP, SC_SECRET_PARAMS, SYSTEM_NAMESPACE } from '../contract/keys.js';
import {
  claimNamesOf,
  describeAppPod,
  isInjected,
  juicefsMountsOf,
  mountPodsOfPod,
  mountPodsOfPv,
} from '../diagnose/inventory.js';
import type { ContainerLog, DebugTarget, Gathered, MountCheck, SecretPresence } from '../diagnose/types.js';
import { isStatus } from '../k8s/errors.js';
import { apiErrorMessage, type Cluster } from './cluster.js';
import { execCapture } from './exec.js';

export interface GatherOptions {
  /** Namespace of Mount Pods and the controller (default juicefs-system). */
  systemNamespace?: string;
  /** Log lines per container. */
  tail?: number;
  /** Run `df -P` in the app containers (exec). */
  checkMounts?: boolean;
}

/** The value, or `fallback` when the API refuses (403) or lacks the resource (404); other errors propagate. */
async function orElse<T>(read: Promise<T>, fallback: T): Promise<T> {
  try {
    return await read;
  } catch (err) {
    if (isStatus(err, 403, 404)) return fallback;
    throw err;
  }
}

async function readPod(c: Cluster, namespace: string, name: string): Promise<V1Pod | undefined> {
  return orElse(
    c.core.readNamespacedPod({ namespace, name }).then((p) => p as V1Pod | undefined),
    undefined,
  );
}

/** Every PV the user can see; a namespace user who may not list PVs still gets the ones named (read one by one). */
async function readPvs(c: Cluster, names: string[]): Promise<V1PersistentVolume[]> {
  try {
    return (await c.core.listPersistentVolume()).items;
  } catch (err) {
    if (!isStatus(err, 403)) throw err;
  }
  const got = await Promise.all(
    names.map((name) =>
      orElse(
        c.core.readPersistentVolume({ name }).then((p) => [p]),
        [] as V1PersistentVolume[],
      ),
    ),
  );
  return got.flat();
}

async function secretPresence(c: Cluster, namespace: string, name: string): Promise<SecretPresence> {
  try {
    const s = await c.core.readNamespacedSecret({ namespace, name });
    // Only the key names are kept: a diagnosis never carries a credential.
    return { namespace, name, state: 'present', keys: Object.keys({ ...s.data, ...s.stringData }).sort() };
  } catch (err) {
    if (isStatus(err, 404)) return { namespace, name, state: 'missing' };
    if (isStatus(err, 403)) return { namespace, name, state: 'unknown', reason: 'not allowed to read it' };
    return { namespace, name, state: 'unknown', reason: apiErrorMessage(err) };
  }
}

function secretRefs(pvs: V1PersistentVolume[], classes: V1StorageClass[]): { namespace: string; name: string }[] {
  const refs = new Map<string, { namespace: string; name: string }>();
  for (const pv of pvs) {
    const r = pv.spec?.csi?.nodePublishSecretRef;
    if (r?.name)
      refs.set(`${r.namespace ?? 'default'}/${r.name}`, { namespace: r.namespace ?? 'default', name: r.name });
  }
  for (const sc of classes) {
    const p = sc.parameters ?? {};
    const name = p[SC_SECRET_PARAMS.nodePublishName] ?? p[SC_SECRET_PARAMS.provisionerName];
    const namespace = p[SC_SECRET_PARAMS.nodePublishNamespace] ?? p[SC_SECRET_PARAMS.provisionerNamespace];
    if (name && namespace && !name.includes('${') && !namespace.includes('${'))
      refs.set(`${namespace}/${name}`, { namespace, name });
  }
  return [...refs.values()];
}

async function logsOf(c: Cluster, pod: V1Pod, container: string, tail: number): Promise<ContainerLog[]> {
  const namespace = pod.metadata?.namespace ?? '';
  const name = pod.metadata?.name ?? '';
  const st = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])].find(
    (s) => s.name === container,
  );
  if (!st) return [];
  const read = async (previous: boolean): Promise<ContainerLog[]> => {
    try {
      const text = await c.core.readNamespacedPodLog({ namespace, name, container, tailLines: tail, previous });
      const lines = String(text).split('\n').filter(Boolean);
      return lines.length ? [{ namespace, pod: name, container, previous, lines }] : [];
    } catch {
      // No log yet (ContainerCreating), no previous run, or not allowed: nothing to show.
      return [];
    }
  };
  const runs = await Promise.all([
    st.state?.running || st.state?.terminated ? read(false) : Promise.resolve([]),
    (st.restartCount ?? 0) > 0 ? read(true) : Promise.resolve([]),
  ]);
  return runs.flat();
}

async function mountChecksOf(c: Cluster, pod: V1Pod, jfsClaims: string[]): Promise<MountCheck[]> {
  const running = new Set((pod.status?.containerStatuses ?? []).filter((s) => s.state?.running).map((s) => s.name));
  const namespace = pod.metadata?.namespace ?? '';
  const name = pod.metadata?.name ?? '';
  return Promise.all(
    juicefsMountsOf(pod, jfsClaims)
      .filter((m) => running.has(m.container))
      .map(async (m) => {
        const r = await execCapture(c.kc, { namespace, name, container: m.container }, ['df', '-P', m.path], 10_000);
        return { namespace, pod: name, container: m.container, path: m.path, ok: r.ok, output: r.output };
      }),
  );
}

async function eventsIn(c: Cluster, namespace: string): Promise<CoreV1Event[]> {
  return orElse(
    c.core.listNamespacedEvent({ namespace, limit: 1000 }).then((l) => l.items),
    [] as CoreV1Event[],
  );
}

/** What src/diagnose/ needs for `target`, read with the user's credentials. */
export async function gatherDebug(c: Cluster, target: DebugTarget, opts: GatherOptions = {}): Promise<Gathered> {
  const system = opts.systemNamespace ?? SYSTEM_NAMESPACE;
  const tail = opts.tail ?? 20;
  const [classes, mountPods, webhookConfigs, csiDrivers, systemEvents] = await Promise.all([
    orElse(
      c.storage.listStorageClass().then((l) => l.items),
      [] as V1StorageClass[],
    ),
    orElse(
      c.core
        .listNamespacedPod({ namespace: system, labelSelector: `${MOUNT_POD_LABEL_APP}=${MOUNT_POD_APP_VALUE}` })
        .then((l) => l.items),
      [] as V1Pod[],
    ),
    orElse(
      c.admission.listMutatingWebhookConfiguration().then((l) => l.items),
      undefined,
    ),
    orElse(
      c.storage.listCSIDriver().then((l) => l.items.map((d) => d.metadata?.name ?? '')),
      undefined,
    ),
    eventsIn(c, system),
  ]);

  // The namespace the chain starts in, and the pods of the target.
  let namespace = target.namespace ?? c.namespace;
  let pv: V1PersistentVolume | undefined;
  if (target.kind === 'pv') {
    pv = await orElse(
      c.core.readPersistentVolume({ name: target.name }).then((p) => p as V1PersistentVolume | undefined),
      undefined,
    );
    namespace = pv?.spec?.claimRef?.namespace ?? namespace;
  }
  const [pvcs, nsEvents, nsObj] = await Promise.all([
    orElse(
      c.core.listNamespacedPersistentVolumeClaim({ namespace }).then((l) => l.items),
      [] as V1PersistentVolumeClaim[],
    ),
    eventsIn(c, namespace),
    orElse(
      c.core.readNamespace({ name: namespace }).then((n) => [n]),
      [],
    ),
  ]);
  const listed = await readPvs(c, [
    ...pvcs.flatMap((p) => (p.spec?.volumeName ? [p.spec.volumeName] : [])),
    ...(pv ? [pv.metadata?.name ?? ''] : []),
  ]);
  const pvs = pv && !listed.some((x) => x.metadata?.name === pv.metadata?.name) ? [...listed, pv] : listed;
  const objects = { pvcs, pvs, storageClasses: classes, mountPods };
  let pods: V1Pod[];
  if (target.kind === 'pod') {
    const p = await readPod(c, namespace, target.name);
    pods = p ? [p] : [];
  } else {
    const claim = target.kind === 'pvc' ? target.name : pv?.spec?.claimRef?.name;
    const all = claim
      ? await orElse(
          c.core.listNamespacedPod({ namespace }).then((l) => l.items),
          [] as V1Pod[],
        )
      : [];
    pods = all.filter((p) =>
      isInjected(p)
        ? (describeAppPod(p, objects)?.pvcs.includes(claim ?? '') ?? false)
        : claimNamesOf(p).includes(claim ?? ''),
    );
  }
  // The objects the chain reaches: the PVCs in play, their PVs and classes, and the target PV.
  const claimsInPlay = new Set<string>(target.kind === 'pvc' ? [target.name] : []);
  if (pv?.spec?.claimRef?.name) claimsInPlay.add(pv.spec.claimRef.name);
  for (const p of pods) for (const n of describeAppPod(p, objects)?.pvcs ?? claimNamesOf(p)) claimsInPlay.add(n);
  const pvcInPlay = pvcs.filter((p) => claimsInPlay.has(p.metadata?.name ?? ''));
  const pvsInPlay = objects.pvs.filter(
    (x) => pvcInPlay.some((p) => p.spec?.volumeName === x.metadata?.name) || x.metadata?.name === pv?.metadata?.name,
  );
  const classesInPlay = classes.filter((s) => pvcInPlay.some((p) => p.spec?.storageClassName === s.metadata?.name));
  const secrets = await Promise.all(
    secretRefs(pvsInPlay, classesInPlay).map((r) => secretPresence(c, r.namespace, r.name)),
  );

  // Clients and mounts: the sidecars' and Mount Pods' logs, the apps' logs and df.
  const servingMountPods = [
    ...new Set([
      ...pods.flatMap((p) => mountPodsOfPod(p, mountPods)),
      ...(pv ? mountPodsOfPv(pv.metadata?.name ?? '', mountPods) : []),
    ]),
  ];
  const logs: ContainerLog[] = [];
  const mountChecks: MountCheck[] = [];
  for (const p of pods) {
    for (const ctr of [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])])
      logs.push(...(await logsOf(c, p, ctr.name, tail)));
    if (opts.checkMounts !== false && p.status?.phase === 'Running')
      mountChecks.push(...(await mountChecksOf(c, p, describeAppPod(p, objects)?.pvcs ?? [])));
  }
  for (const m of servingMountPods)
    for (const ctr of m.spec?.containers ?? []) logs.push(...(await logsOf(c, m, ctr.name, tail)));

  return {
    target: { ...target, namespace: target.kind === 'pv' ? undefined : namespace },
    pods,
    namespaces: nsObj,
    pvcs,
    pvs: objects.pvs,
    storageClasses: classes,
    secrets,
    mountPods,
    webhookConfigs,
    csiDrivers,
    events: [...nsEvents, ...(namespace === system ? [] : systemEvents)],
    logs,
    mountChecks,
    now: new Date().toISOString(),
  };
}
