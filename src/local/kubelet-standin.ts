// KUBELET STAND-IN — for tests and the local cluster only. There is no kubelet
// or container runtime here, so for one node object this plays the part a
// kubelet plays for Mount Pods: it runs the pod's own command line on this
// machine (its init containers first), with the real juicefs client and real
// FUSE, reports Running/Ready once the mount is up, restarts the command when
// it exits (restartPolicy Always), runs the preStop hook and finishes the
// deletion when the pod is deleted. What it changes, it says: `juicefs` is the
// locally built binary, and metrics move to a free loopback port (there is no
// pod network namespace).
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Container, type V1Pod } from '@kubernetes/client-node';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { MOUNT_POD_APP_VALUE, MOUNT_POD_LABEL_APP, MOUNT_POINT_ENV } from '../contract/keys.js';
import { isJuicefsMount } from '../juicefs/mounts.js';
import { ResilientInformer } from '../k8s/informer.js';
import { commandLine, resolveEnv } from '../node/expand.js';
import { trackChild } from './components.js';

interface Running {
  pod: V1Pod;
  child?: ChildProcess;
  env: Record<string, string>;
  stopping: boolean;
  ready: boolean;
  timer?: NodeJS.Timeout;
}

export interface StandInOptions {
  kubeConfig: KubeConfig;
  nodeName: string;
  juicefsBinary: string;
  logDir: string;
  log: Logger;
}

export class KubeletStandIn {
  private readonly core: CoreV1Api;
  private readonly pods: ResilientInformer<V1Pod>;
  private readonly running = new Map<string, Running>();

  constructor(private readonly opts: StandInOptions) {
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    const fieldSelector = `spec.nodeName=${opts.nodeName}`;
    const labelSelector = `${MOUNT_POD_LABEL_APP}=${MOUNT_POD_APP_VALUE}`;
    this.pods = new ResilientInformer<V1Pod>({
      kubeConfig: opts.kubeConfig,
      path: '/api/v1/pods',
      list: () => this.core.listPodForAllNamespaces({ fieldSelector, labelSelector }),
      fieldSelector,
      labelSelector,
      log: opts.log,
    });
    const onPod = (pod: V1Pod) => void this.sync(pod).catch((err) => opts.log.warn({ pod: pod.metadata?.name, err: (err as Error).message }, 'stand-in sync failed'));
    this.pods.on('add', onPod);
    this.pods.on('update', onPod);
    this.pods.on('delete', (pod) => void this.stop(pod.metadata!.uid!, false));
  }

  async start(): Promise<void> {
    await this.pods.start();
  }

  async close(): Promise<void> {
    await this.pods.stop();
    for (const uid of [...this.running.keys()]) await this.stop(uid, false);
  }

  /** The process running a Mount Pod (for tests that kill it). */
  processOf(podName: string): ChildProcess | undefined {
    return [...this.running.values()].find((r) => r.pod.metadata?.name === podName)?.child;
  }

  private logFile(pod: V1Pod): string {
    return path.join(this.opts.logDir, `${pod.metadata!.name}.log`);
  }

