// A user's cluster on the real node, for the sidecar e2e and the real-node
// bench: the control plane with kube-scheduler, the webhook and the controller
// (with csi-provisioner) as host processes, a JuiceFS volume formatted on the
// host under /var/jfsCache (the one host path the sidecar and the Mount Pod
// mount at the same path, so their clients open the same SQLite file), its
// StorageClass and Secret, and the real node. Everything after this goes
// through the API server, as a user would.
import {
  BatchV1Api,
  CoreV1Api,
  type KubeConfig,
  type KubernetesObject,
  type V1ConfigMap,
  type V1Pod,
  type V1Status,
} from '@kubernetes/client-node';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import {
  ATTR,
  CONFIG_MAP_NAME,
  LABEL_ENABLE_INJECTION,
  LABEL_ENABLE_SERVERLESS_INJECTION,
} from '../../src/contract/keys.js';
import { applyObjects, readManifest } from '../../src/local/components.js';
import { eventually, podExec, type TapLike } from './harness.js';
import { ControlPlane, ensureBinaries } from '../../src/local/control-plane.js';
import { startControllerStack, type ControllerStack } from '../../src/local/controller-stack.js';
import { startRealNodeStack, type RealNodeStack } from '../../src/local/real-node-stack.js';
import { startWebhookStack, WEBHOOK_NAMESPACE, type WebhookStack } from '../../src/local/webhook-stack.js';
import { realNodePrerequisiteProblem } from '../../src/local/real-node.js';

export const STORAGE_CLASS = 'juicefs-sc';
export const BUSYBOX = 'busybox';

export type NamespaceMode = 'sidecar' | 'serverless' | 'mount-pod';

export interface World {
  cp: ControlPlane;
  kc: KubeConfig;
  core: CoreV1Api;
  batch: BatchV1Api;
  webhook: WebhookStack;
  controller: ControllerStack;
  node: RealNodeStack;
  /** The volume's metaurl (SQLite on the host, under /var/jfsCache). */
  metaurl: string;
  stop(): Promise<void>;
}

/**
 * Starts everything; `nodePlugin` false for sidecar-only runs (sidecar mode needs no node plugin).
 * On failure what was started is stopped again.
 */
