// KUBELET STAND-IN — for tests and the local cluster only. There is no kubelet
// or container runtime here, so for one node object this plays two parts of a
// kubelet, and says so in what it writes:
// - Mount Pods: it runs the pod's own command line on this machine (its init
//   containers first), with the real juicefs client and real FUSE, in its own
//   process group (the "container": when its first process exits, the rest of
//   the group is killed), reports Running/Ready once the mount is up, restarts
//   the command when it exits (restartPolicy Always), runs the preStop hook and
//   finishes the deletion when the pod is deleted. `juicefs` is the locally
//   built binary, and metrics move to a free loopback port (there is no pod
//   network namespace).
// - App pods: for each volume whose PVC is bound to a JuiceFS CSI PV it calls
//   NodePublishVolume on the node socket with a kubelet-shaped target path
//   (<root>/pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount), then reports the
//   pod Running/Ready (its containers are not run: the status message says
//   so); when the pod is deleted it calls NodeUnpublishVolume for those targets
//   and finishes the deletion.
import {
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Container,
  type V1Pod,
  type V1PodCondition,
  type V1Secret,
} from '@kubernetes/client-node';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import {
  CLEAN_CACHE_APP_VALUE,
  CSI_DRIVER_NAME,
  MOUNT_POD_APP_VALUE,
  MOUNT_POD_LABEL_APP,
  MOUNT_POINT_ENV,
} from '../contract/keys.js';
import { isJuicefsMount } from '../juicefs/mounts.js';
import { isStatus, unlessNotFound } from '../k8s/errors.js';
import { ResilientInformer } from '../k8s/informer.js';
import { KeyedLock } from '../util/keyed-lock.js';
import { killGroup, trackChild, waitGroupGone } from './components.js';
import { csiClient, type CsiCall } from './csi-client.js';
import { commandLine, resolveEnv } from './expand.js';
import { LatestValueWriter } from './latest-value-writer.js';

interface Running {
  pod: V1Pod;
  child?: ChildProcess;
  env: Record<string, string>;
  stopping: boolean;
  /** The stop under way or done: every stop of the pod waits for it. */
  stopped?: Promise<void>;
  /** The pod's Ready condition to the API: one write at a time, always of the latest state. */
  status: LatestValueWriter<boolean>;
  timer?: NodeJS.Timeout;
}

interface Published {
  volumeId: string;
  target: string;
}

export interface StandInOptions {
  kubeConfig: KubeConfig;
  nodeName: string;
  juicefsBinary: string;
  logDir: string;
  log: Logger;
  /** The node service's CSI socket; without it app pods are left alone. */
  nodeEndpoint?: string;
  /** Plays /var/lib/kubelet: target paths are made under it (default <logDir>/kubelet). */
  kubeletRoot?: string;
  /** How long to wait before retrying an app pod whose volumes could not be published. */
  retryMs?: number;
}

/** CSI access mode of a PV access mode, as kubelet maps them. */
const ACCESS_MODES: Record<string, string> = {
  ReadWriteOnce: 'SINGLE_NODE_WRITER',
  ReadOnlyMany: 'MULTI_NODE_READER_ONLY',
  ReadWriteMany: 'MULTI_NODE_MULTI_WRITER',
  ReadWriteOncePod: 'SINGLE_NODE_SINGLE_WRITER',
};

/** terminationGracePeriodSeconds of the stand-in's containers: SIGTERM, then SIGKILL after this. */
const STOP_GRACE_MS = 5000;

const isMountPod = (pod: V1Pod) => pod.metadata?.labels?.[MOUNT_POD_LABEL_APP] === MOUNT_POD_APP_VALUE;
const isCleanCachePod = (pod: V1Pod) => pod.metadata?.labels?.[MOUNT_POD_LABEL_APP] === CLEAN_CACHE_APP_VALUE;

