// Mount Pod mode on the real node, as the node suites need it: a control plane
// with kube-scheduler, the real node (kubelet + containerd) with the node
// plugin as the shipped DaemonSet registered with the kubelet
// (src/local/real-node-stack.ts), a JuiceFS volume the Mount Pods can open,
// and a client of the node plugin's socket for the tests that hold the node
// service to its CSI contract themselves. Mount Pods are real pods run by the
// kubelet; app pods' volumes are published by the kubelet.
import { CoreV1Api, Exec, type KubeConfig, type V1Pod, type V1Status } from '@kubernetes/client-node';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import { ATTR, SYSTEM_NAMESPACE } from '../../src/contract/keys.js';
import { applyObjects, readManifest } from '../../src/local/components.js';
import { ControlPlane, ensureBinaries } from '../../src/local/control-plane.js';
import { csiClient, type CsiCall } from '../../src/local/csi-client.js';
import { detachMountsUnder } from '../../src/local/mounts.js';
import { KUBELET_ROOT, startRealNodeStack, type RealNodeStack } from '../../src/local/real-node-stack.js';
import { eventually, type TapLike } from './harness.js';

export const MOUNT_POD_NAMESPACE = SYSTEM_NAMESPACE;
/** The node plugin's CSI socket on the host (its DaemonSet's plugin-dir hostPath). */
export const NODE_PLUGIN_SOCKET = `${KUBELET_ROOT}/plugins/csi.juicefs.com/csi.sock`;
/**
 * The one host folder the Mount Pod mounts at the same path as the host (the cache hostPath): the
 * volume's SQLite file and bucket live here so the Mount Pod's client opens what the host formatted.
 */
export const VOLUME_PARENT = '/var/jfsCache';
/** Small Mount Pods: the node has 2 CPUs, and the defaults (1 CPU, 1 GiB) would not fit beside app pods. */
export const SMALL_MOUNT_POD: Record<string, string> = { [ATTR.cpuRequest]: '100m', [ATTR.memoryRequest]: '128Mi' };

export interface RealNodeVolume {
  dir: string;
  juicefs: string;
  name: string;
  metaurl: string;
  bucket: string;
  /** The volume's UUID: its Mount Pods' cache is /var/jfsCache/<uuid> on the host. */
  uuid: string;
  /** What a Secret of this volume holds: the volume is formatted already (the Mount Pod only mounts). */
  secrets: Record<string, string>;
  /** Runs the host's juicefs client; throws on failure. */
  run(args: string[]): string;
}

export interface RealNodeHarness {
  cp: ControlPlane;
  admin: KubeConfig;
  core: CoreV1Api;
  stack: RealNodeStack;
  vol: RealNodeVolume;
  /** Scratch folder the node plugin sees at the same path (under the kubelet root): targets go here. */
  dir: string;
  /** A kubeconfig of the node plugin's ServiceAccount (its shipped RBAC). */
  nodeKubeconfig: string;
  call: CsiCall;
  mountPods: () => Promise<V1Pod[]>;
  /** The node plugin's pod (Running). */
  nodePluginPod: () => Promise<V1Pod>;
  /** SIGKILLs the first container of a pod through containerd, as a crashed process would end. */
  killContainer: (pod: V1Pod) => void;
  exec: (namespace: string, pod: string, container: string, command: string[]) => Promise<ExecResult>;
}

export interface ExecResult {
  out: string;
  err: string;
  status: V1Status;
}

/** A JuiceFS volume under /var/jfsCache/<unique>, formatted with the host's client. */
export function makeRealNodeVolume(name: string): RealNodeVolume {
  const { juicefs } = ensureBinaries(['juicefs']);
  const dir = path.join(VOLUME_PARENT, `jfs-test-${name}-${process.pid}-${Date.now()}`);
  mkdirSync(dir);
  const metaurl = `sqlite3://${dir}/meta.db`;
  const bucket = `${dir}/data/`;
  const run = (args: string[]) => {
    const r = spawnSync(juicefs, args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`juicefs ${args[0]} failed: ${r.stderr.split('\n').slice(-3).join(' ')}`);
    return r.stdout;
  };
  run(['format', '--storage=file', `--bucket=${bucket}`, '--trash-days=0', metaurl, name]);
  const uuid = (JSON.parse(run(['status', metaurl])) as { Setting: { UUID: string } }).Setting.UUID;
  return { dir, juicefs, name, metaurl, bucket, uuid, secrets: { name, metaurl }, run };
}