export async function startWorld(opts: { nodePlugin: boolean; controllerArgs?: string[] }): Promise<World> {
  const cp = await ControlPlane.start({ controllerManager: true, scheduler: true });
  // A process that dies mid-way must not leave the control plane behind.
  process.once('exit', () => cp.killNow());
  const stops: (() => Promise<void>)[] = [() => cp.stop()];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    stops.length = 0;
  };
  try {
    const kc = cp.adminKubeConfig();
    // On a fresh machine /var/jfsCache itself is made here, and removed on stop.
    const made = mkdirSync('/var/jfsCache', { recursive: true });
    const volDir = mkdtempSync('/var/jfsCache/jfs-e2e-');
    stops.push(() => Promise.resolve(rmSync(made ?? volDir, { recursive: true, force: true })));
    const metaurl = `sqlite3://${volDir}/meta.db`;
    const fmt = spawnSync(
      ensureBinaries(['juicefs']).juicefs,
      ['format', '--storage=file', `--bucket=${volDir}/data/`, '--trash-days=0', metaurl, 'e2e'],
      { encoding: 'utf8' },
    );
    if (fmt.status !== 0) throw new Error(`juicefs format failed: ${fmt.stderr}`);
    // The clients' cache folder of this volume (--cache-dir=/var/jfsCache), left by every client that ran.
    const uuid = /"UUID": "([^"]+)"/.exec(fmt.stderr + fmt.stdout)?.[1];
    if (uuid)
      stops.push(() => Promise.resolve(rmSync(path.join('/var/jfsCache', uuid), { recursive: true, force: true })));
    // The sidecar's format step has no host mounts: the Secret names the formatted volume only.
    await applyObjects(kc, [
      ...readManifest('csidriver.yaml'),
      ...readManifest('storageclass-example.yaml').map((o: KubernetesObject) => {
        if (o.kind !== 'StorageClass') return o;
        const sc = structuredClone(o) as KubernetesObject & { parameters?: Record<string, string> };
        // The node has 2 CPUs: with the default requests (1 CPU per client) two sidecars would not fit.
        sc.parameters = { ...sc.parameters, [ATTR.cpuRequest]: '100m', [ATTR.memoryRequest]: '128Mi' };
        return sc;
      }),
    ]);
    const webhook = await startWebhookStack(cp, { dir: cp.dir, secretNamespaces: [WEBHOOK_NAMESPACE] });
    stops.push(() => webhook.stop());
    await applyObjects(kc, [
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'juicefs-secret', namespace: WEBHOOK_NAMESPACE },
        stringData: { name: 'e2e', metaurl },
      } as KubernetesObject,
    ]);
    const controller = await startControllerStack(cp, {
      dir: cp.dir,
      secretNamespaces: [WEBHOOK_NAMESPACE],
      extraArgs: opts.controllerArgs,
    });
    stops.push(() => controller.stop());
    const logFd = openSync(path.join(cp.dir, 'real-node-stack.log'), 'a');
    const node = await startRealNodeStack(cp, {
      dir: cp.dir,
      log: pino({ level: 'info' }, pino.destination(logFd)),
      nodePlugin: opts.nodePlugin,
    });
    stops.push(() => node.stop());
    return {
      cp,
      kc,
      core: kc.makeApiClient(CoreV1Api),
      batch: kc.makeApiClient(BatchV1Api),
      webhook,
      controller,
      node,
      metaurl,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * A suite's world, stopped at the suite's end, with the controller's and the node's logs when it failed. A machine
 * without the real node's prerequisites fails the suite (undefined): CI runs as root with .ci/run's packages, so
 * that is a broken setup, never a skip.
 */
export async function startSuiteWorld(
  t: TapLike & { fail(message: string): void; comment(message: string): void; passing(): boolean },
  opts: Parameters<typeof startWorld>[0],
): Promise<World | undefined> {
  const missing = realNodePrerequisiteProblem();
  if (missing) {
    t.fail(missing);
    return undefined;
  }
  const w = await startWorld(opts);
  t.teardown(() => w.stop());
  t.teardown(() => {
    if (t.passing()) return;
    t.comment(`controller log:\n${w.controller.controller.log(40)}`);
    t.comment(`real node logs:\n${w.node.node.logs(80)}`);
  });
  return w;
}

/** A namespace of `mode` (labelled for injection, serverless injection, or not at all) and its PVCs, Bound. */
export async function makeNamespace(
  w: World,
  name: string,
  mode: NamespaceMode,
  pvcs: string[],
  storageClassName = STORAGE_CLASS,
): Promise<void> {
  const labels: Record<string, string> =
    mode === 'sidecar'
      ? { [LABEL_ENABLE_INJECTION]: 'true' }
      : mode === 'serverless'
        ? { [LABEL_ENABLE_SERVERLESS_INJECTION]: 'true' }
        : {};
  await w.core.createNamespace({ body: { metadata: { name, labels } } });
  for (const pvc of pvcs)
    await w.core.createNamespacedPersistentVolumeClaim({
      namespace: name,
      body: {
        metadata: { name: pvc },
        spec: {
          accessModes: ['ReadWriteMany'],
          storageClassName,
          resources: { requests: { storage: '1Gi' } },
        },
      },
    });
  for (const pvc of pvcs)
    await eventually(
      async () =>
        (await w.core.readNamespacedPersistentVolumeClaim({ name: pvc, namespace: name })).status?.phase === 'Bound',
      60_000,
      `PVC ${name}/${pvc} Bound`,
    );
  await eventually(
    () => w.core.readNamespacedServiceAccount({ name: 'default', namespace: name }),
    30_000,
    `ServiceAccount default in ${name}`,
  );
}

/** The PV directory (inside the JuiceFS volume) of a Bound PVC. */
export async function pvDirOf(w: World, namespace: string, pvc: string): Promise<string> {
  const claim = await w.core.readNamespacedPersistentVolumeClaim({ name: pvc, namespace });
  const pv = await w.core.readPersistentVolume({ name: claim.spec!.volumeName! });
  return pv.spec!.csi!.volumeAttributes![ATTR.subPath];
}

/** `cat` of a file of the volume through a mount of its own on the host (what the host sees). */
export function readOnHost(w: World, file: string): string | undefined {
  const juicefs = ensureBinaries(['juicefs']).juicefs;
  const mnt = mkdtempSync('/tmp/jfs-e2e-host-');
  try {
    const m = spawnSync(juicefs, ['mount', '-d', '--no-usage-report', w.metaurl, mnt], { encoding: 'utf8' });
    if (m.status !== 0) throw new Error(`host mount failed: ${m.stderr}`);
    try {
      return readFileSync(path.join(mnt, file), 'utf8');
    } catch {
      return undefined;
    } finally {
      spawnSync(juicefs, ['umount', mnt], { encoding: 'utf8' });
    }
  } finally {
    rmSync(mnt, { recursive: true, force: true });
  }
}

/**
 * The app ends on SIGTERM, as a well-behaved app does (a bare `sleep` as PID 1 ignores it and uses up the
 * grace period, which leaves the sidecar the kubelet's 2 s minimum; see the report of the serverless case).
 */
export function appPod(
  namespace: string,
  name: string,
  claims: string[],
  script = "trap 'exit 0' TERM; sleep 3600 & wait",
): V1Pod {
  return {
    metadata: { name, namespace },
    spec: {
      terminationGracePeriodSeconds: 5,
      containers: [
        {
          name: 'app',
          image: BUSYBOX,
          command: ['sh', '-c', script],
          volumeMounts: claims.map((c, i) => ({ name: `v${i}`, mountPath: i === 0 ? '/data' : `/data${i}` })),
        },
      ],
      volumes: claims.map((c, i) => ({ name: `v${i}`, persistentVolumeClaim: { claimName: c } })),
    },
  };
}

/** Creates a pod, retrying while the webhook's caches have not seen the PVC or its PV yet. */
export async function createPod(w: World, pod: V1Pod): Promise<V1Pod> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return await w.core.createNamespacedPod({ namespace: pod.metadata!.namespace!, body: pod });
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(250);
    }
  }
}