export class KubeletStandIn {
  private readonly core: CoreV1Api;
  private readonly pods: ResilientInformer<V1Pod>;
  private readonly running = new Map<string, Running>();
  /** App pods whose volumes are published, by UID. */
  private readonly appPods = new Map<string, Published[]>();
  private readonly appLock = new KeyedLock();
  private readonly retries = new Map<string, NodeJS.Timeout>();
  /** Run-to-completion pods already run (by UID). */
  private readonly completed = new Set<string>();
  private readonly node?: { call: CsiCall; close: () => void };
  private closed = false;
  readonly kubeletRoot: string;

  constructor(private readonly opts: StandInOptions) {
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.kubeletRoot = opts.kubeletRoot ?? path.join(opts.logDir, 'kubelet');
    if (opts.nodeEndpoint) this.node = csiClient(opts.nodeEndpoint, 'Node');
    const fieldSelector = `spec.nodeName=${opts.nodeName}`;
    this.pods = new ResilientInformer<V1Pod>({
      kubeConfig: opts.kubeConfig,
      path: '/api/v1/pods',
      list: () => this.core.listPodForAllNamespaces({ fieldSelector }),
      fieldSelector,
      log: opts.log,
    });
    const onPod = (pod: V1Pod) => {
      const work = isMountPod(pod)
        ? this.syncMountPod(pod)
        : isCleanCachePod(pod)
          ? this.runToCompletion(pod)
          : this.syncAppPod(pod);
      void work.catch((err) =>
        opts.log.warn({ pod: pod.metadata?.name, err: (err as Error).message }, 'stand-in sync failed'),
      );
    };
    this.pods.on('add', onPod);
    this.pods.on('update', onPod);
    this.pods.on('delete', (pod) => {
      if (isCleanCachePod(pod)) return;
      if (isMountPod(pod)) void this.stop(pod.metadata!.uid!, false);
      else
        void this.removeAppPod(pod, false).catch((err) =>
          opts.log.warn({ pod: pod.metadata?.name, err: (err as Error).message }, 'stand-in cleanup failed'),
        );
    });
  }

  async start(): Promise<void> {
    await this.pods.start();
  }

  /**
   * Stops playing kubelet and leaves the machine as it found it: app pods' targets unpublished, Mount Pod processes
   * stopped.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.retries.values()) clearTimeout(t);
    await this.pods.stop();
    for (const [uid, published] of this.appPods) {
      await this.appLock.run(uid, async () => {
        for (const { volumeId, target } of published) {
          await this.node!.call('NodeUnpublishVolume', { volume_id: volumeId, target_path: target }).catch((err) =>
            this.opts.log.warn({ target, err: (err as Error).message }, 'unpublish on close failed'),
          );
        }
      });
    }
    this.appPods.clear();
    for (const uid of [...this.running.keys()]) await this.stop(uid, false);
    this.node?.close();
  }

  /** The target path kubelet gives a pod's CSI volume. */
  targetPath(podUid: string, pvName: string): string {
    return path.join(this.kubeletRoot, 'pods', podUid, 'volumes', 'kubernetes.io~csi', pvName, 'mount');
  }

  /** The targets published for an app pod (for tests). */
  publishedFor(podUid: string): Published[] {
    return [...(this.appPods.get(podUid) ?? [])];
  }

  private async syncAppPod(pod: V1Pod): Promise<void> {
    if (!this.node || this.closed) return;
    const uid = pod.metadata!.uid!;
    if (pod.metadata?.deletionTimestamp) return this.removeAppPod(pod, true);
    await this.appLock.run(uid, async () => {
      if (this.appPods.has(uid) || this.closed) return;
      try {
        const published = await this.publishVolumes(pod);
        this.appPods.set(uid, published);
        await this.setAppStatus(pod, {
          type: 'Ready',
          status: 'True',
          reason: 'KubeletStandIn',
          message: `kubelet stand-in: ${published.length} CSI volume(s) published; containers are not run`,
        });
      } catch (err) {
        const message = `kubelet stand-in: volumes not ready: ${(err as Error).message}`;
        await this.setAppStatus(pod, { type: 'Ready', status: 'False', reason: 'VolumesNotReady', message }).catch(
          () => undefined,
        );
        this.retryLater(pod, (p) => this.syncAppPod(p));
      }
    });
  }