  private async sync(pod: V1Pod): Promise<void> {
    const uid = pod.metadata!.uid!;
    if (pod.metadata?.deletionTimestamp) return this.stop(uid, true, pod);
    if (this.running.has(uid)) return;
    const state: Running = { pod, env: {}, stopping: false, ready: false };
    this.running.set(uid, state);
    const secrets = new Map<string, Record<string, string>>();
    const getSecret = (name: string) => {
      const data = secrets.get(name);
      return data ? { data } : undefined;
    };
    const container = pod.spec!.containers[0];
    for (const c of [...(pod.spec?.initContainers ?? []), container]) {
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (ref?.name && !secrets.has(ref.name)) {
          const s = await this.core.readNamespacedSecret({ name: ref.name, namespace: pod.metadata!.namespace! });
          secrets.set(ref.name, s.data ?? {});
        }
      }
    }
    for (const init of pod.spec?.initContainers ?? []) {
      const code = await this.runToEnd(pod, init, resolveEnv(pod, init, getSecret));
      if (code !== 0) throw new Error(`init container ${init.name} exited ${code}`);
    }
    state.env = resolveEnv(pod, container, getSecret);
    this.launch(state, container);
    await this.setStatus(pod, false);
    state.timer = setInterval(() => void this.watchMount(state), 200);
  }

  private argv(c: V1Container, env: Record<string, string>): string[] {
    const argv = commandLine(c, env);
    if (argv[0] === 'juicefs') argv[0] = this.opts.juicefsBinary;
    return argv.map((a) => (a.startsWith('--metrics=') ? '--metrics=127.0.0.1:0' : a));
  }

  private runToEnd(pod: V1Pod, c: V1Container, env: Record<string, string>): Promise<number | null> {
    const [cmd, ...args] = this.argv(c, env);
    appendFileSync(this.logFile(pod), `[stand-in] running init container ${c.name}\n`);
    return new Promise((resolve) => {
      const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'ignore'] });
      child.on('exit', (code) => resolve(code));
      child.on('error', () => resolve(-1));
    });
  }

  private launch(state: Running, c: V1Container): void {
    const [cmd, ...args] = this.argv(c, state.env);
    appendFileSync(this.logFile(state.pod), `[stand-in] starting ${c.name}: ${path.basename(cmd)} ${args.filter((a) => !a.includes('://')).join(' ')}\n`);
    const child = trackChild(spawn(cmd, args, { env: { ...process.env, ...state.env }, stdio: ['ignore', 'pipe', 'pipe'] }));
    child.stdout!.on('data', (d) => appendFileSync(this.logFile(state.pod), d));
    child.stderr!.on('data', (d) => appendFileSync(this.logFile(state.pod), d));
    state.child = child;
    child.on('exit', (code, signal) => {
      if (state.stopping) return;
      appendFileSync(this.logFile(state.pod), `[stand-in] ${c.name} exited (${code ?? signal}); restarting it (restartPolicy Always)\n`);
      state.ready = false;
      void this.setStatus(state.pod, false).catch(() => undefined);
      setTimeout(() => !state.stopping && this.launch(state, c), 1000).unref();
    });
  }

  private async watchMount(state: Running): Promise<void> {
    const mounted = isJuicefsMount(state.env[MOUNT_POINT_ENV] ?? '');
    if (mounted !== state.ready) {
      state.ready = mounted;
      await this.setStatus(state.pod, mounted).catch((err) => this.opts.log.warn({ err: (err as Error).message }, 'status update failed'));
    }
  }

  private async setStatus(pod: V1Pod, ready: boolean): Promise<void> {
    const now = new Date().toISOString();
    await this.core.patchNamespacedPodStatus(
      {
        name: pod.metadata!.name!,
        namespace: pod.metadata!.namespace!,
        body: {
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

  /** Runs preStop, stops the process, and (when the API asked for deletion) finishes it, as kubelet does. */
  private async stop(uid: string, finishDeletion: boolean, pod?: V1Pod): Promise<void> {
    const state = this.running.get(uid);
    if (state && !state.stopping) {
      state.stopping = true;
      if (state.timer) clearInterval(state.timer);
      const container = state.pod.spec!.containers[0];
      const preStop = container.lifecycle?.preStop?.exec?.command;
      if (preStop) {
        await new Promise<void>((resolve) => {
          const child = spawn(preStop[0], preStop.slice(1), { env: { ...process.env, ...state.env }, stdio: 'ignore' });
          child.on('exit', () => resolve());
          child.on('error', () => resolve());
        });
      }
      const child = state.child;
      if (child && child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      this.running.delete(uid);
    }
    if (finishDeletion && pod) {
      await this.core
        .deleteNamespacedPod({ name: pod.metadata!.name!, namespace: pod.metadata!.namespace!, gracePeriodSeconds: 0 })
        .catch(() => undefined);
    }
  }
}