/** The pod once `ok` holds for it; `what` names it in the timeout error, with its container states. */
export async function podWhen(
  w: World,
  namespace: string,
  name: string,
  ok: (p: V1Pod) => boolean,
  timeoutMs: number,
  what: string,
  pollMs = 200,
): Promise<V1Pod> {
  const deadline = Date.now() + timeoutMs;
  let last: V1Pod | undefined;
  for (;;) {
    last = await w.core.readNamespacedPod({ name, namespace }).catch(() => undefined);
    if (last && ok(last)) return last;
    if (Date.now() > deadline)
      throw new Error(
        `timed out waiting for ${what}: phase ${last?.status?.phase}, init ${JSON.stringify(last?.status?.initContainerStatuses?.map((s) => [s.name, s.state]))}, containers ${JSON.stringify(last?.status?.containerStatuses?.map((s) => [s.name, s.state]))}`,
      );
    await sleep(pollMs);
  }
}

/** Every container, init containers (native sidecars) included, running or done; the app running. */
export const appRunning = (p: V1Pod, app = 'app') =>
  p.status?.phase === 'Running' &&
  (p.status.containerStatuses ?? []).some((s) => s.name === app && s.state?.running !== undefined && s.ready);

export function exec(
  w: World,
  namespace: string,
  pod: string,
  container: string,
  command: string[],
  timeoutMs = 30_000,
): Promise<{ out: string; err: string; status: V1Status }> {
  return podExec(w.kc, { namespace, name: pod, container }, command, timeoutMs);
}

/** Sets enableNativeSidecar in the global ConfigMap and waits until the webhook has loaded it. */
export async function setNativeSidecar(w: World, native: boolean): Promise<void> {
  await setGlobalConfig(w, (text) => text.replace(/enableNativeSidecar: \w+/, `enableNativeSidecar: ${native}`));
}

/** The shipped global ConfigMap, edited by `edit`, applied; waits until the webhook has loaded it. */
export async function setGlobalConfig(w: World, edit: (shippedText: string) => string): Promise<void> {
  const [shipped] = readManifest('config.yaml') as V1ConfigMap[];
  const text = edit(shipped.data!['config.yaml']);
  await applyObjects(w.kc, [
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: CONFIG_MAP_NAME, namespace: WEBHOOK_NAMESPACE },
      data: { 'config.yaml': text },
    } as V1ConfigMap,
  ]);
  const stored = await w.core.readNamespacedConfigMap({ name: CONFIG_MAP_NAME, namespace: WEBHOOK_NAMESPACE });
  await eventually(
    async () =>
      ((await w.webhook.webhook.readyz()).body.config as { resourceVersion?: string } | undefined)?.resourceVersion ===
      stored.metadata!.resourceVersion,
    30_000,
    'the webhook to load the ConfigMap',
  );
}

/** A Job whose app writes into the volume, then exits 0 after `seconds`. */
export function jobOf(namespace: string, name: string, claim: string, seconds = 1): KubernetesObject {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace },
    spec: {
      backoffLimit: 0,
      template: {
        spec: {
          restartPolicy: 'Never',
          terminationGracePeriodSeconds: 30,
          containers: [
            {
              name: 'app',
              image: BUSYBOX,
              command: ['sh', '-c', `echo ${name} > /data/${name}.txt && sleep ${seconds}`],
              volumeMounts: [{ name: 'data', mountPath: '/data' }],
            },
          ],
          volumes: [{ name: 'data', persistentVolumeClaim: { claimName: claim } }],
        },
      },
    },
  } as KubernetesObject;
}