  /** Syncs the pod again in a while (if it is still there, as the same pod), as kubelet's periodic sync does. */
  private retryLater(pod: V1Pod, sync: (pod: V1Pod) => Promise<void>): void {
    const uid = pod.metadata!.uid!;
    if (this.retries.has(uid) || this.closed) return;
    const timer = setTimeout(() => {
      this.retries.delete(uid);
      const current = this.pods.get(pod.metadata!.name!, pod.metadata!.namespace);
      if (current?.metadata?.uid === uid) void sync(current).catch(() => undefined);
    }, this.opts.retryMs ?? 2000);
    timer.unref();
    this.retries.set(uid, timer);
  }

  /** NodePublishVolume for each volume of the pod bound to a JuiceFS CSI PV, as kubelet calls it. */
  private async publishVolumes(pod: V1Pod): Promise<Published[]> {
    const namespace = pod.metadata!.namespace!;
    const published: Published[] = [];
    for (const volume of pod.spec?.volumes ?? []) {
      const claim = volume.persistentVolumeClaim;
      if (!claim) continue;
      const pvc = await this.core.readNamespacedPersistentVolumeClaim({ name: claim.claimName, namespace });
      const pvName = pvc.spec?.volumeName;
      if (!pvName || pvc.status?.phase !== 'Bound')
        throw new Error(`PVC ${namespace}/${claim.claimName} is not bound yet`);
      const pv = await this.core.readPersistentVolume({ name: pvName });
      const csi = pv.spec?.csi;
      if (csi?.driver !== CSI_DRIVER_NAME) continue;
      const secrets: Record<string, string> = {};
      const ref = csi.nodePublishSecretRef;
      if (ref?.name) {
        const secret = await this.core.readNamespacedSecret({ name: ref.name, namespace: ref.namespace ?? namespace });
        for (const [k, v] of Object.entries(secret.data ?? {})) secrets[k] = Buffer.from(v, 'base64').toString('utf8');
      }
      const target = this.targetPath(pod.metadata!.uid!, pvName);
      mkdirSync(path.dirname(target), { recursive: true });
      await this.node!.call('NodePublishVolume', {
        volume_id: csi.volumeHandle,
        target_path: target,
        volume_capability: {
          mount: { mount_flags: pv.spec?.mountOptions ?? [] },
          access_mode: { mode: ACCESS_MODES[pv.spec?.accessModes?.[0] ?? 'ReadWriteMany'] },
        },
        readonly: claim.readOnly === true || csi.readOnly === true,
        volume_context: csi.volumeAttributes ?? {},
        secrets,
      });
      published.push({ volumeId: csi.volumeHandle, target });
    }
    return published;
  }

  /** NodeUnpublishVolume for the pod's targets, then (when the API asked for deletion) finishes it. */
  private async removeAppPod(pod: V1Pod, finishDeletion: boolean): Promise<void> {
    if (!this.node) return;
    const uid = pod.metadata!.uid!;
    await this.appLock.run(uid, async () => {
      const published = this.appPods.get(uid) ?? this.scanTargets(uid);
      for (const { volumeId, target } of published)
        await this.node!.call('NodeUnpublishVolume', { volume_id: volumeId, target_path: target });
      this.appPods.delete(uid);
      if (finishDeletion) {
        await this.finishDeletion(pod);
      }
    });
  }