/** The id containerd knows a pod's first container by (its status's containerID). */
export function containerIdOf(pod: V1Pod): string {
  const id = pod.status?.containerStatuses?.[0]?.containerID ?? '';
  if (!id.startsWith('containerd://')) throw new Error(`pod ${pod.metadata?.name} has no running container (${id})`);
  return id.slice('containerd://'.length);
}

export async function startRealNodeHarness(t: TapLike, opts: { volumeName: string }): Promise<RealNodeHarness> {
  const cp = await ControlPlane.start({ controllerManager: true, scheduler: true });
  process.once('exit', () => cp.killNow());
  // What is up so far, for the teardown (a start may fail half-way).
  const up: { stack?: RealNodeStack; vol?: RealNodeVolume; client?: ReturnType<typeof csiClient> } = {};
  const dir = path.join(KUBELET_ROOT, `jfs-test-${opts.volumeName}-${process.pid}`);
  const madeParent = mkdirSync(VOLUME_PARENT, { recursive: true }) !== undefined;
  // One teardown, in order: the node needs the API server to drain its pods.
  t.teardown(async () => {
    const failed = !t.passing();
    const { stack, vol, client } = up;
    client?.close();
    if (failed && stack) t.comment(`node logs:\n${stack.node.logs(60)}`);
    detachMountsUnder(dir); // a failed test may leave a target mounted: never recurse into it
    rmSync(dir, { recursive: true, force: true });
    await stack?.stop();
    if (failed) t.comment(`control plane logs:\n${cp.logs(60)}`);
    await cp.stop();
    if (vol) {
      rmSync(vol.dir, { recursive: true, force: true });
      rmSync(path.join(VOLUME_PARENT, vol.uuid), { recursive: true, force: true });
    }
    // Only if this run made it and it is empty (another node user, e.g. `npm start`, may be using it).
    if (madeParent) {
      try {
        rmdirSync(VOLUME_PARENT);
      } catch {
        t.comment(`${VOLUME_PARENT} left: not empty`);
      }
    }
  });
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  // Without its CSIDriver object the kubelet would wait for an attachment that never comes.
  await applyObjects(admin, readManifest('csidriver.yaml'));
  const vol = (up.vol = makeRealNodeVolume(opts.volumeName));
  const stack = (up.stack = await startRealNodeStack(cp, { dir: cp.dir, log: pino({ level: 'warn' }) }));
  mkdirSync(dir, { recursive: true });
  const client = (up.client = csiClient(NODE_PLUGIN_SOCKET, 'Node'));
  await eventually(
    () => core.readNamespacedServiceAccount({ name: 'default', namespace: MOUNT_POD_NAMESPACE }),
    30_000,
    'default ServiceAccount',
  );
  const nodeKubeconfig = await cp.serviceAccountKubeconfig(MOUNT_POD_NAMESPACE, 'jfs-sidecar-node');
  const mountPods = async () =>
    (
      await core.listNamespacedPod({
        namespace: MOUNT_POD_NAMESPACE,
        labelSelector: 'app.kubernetes.io/name=juicefs-mount',
      })
    ).items;
  const nodePluginPod = async () =>
    eventually(
      async () =>
        (
          await core.listNamespacedPod({
            namespace: MOUNT_POD_NAMESPACE,
            labelSelector: 'app.kubernetes.io/name=jfs-sidecar-node',
          })
        ).items.find((p) => p.status?.phase === 'Running' && !p.metadata?.deletionTimestamp),
      60_000,
      'node plugin pod Running',
    );
  const node = stack.node;
  const killContainer = (pod: V1Pod) => {
    const r = spawnSync(
      'ctr',
      ['--address', node.containerdSocket, '-n', 'k8s.io', 'tasks', 'kill', '-s', 'SIGKILL', containerIdOf(pod)],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`ctr tasks kill failed: ${r.stderr.trim()}`);
  };
  const exec = (namespace: string, pod: string, container: string, command: string[]) => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (c: Buffer) => (out += c.toString()));
    stderr.on('data', (c: Buffer) => (err += c.toString()));
    return new Promise<ExecResult>((resolve, reject) => {
      new Exec(admin)
        .exec(namespace, pod, container, command, stdout, stderr, null, false, (status) =>
          resolve({ out, err, status }),
        )
        .catch(reject);
    });
  };
  return {
    cp,
    admin,
    core,
    stack,
    vol,
    dir,
    nodeKubeconfig,
    call: client.call,
    mountPods,
    nodePluginPod,
    killContainer,
    exec,
  };
}