export interface JobRun {
  pod: V1Pod;
  /** Time seen by polling (200 ms) from the app container terminated to the pod's phase Succeeded. */
  observedDelayMs: number;
  /** The same from the kubelet's timestamps (1 s resolution): last container finishedAt − app finishedAt. */
  stampDelayS: number;
}

/** Runs a Job to its pod's completion and measures how long the pod outlived its app container. */
export async function runJob(w: World, namespace: string, name: string, claim: string): Promise<JobRun> {
  await applyObjects(w.kc, [jobOf(namespace, name, claim)]);
  const podName = await eventually(
    async () =>
      (await w.core.listNamespacedPod({ namespace, labelSelector: `job-name=${name}` })).items[0]?.metadata?.name,
    30_000,
    `the pod of Job ${name}`,
  );
  const appDone = (p: V1Pod) =>
    (p.status?.containerStatuses ?? []).some((s) => s.name === 'app' && s.state?.terminated !== undefined);
  await podWhen(w, namespace, podName, appDone, 120_000, `the app of ${podName} to exit`, 100);
  const t0 = Date.now();
  const pod = await podWhen(
    w,
    namespace,
    podName,
    (p) => ['Succeeded', 'Failed'].includes(p.status?.phase ?? ''),
    90_000,
    `${podName} to complete`,
    100,
  );
  const observedDelayMs = Date.now() - t0;
  const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
  const finished = (s: (typeof statuses)[number]) => new Date(s.state?.terminated?.finishedAt ?? 0).getTime();
  const app = statuses.find((s) => s.name === 'app')!;
  const last = Math.max(...statuses.map(finished));
  return { pod, observedDelayMs, stampDelayS: (last - finished(app)) / 1000 };
}

/**
 * A crash of the FUSE client (kill -9, no unmount), found by walking /proc since the mount image has no
 * pkill. `all`: every juicefs process, its supervisor too (the whole client is gone). `server`: only the
 * mount process that serves FUSE, the child of juicefs's own supervisor, which holds the FUSE fd and
 * restarts it. Returns the pids killed.
 */
export async function killClient(
  w: World,
  namespace: string,
  pod: string,
  container: string,
  which: 'all' | 'server' = 'all',
): Promise<string> {
  const pick =
    which === 'all'
      ? 'true'
      : 'pp=; while read -r k v _; do [ "$k" = PPid: ] && pp=$v; done <$d/status; [ "$(cat /proc/$pp/comm 2>/dev/null)" = juicefs ]';
  const script = `for d in /proc/[0-9]*; do [ "$(cat $d/comm 2>/dev/null)" = juicefs ] || continue; ${pick} || continue; echo \${d#/proc/}; kill -9 \${d#/proc/}; done; true`;
  return (await exec(w, namespace, pod, container, ['sh', '-c', script])).out.trim();
}

/**
 * kill -9 from the host of every juicefs process of a pod (found by its kubepods cgroup, cgroupfs driver).
 * Unlike a kill inside the container this also ends a juicefs that is the container's PID 1 (a Mount Pod's):
 * PID 1 of a PID namespace ignores SIGKILL sent from inside it.
 */
export function killClientFromHost(podUid: string): number[] {
  const killed: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/comm`, 'utf8').trim() !== 'juicefs') continue;
      if (!readFileSync(`/proc/${e}/cgroup`, 'utf8').includes(`pod${podUid}`)) continue;
      process.kill(Number(e), 'SIGKILL');
      killed.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return killed;
}

/** ms until `ls` of `dir` in the app container works again (first attempt at once), or undefined after capMs. */
export async function timeToVolumeBack(
  w: World,
  namespace: string,
  pod: string,
  dir: string,
  capMs: number,
): Promise<{ ms?: number; lastError: string }> {
  const t0 = Date.now();
  let lastError = '';
  while (Date.now() - t0 < capMs) {
    const r = await exec(w, namespace, pod, 'app', ['sh', '-c', `ls ${dir} >/dev/null && echo ok`], 10_000).catch(
      (e: Error) => ({ out: '', err: e.message, status: {} }),
    );
    if (r.out.trim() === 'ok') return { ms: Date.now() - t0, lastError };
    lastError = r.err.trim();
    await sleep(250);
  }
  return { lastError };
}

export const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