  /** Targets left under the pod's folder (kubelet finds orphaned volumes the same way); the folder name is the PV. */
  private scanTargets(uid: string): Published[] {
    const dir = path.join(this.kubeletRoot, 'pods', uid, 'volumes', 'kubernetes.io~csi');
    if (!existsSync(dir)) return [];
    return readdirSync(dir).map((pv) => ({ volumeId: pv, target: path.join(dir, pv, 'mount') }));
  }

  private async setAppStatus(pod: V1Pod, condition: V1PodCondition): Promise<void> {
    const now = new Date().toISOString();
    const ready = condition.status === 'True';
    await this.core.patchNamespacedPodStatus(
      {
        name: pod.metadata!.name!,
        namespace: pod.metadata!.namespace!,
        body: {
          status: {
            phase: ready ? 'Running' : 'Pending',
            hostIP: '127.0.0.1',
            startTime: now,
            message: condition.message,
            conditions: [{ ...condition, lastTransitionTime: now }],
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  /**
   * A cache-cleanup Job's pod: its containers run here to the end, one after
   * another, and the pod ends Succeeded or Failed, which the Job controller counts.
   */
  private async runToCompletion(pod: V1Pod): Promise<void> {
    const uid = pod.metadata!.uid!;
    if (pod.metadata?.deletionTimestamp) {
      await this.finishDeletion(pod);
      return;
    }
    if (this.completed.has(uid) || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return;
    this.completed.add(uid);
    const getSecret = await this.secretsOf(pod);
    const statuses = [];
    let failed = false;
    for (const c of pod.spec?.containers ?? []) {
      const startedAt = new Date().toISOString();
      const code: number | null = failed ? null : await this.runToEnd(pod, c, resolveEnv(pod, c, getSecret));
      failed ||= code !== 0;
      statuses.push({
        name: c.name,
        image: c.image ?? '',
        imageID: '',
        ready: false,
        restartCount: 0,
        state: {
          terminated: {
            exitCode: code ?? -1,
            startedAt,
            finishedAt: new Date().toISOString(),
            reason: code === 0 ? 'Completed' : 'Error',
          },
        },
      });
    }
    await this.core.patchNamespacedPodStatus(
      {
        name: pod.metadata!.name!,
        namespace: pod.metadata!.namespace!,
        body: {
          status: {
            phase: failed ? 'Failed' : 'Succeeded',
            hostIP: '127.0.0.1',
            message: "kubelet stand-in: ran the containers' commands on this machine",
            containerStatuses: statuses,
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  /** Kills a Mount Pod's "container" — every process of its group — as a crash would; it is restarted like any exit. */
  killContainer(podName: string): boolean {
    const child = [...this.running.values()].find((r) => r.pod.metadata?.name === podName)?.child;
    if (!child) return false;
    killGroup(child, 'SIGKILL');
    return true;
  }

  private logFile(pod: V1Pod): string {
    return path.join(this.opts.logDir, `${pod.metadata!.name}.log`);
  }

  /** A line of the stand-in's own in the pod's log, with the time and the pod's UID (a name can be reused). */
  private note(pod: V1Pod, text: string): void {
    appendFileSync(
      this.logFile(pod),
      `${new Date().toISOString()} [stand-in] pod ${pod.metadata!.uid!.slice(0, 8)}: ${text}\n`,
    );
  }

  private async syncMountPod(pod: V1Pod): Promise<void> {
    const uid = pod.metadata!.uid!;
    if (pod.metadata?.deletionTimestamp) return this.stop(uid, true, pod);
    if (this.running.has(uid)) return;
    const status = new LatestValueWriter<boolean>(
      (ready) => this.setStatus(pod, ready),
      (err) => this.opts.log.warn({ pod: pod.metadata?.name, err: (err as Error).message }, 'status update failed'),
    );
    const state: Running = { pod, env: {}, stopping: false, status };
    this.running.set(uid, state);
    const container = pod.spec!.containers[0];
    try {
      const getSecret = await this.secretsOf(pod);
      for (const init of pod.spec?.initContainers ?? []) {
        if (state.stopping) return;
        const code = await this.runToEnd(pod, init, resolveEnv(pod, init, getSecret));
        if (code !== 0) throw new Error(`init container ${init.name} exited ${code}`);
      }
      state.env = resolveEnv(pod, container, getSecret);
    } catch (err) {
      // Not started (a Secret not read, an init container failed): tried again later, as kubelet does,
      // instead of a pod left for good with nothing running and never Ready.
      if (!state.stopping) {
        this.running.delete(uid);
        this.retryLater(pod, (p) => this.syncMountPod(p));
      }
      throw err;
    }
    // The pod may have been deleted while its init containers ran: then nothing starts.
    if (state.stopping) return;
    this.launch(state, container);
    state.timer = setInterval(() => void this.watchMount(state), 200);
    state.timer.unref();
    await this.watchMount(state);
  }

  /** The Secrets a pod's env refers to, read once, as kubelet does before starting containers. */
  private async secretsOf(pod: V1Pod): Promise<(name: string) => V1Secret | undefined> {
    const secrets = new Map<string, V1Secret>();
    for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (ref?.name && !secrets.has(ref.name))
          secrets.set(
            ref.name,
            await this.core.readNamespacedSecret({ name: ref.name, namespace: pod.metadata!.namespace! }),
          );
      }
    }
    return (name) => secrets.get(name);
  }

  /** A process's environment: this machine's, the locally built juicefs first on PATH, then the container's env. */
  private processEnv(env: Record<string, string>): NodeJS.ProcessEnv {
    return { ...process.env, PATH: `${path.dirname(this.opts.juicefsBinary)}:${process.env.PATH ?? ''}`, ...env };
  }

  private argv(c: V1Container, env: Record<string, string>): string[] {
    const argv = commandLine(c, env);
    if (argv[0] === 'juicefs') argv[0] = this.opts.juicefsBinary;
    return argv.map((a) => (a.startsWith('--metrics=') ? '--metrics=127.0.0.1:0' : a));
  }

  private runToEnd(pod: V1Pod, c: V1Container, env: Record<string, string>): Promise<number | null> {
    const [cmd, ...args] = this.argv(c, env);
    this.note(pod, `running container ${c.name} to the end`);
    return new Promise((resolve) => {
      const child = spawn(cmd, args, { env: this.processEnv(env), stdio: ['ignore', 'ignore', 'ignore'] });
      child.on('exit', (code) => resolve(code));
      child.on('error', () => resolve(-1));
    });
  }

  private launch(state: Running, c: V1Container): void {
    const [cmd, ...args] = this.argv(c, state.env);
    this.note(
      state.pod,
      `starting ${c.name}: ${path.basename(cmd)} ${args.filter((a) => !a.includes('://')).join(' ')}`,
    );
    const child = trackChild(
      spawn(cmd, args, { env: this.processEnv(state.env), stdio: ['ignore', 'pipe', 'pipe'], detached: true }),
      { group: true },
    );
    child.stdout!.on('data', (d: Buffer) => appendFileSync(this.logFile(state.pod), d));
    child.stderr!.on('data', (d: Buffer) => appendFileSync(this.logFile(state.pod), d));
    state.child = child;
    this.note(state.pod, `${c.name} is pid ${child.pid}`);
    child.on('exit', (code, signal) => {
      if (state.stopping) return;
      this.note(state.pod, `${c.name} exited (${code ?? signal}); restarting it (restartPolicy Always)`);
      void this.watchMount(state);
      setTimeout(() => !state.stopping && this.launch(state, c), 1000).unref();
    });
  }

  /**
   * The readiness probe of a Mount Pod — its container runs and its mount is
   * up — and the Ready condition it asks for. The status goes through one
   * writer per pod: writes fired as the state changed could land out of order
   * (a slow "not ready" after the "ready" that followed it) and leave a pod
   * whose mount is up not Ready for good.
   */
  private async watchMount(state: Running): Promise<void> {
    if (state.stopping) return;
    const child = state.child;
    const running = child !== undefined && child.exitCode === null && child.signalCode === null;
    await state.status.want(running && isJuicefsMount(state.env[MOUNT_POINT_ENV] ?? ''));
  }

  /**
   * The Mount Pod's status; with its UID, so the write fails on a pod re-created under the same name (as kubelet's).
   */
  private async setStatus(pod: V1Pod, ready: boolean): Promise<void> {
    const now = new Date().toISOString();
    await this.core.patchNamespacedPodStatus(
      {
        name: pod.metadata!.name!,
        namespace: pod.metadata!.namespace!,
        body: {
          metadata: { uid: pod.metadata!.uid },
          status: {
            phase: 'Running',
            hostIP: '127.0.0.1',
            podIP: '127.0.0.1',
            startTime: now,
            conditions: [
              { type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: now },
              { type: 'ContainersReady', status: ready ? 'True' : 'False', lastTransitionTime: now },
            ],
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  /**
   * Runs preStop, stops the container, and (when the API asked for deletion)
   * finishes it, as kubelet does. Every call for a pod waits for the one stop
   * under way: an update of a pod already being stopped (a status write that
   * lands late, the informer's re-list) must not finish its deletion while its
   * processes still run — the node service would then create the next Mount
   * Pod, with the same name and mount point, beside the old client.
   */
  private async stop(uid: string, finishDeletion: boolean, pod?: V1Pod): Promise<void> {
    const state = this.running.get(uid);
    if (state) {
      state.stopped ??= this.stopContainer(state).finally(() => this.running.delete(uid));
      await state.stopped;
    }
    if (finishDeletion && pod) await this.finishDeletion(pod).catch(() => undefined);
  }

  /**
   * preStop, SIGTERM, SIGKILL after the grace period; done once no process of
   * the container is left — a container's processes all die with its first one
   * (juicefs's mount process is a child of the supervisor the stand-in started).
   */
  private async stopContainer(state: Running): Promise<void> {
    state.stopping = true;
    state.status.close();
    if (state.timer) clearInterval(state.timer);
    const container = state.pod.spec!.containers[0];
    const preStop = container.lifecycle?.preStop?.exec?.command;
    if (preStop) {
      this.note(state.pod, 'stopping: running the preStop hook');
      await new Promise<void>((resolve) => {
        const child = spawn(preStop[0], preStop.slice(1), { env: this.processEnv(state.env), stdio: 'ignore' });
        child.on('exit', () => resolve());
        child.on('error', () => resolve());
      });
    }
    const child = state.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      this.note(state.pod, `stopping: SIGTERM to pid ${child.pid}`);
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => killGroup(child, 'SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(t);
    }
    if (child) {
      killGroup(child, 'SIGKILL');
      const left = await waitGroupGone(child, STOP_GRACE_MS);
      this.note(
        state.pod,
        `stopped (exit ${child.exitCode ?? child.signalCode}${left.length ? `; still running: ${left.join(' ')}` : ''})`,
      );
    } else this.note(state.pod, 'stopped (nothing was running)');
  }

  /** What kubelet does once a deleted pod's containers are stopped: the final delete, grace period 0. */
  private async finishDeletion(pod: V1Pod): Promise<void> {
    // With the pod's UID as a precondition, as kubelet's: never the pod created since under the same name.
    try {
      await unlessNotFound(
        this.core.deleteNamespacedPod({
          name: pod.metadata!.name!,
          namespace: pod.metadata!.namespace!,
          gracePeriodSeconds: 0,
          body: { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata!.uid } },
        }),
      );
    } catch (err) {
      if (!isStatus(err, 409)) throw err; // that pod is gone; the name is another pod's now
    }
    this.note(pod, 'deletion finished');
  }
}
