// A real node for the local control plane: Debian's containerd and runc, and a
// kubelet built from the control plane's own k8s.io/kubernetes version, run as
// plain processes (no systemd) on this machine. Everything stays local: the
// kubelet and containerd listen on Unix sockets and 127.0.0.1, the pod network
// is a host-only bridge with no address, gateway or route, and the API server
// dials the kubelet as `localhost` (the node's name). What they change on the
// host (mounts, the bridge, sysctls, cgroups, folders under /var and /run) is
// recorded as it happens and undone on stop, and by the next start if this
// process died before it could (the record survives in LOCK_DIR).
//
// One real node per machine at a time: the kubelet hard-codes host folders
// (/var/lib/kubelet/device-plugins, /var/log/containers) and cgroup names
// (kubepods) that two of them would share and undo under each other.
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readMounts } from '../juicefs/mounts.js';
import { ensureBinaries, freePort, type ControlPlane } from './control-plane.js';

/** The node's name: the API server dials `localhost:<kubelet port>` (--kubelet-preferred-address-types=Hostname,…). */
export const REAL_NODE_NAME = 'localhost';
export const DEFAULT_SANDBOX_IMAGE = 'registry.k8s.io/pause:3.10';
/** The host folder under which the product's sidecars and Mount Pods mount (Bidirectional: must be a shared mount). */
export const MOUNT_ROOT = '/var/lib/juicefs/volume';
/** The pod network: a bridge with no host address (pods reach only each other). */
export const POD_BRIDGE = 'jfsnode0';
export const POD_SUBNET = '10.88.93.0/24';
/** Held by the one running real node: its owner's pid and the record of its host changes (state.json). */
export const LOCK_DIR = '/run/jfs-sidecar-real-node';

const CNI_BIN_DIR = '/usr/lib/cni';
/** Folders containerd, CNI and the kubelet create whatever their configured roots say: removed on stop if new. */
export const HOST_PATHS = [
  '/var/lib/kubelet', // device-plugins is hard-coded, whatever --root-dir says
  '/var/log/containers',
  '/var/log/pods',
  '/run/containerd', // containerd 1.6's shim sockets: /run/containerd/s
  '/var/lib/cni', // libcni's result cache
  '/run/netns',
  '/opt/containerd',
  '/var/lib/juicefs',
  '/var/jfsCache',
];
/** What the kubelet sets at start (protectKernelDefaults: false), and what CNI might: restored on stop. */
export const NODE_SYSCTLS = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
  'net/ipv4/ip_forward',
];

export interface RealNodeOptions {
  /** Parent of the run folder (default: the OS temp folder). */
  parentDir?: string;
  /** CRI's sandbox (pause) image; it must be imported, nothing is pulled. */
  sandboxImage?: string;
  /** A folder of containerd `hosts.toml` files (CRI registry.config_path), e.g. mirrors to a loopback registry. */
  registryConfigDir?: string;
  /** Image archives (OCI or docker-save) imported with `ctr -n k8s.io images import` once containerd is up. */
  importArchives?: string[];
  /** Pods of these namespaces are deleted after the others on stop (they may serve the others' unmounts). */
  systemNamespaces?: string[];
  /**
   * The kubelet's --root-dir (default: `kubelet` in the run folder). Manifests written for a standard
   * node name /var/lib/kubelet in their hostPaths; give that here to run them unchanged.
   */
  kubeletRootDir?: string;
  /** Keep the run folder (logs, configs) after stop. */
  keepDir?: boolean;
  /** How long to wait for another process's real node to stop (default 5 min). */
  lockTimeoutMs?: number;
  /** Progress lines (default: none). */
  log?: (msg: string) => void;
}

export interface RealNodeTimings {
  /** From spawning containerd to its API answering. */
  containerdUpMs: number;
  /** Importing the archives. */
  importMs: number;
  /** From spawning the kubelet to the node being Ready. */
  nodeReadyMs: number;
}

export interface RealNode {
  readonly nodeName: string;
  /** The run folder: configs, logs, containerd's root and state, the kubelet root. */
  readonly dir: string;
  /** The kubelet's --root-dir (pods/, plugins/, plugins_registry/). */
  readonly kubeletRoot: string;
  readonly containerdSocket: string;
  /** The kubelet's podLogsDir: <ns>_<pod>_<uid>/<container>/<n>.log. */
  readonly podLogsDir: string;
  readonly timings: RealNodeTimings;
  /** Imports more image archives into containerd's k8s.io namespace. */
  importImages(archives: string[]): void;
  /** The last lines of the kubelet's and containerd's logs. */
  logs(lines?: number): string;
  /**
   * Deletes the node's pods (app namespaces first) and waits, then stops everything and undoes the
   * host changes. Safe to call twice.
   */
  stop(): Promise<void>;
  /** The same without waiting for pods, synchronously: for a process 'exit' handler. */
  killNow(): void;
}

/** One missing prerequisite, and the Debian package that provides it (if a package does). */
interface Missing {
  what: string;
  apt?: string;
}

function missingPrerequisites(): Missing[] {
  const missing: Missing[] = [];
  if (process.getuid?.() !== 0)
    missing.push({ what: 'root (containerd, runc and the kubelet mount, make cgroups and netns)' });
  if (!isCharDevice('/dev/fuse'))
    missing.push({
      what: '/dev/fuse (the FUSE device: `modprobe fuse`, or run the container with --device /dev/fuse)',
      apt: 'fuse3',
    });
  const commands: [string, string][] = [
    ['containerd', 'containerd'],
    ['ctr', 'containerd'],
    ['containerd-shim-runc-v2', 'containerd'],
    ['runc', 'runc'],
    ['ip', 'iproute2'],
  ];
  for (const [cmd, apt] of commands) if (!which(cmd)) missing.push({ what: `${cmd} (not on PATH)`, apt });
  for (const plugin of ['bridge', 'host-local', 'loopback'])
    if (!isExecutable(path.join(CNI_BIN_DIR, plugin)))
      missing.push({ what: `${CNI_BIN_DIR}/${plugin} (CNI plugin)`, apt: 'containernetworking-plugins' });
  if (!existsSync('/sys/fs/cgroup/memory') && !existsSync('/sys/fs/cgroup/cgroup.controllers'))
    missing.push({ what: 'a cgroup hierarchy (neither cgroup v1 memory nor cgroup v2 at /sys/fs/cgroup)' });
  if (!nodeIp())
    missing.push({ what: 'a non-loopback IPv4 address (the kubelet refuses a loopback node IP; nothing dials it)' });
  return missing;
}

/** What this machine lacks to run a real node, one line each (empty: nothing). */
export function missingRealNodePrerequisites(): string[] {
  return missingPrerequisites().map((m) => m.what);
}

/** What is missing (a line each) and the apt-get line that installs it; undefined when nothing is. */
export function realNodePrerequisiteProblem(): string | undefined {
  const missing = missingPrerequisites();
  if (missing.length === 0) return undefined;
  const packages = [...new Set(missing.flatMap((m) => (m.apt ? [m.apt] : [])))];
  return (
    `a real node (kubelet + containerd) cannot run here; missing:\n${missing.map((m) => `  - ${m.what}`).join('\n')}` +
    (packages.length > 0
      ? `\ninstall (Debian, as root): apt-get update && apt-get install -y ${packages.join(' ')}`
      : '')
  );
}

/** Throws realNodePrerequisiteProblem() as one error. */
export function assertRealNodePrerequisites(): void {
  const problem = realNodePrerequisiteProblem();
  if (problem) throw new Error(problem);
}

/** The record of what this node changed on the host, kept in LOCK_DIR/state.json as it grows. */
interface HostState {
  ownerPid: number;
  dir: string;
  keepDir: boolean;
  kubeletRoot: string;
  containerdSocket: string;
  pids: { kubelet?: number; containerd?: number };
  createdHostPaths: string[];
  /** /proc/sys paths → value before the kubelet started. */
  sysctls: Record<string, string>;
  /** Mount points under /var/lib/juicefs, /run/netns and the kubelet root before start (anything new there is ours). */
  mountsBefore: string[];
  netnsBefore: string[];
  /** We bind-mounted MOUNT_ROOT on itself (to make it shared). */
  mountRootBound: boolean;
  /** MOUNT_ROOT was a mount point already: its propagation flag then, to restore. */
  mountRootPropagation?: 'shared' | 'slave' | 'private';
}

export async function startRealNode(cp: ControlPlane, opts: RealNodeOptions = {}): Promise<RealNode> {
  assertRealNodePrerequisites();
  const log = opts.log ?? (() => {});
  await acquireLock(opts.lockTimeoutMs ?? 300_000, log);
  const parent = opts.parentDir ?? tmpdir();
  mkdirSync(parent, { recursive: true });
  const dir = mkdtempSync(path.join(parent, 'jfs-real-node-'));
  const kubeletRoot = path.resolve(opts.kubeletRootDir ?? path.join(dir, 'kubelet'));
  const state: HostState = {
    ownerPid: process.pid,
    dir,
    keepDir: !!opts.keepDir,
    kubeletRoot,
    containerdSocket: path.join(dir, 'containerd/containerd.sock'),
    pids: {},
    createdHostPaths: [...new Set([...HOST_PATHS, kubeletRoot])].filter((p) => !under(p, dir) && !existsSync(p)),
    sysctls: {},
    mountsBefore: mountPointsUnder(['/var/lib/juicefs', '/run/netns', kubeletRoot]),
    netnsBefore: listDir('/run/netns'),
    mountRootBound: false,
  };
  saveState(state);
  const node = new RealNodeImpl(cp, opts, state, log);
  // Leaving mounts, a bridge or sysctls behind is worse than leaving processes: undo them even when
  // the process exits without calling stop() (a crashed test); 'exit' handlers run only synchronous code.
  process.once('exit', node.exitHook);
  try {
    await node.boot();
    return node;
  } catch (err) {
    const logs = node.logs(40);
    node.killNow();
    throw new Error(`real node failed to start: ${(err as Error).message}\n${logs}`, { cause: err });
  }
}

class RealNodeImpl implements RealNode {
  readonly nodeName = REAL_NODE_NAME;
  readonly dir: string;
  readonly kubeletRoot: string;
  readonly containerdSocket: string;
  readonly podLogsDir: string;
  readonly timings: RealNodeTimings = { containerdUpMs: 0, importMs: 0, nodeReadyMs: 0 };
  private kubelet: ChildProcess | undefined;
  private containerd: ChildProcess | undefined;
  private done = false;
  readonly exitHook = () => this.killNow();

  constructor(
    private readonly cp: ControlPlane,
    private readonly opts: RealNodeOptions,
    private readonly state: HostState,
    private readonly log: (msg: string) => void,
  ) {
    this.dir = state.dir;
    this.kubeletRoot = state.kubeletRoot;
    this.containerdSocket = state.containerdSocket;
    this.podLogsDir = path.join(this.dir, 'pod-logs');
  }

  private at(...p: string[]): string {
    return path.join(this.dir, ...p);
  }

  async boot(): Promise<void> {
    const bins = ensureBinaries(['kubelet']);
    for (const d of [
      'containerd/root',
      'containerd/state',
      'containerd/runc',
      'containerd/opt',
      'cni/net.d',
      'cni/ipam',
    ])
      mkdirSync(this.at(d), { recursive: true });
    mkdirSync(this.kubeletRoot, { recursive: true });
    mkdirSync(this.podLogsDir, { recursive: true });
    mkdirSync(this.at('volume-plugins'), { recursive: true });
    writeFileSync(this.at('containerd/config.toml'), this.containerdConfig());
    writeFileSync(this.at('cni/net.d/10-jfs-node.conflist'), cniConflist(this.at('cni/ipam')));

    let t0 = Date.now();
    this.containerd = this.spawnDaemon(
      'containerd',
      which('containerd')!,
      ['--config', this.at('containerd/config.toml')],
      {
        // Nothing is pulled from outside: a registry other than loopback is reached through a proxy
        // that does not exist, so a missing image fails at once instead of leaving this machine.
        HTTP_PROXY: 'http://127.0.0.1:9',
        HTTPS_PROXY: 'http://127.0.0.1:9',
        NO_PROXY: '127.0.0.1,localhost,::1',
      },
    );
    this.state.pids.containerd = this.containerd.pid;
    saveState(this.state);
    await this.waitFor(() => this.ctr(['version']).status === 0, 30_000, 'containerd to answer');
    this.timings.containerdUpMs = Date.now() - t0;
    this.log(`containerd up in ${this.timings.containerdUpMs} ms`);

    t0 = Date.now();
    this.importImages(this.opts.importArchives ?? []);
    this.timings.importMs = Date.now() - t0;

    this.prepareHost();
    const kubeletPort = await freePort();
    const healthzPort = await freePort();
    const client = await this.cp.issueClient(`system:node:${REAL_NODE_NAME}`, ['system:nodes']);
    const serving = await this.cp.issueServing(REAL_NODE_NAME, ['localhost'], ['127.0.0.1']);
    writeFileSync(this.at('kubelet.crt'), serving.cert, { mode: 0o600 });
    writeFileSync(this.at('kubelet.key'), serving.key, { mode: 0o600 });
    writeFileSync(this.at('resolv.conf'), 'nameserver 127.0.0.1\n'); // pods' DNS stays on their own loopback
    writeFileSync(this.at('kubelet-config.yaml'), this.kubeletConfig(kubeletPort, healthzPort));
    const kubeconfig = this.cp.writeKubeconfig(`kubelet-${REAL_NODE_NAME}`, client);

    t0 = Date.now();
    this.kubelet = this.spawnDaemon(
      'kubelet',
      bins.kubelet,
      [
        `--config=${this.at('kubelet-config.yaml')}`,
        `--kubeconfig=${kubeconfig}`,
        `--root-dir=${this.kubeletRoot}`,
        `--cert-dir=${path.join(this.kubeletRoot, 'pki')}`,
        `--hostname-override=${REAL_NODE_NAME}`,
        // kubelet refuses a loopback node IP (and would resolve `localhost` otherwise); nothing dials this one.
        `--node-ip=${nodeIp()!}`,
        '--v=2',
      ],
      // No /usr/sbin or /sbin: no iptables for the kubelet to touch (makeIPTablesUtilChains is off too).
      { PATH: '/usr/local/bin:/usr/bin:/bin' },
    );
    this.state.pids.kubelet = this.kubelet.pid;
    saveState(this.state);
    const core = this.cp.adminKubeConfig().makeApiClient(CoreV1Api);
    await this.waitFor(
      async () => {
        const n = await core.readNode({ name: REAL_NODE_NAME });
        // Reported by this kubelet: a Node left by an earlier one may still say Ready (heartbeats have 1 s resolution).
        const ready = n.status?.conditions?.find((c) => c.type === 'Ready');
        return ready?.status === 'True' && new Date(ready.lastHeartbeatTime ?? 0).getTime() >= t0 - 1000;
      },
      120_000,
      `node ${REAL_NODE_NAME} Ready`,
    );
    this.timings.nodeReadyMs = Date.now() - t0;
    this.log(`node ${REAL_NODE_NAME} Ready ${this.timings.nodeReadyMs} ms after the kubelet started`);
  }

  /** Saves what the kubelet changes and makes MOUNT_ROOT a shared mount, recording each step. */
  private prepareHost(): void {
    for (const key of NODE_SYSCTLS) {
      const v = readSysctl(key);
      if (v !== undefined) this.state.sysctls[key] = v;
    }
    saveState(this.state);
    // Without systemd, / is private; containerd refuses a Bidirectional mount under a mount that is not shared.
    mkdirSync(MOUNT_ROOT, { recursive: true });
    const existing = readMounts().find((m) => m.mountPoint === MOUNT_ROOT);
    if (existing) {
      this.state.mountRootPropagation = propagationOf(MOUNT_ROOT);
    } else {
      run('mount', ['--bind', MOUNT_ROOT, MOUNT_ROOT]);
      this.state.mountRootBound = true;
    }
    saveState(this.state);
    run('mount', ['--make-rshared', MOUNT_ROOT]);
  }

  importImages(archives: string[]): void {
    for (const a of archives) {
      const res = this.ctr(['-n', 'k8s.io', 'images', 'import', a]);
      if (res.status !== 0) throw new Error(`ctr images import ${a} failed: ${res.stderr}`);
    }
    if (archives.length > 0) {
      // Keep them from image GC (besides GC being off): CRI honours this label where it supports pinning.
      const refs = this.ctr(['-n', 'k8s.io', 'images', 'ls', '-q']).stdout.split('\n').filter(Boolean);
      for (const ref of refs) this.ctr(['-n', 'k8s.io', 'images', 'label', ref, 'io.cri-containerd.pinned=pinned']);
    }
  }

  private ctr(args: string[]) {
    return spawnSync('ctr', ['--address', this.containerdSocket, ...args], { encoding: 'utf8', timeout: 120_000 });
  }

  private spawnDaemon(name: string, bin: string, args: string[], env: Record<string, string>): ChildProcess {
    // Its own process group (a terminal's Ctrl-C must not kill it before the pods are drained), and its
    // output straight into a file (no pipe through this process that could break mid-cleanup).
    const fd = openSync(this.at(`${name}.log`), 'a');
    try {
      const child = spawn(bin, args, { stdio: ['ignore', fd, fd], detached: true, env: { ...process.env, ...env } });
      child.on('error', () => {}); // reported by waitFor through exitCode
      return child;
    } finally {
      closeSync(fd);
    }
  }

  private async waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const [name, child] of [
        ['containerd', this.containerd],
        ['kubelet', this.kubelet],
      ] as const)
        if (child && child.exitCode !== null)
          throw new Error(`${name} exited with code ${child.exitCode} while waiting for ${what}`);
      try {
        if (await check()) return;
      } catch {
        // not yet
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(200);
    }
  }

  private containerdConfig(): string {
    const q = (s: string) => JSON.stringify(s); // TOML basic strings share JSON's escapes for paths
    const registry = this.opts.registryConfigDir
      ? `\n  [plugins."io.containerd.grpc.v1.cri".registry]\n    config_path = ${q(this.opts.registryConfigDir)}\n`
      : '';
    return `version = 2
root = ${q(this.at('containerd/root'))}
state = ${q(this.at('containerd/state'))}
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = ${q(this.containerdSocket)}
[ttrpc]
  address = ${q(`${this.containerdSocket}.ttrpc`)}
[debug]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = ${q(this.at('containerd/opt'))}
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = ${q(this.opts.sandboxImage ?? DEFAULT_SANDBOX_IMAGE)}
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    disable_apparmor = true
    # Machines without CAP_SYS_RESOURCE (this one, CI) cannot lower oom_score_adj: CRI's -998 for
    # sandboxes makes runc fail ("can't get final child's PID from pipe"); clamp to containerd's own.
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          BinaryName = ${q(which('runc')!)}
          Root = ${q(this.at('containerd/runc'))}
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = ${q(CNI_BIN_DIR)}
      conf_dir = ${q(this.at('cni/net.d'))}
      max_conf_num = 1${registry}
`;
  }

  private kubeletConfig(port: number, healthzPort: number): string {
    // JSON is YAML: one quoting rule for every path.
    const config = {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      cgroupDriver: 'cgroupfs',
      failCgroupV1: false,
      failSwapOn: false,
      protectKernelDefaults: false,
      containerRuntimeEndpoint: `unix://${this.containerdSocket}`,
      imageServiceEndpoint: `unix://${this.containerdSocket}`,
      address: '127.0.0.1',
      port,
      readOnlyPort: 0,
      healthzBindAddress: '127.0.0.1',
      healthzPort,
      tlsCertFile: this.at('kubelet.crt'),
      tlsPrivateKeyFile: this.at('kubelet.key'),
      // The API server authenticates with its kubelet client certificate; the kubelet asks the API
      // server (TokenReview, SubjectAccessReview) who that is and what it may do.
      authentication: {
        anonymous: { enabled: false },
        webhook: { enabled: true },
        x509: { clientCAFile: this.cp.caFile },
      },
      authorization: { mode: 'Webhook' },
      makeIPTablesUtilChains: false,
      hairpinMode: 'none',
      podLogsDir: this.podLogsDir,
      volumePluginDir: this.at('volume-plugins'),
      resolvConf: this.at('resolv.conf'),
      // Local images are all there is: never collect them.
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      // A shared development machine: evict only when it is truly full.
      evictionHard: {
        'memory.available': '50Mi',
        'nodefs.available': '1%',
        'imagefs.available': '1%',
        'nodefs.inodesFree': '1%',
      },
      maxPods: 50,
      serializeImagePulls: false,
    };
    return `${JSON.stringify(config, null, 2)}\n`;
  }

  logs(lines = 40): string {
    return ['kubelet', 'containerd']
      .map((name) => {
        const file = this.at(`${name}.log`);
        const text = existsSync(file) ? readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') : '';
        return `----- ${name} (last ${lines} lines) -----\n${text}`;
      })
      .join('\n');
  }

  async stop(): Promise<void> {
    if (this.done) return;
    if (this.kubelet && this.kubelet.exitCode === null) {
      await this.drain().catch((err: unknown) => this.log(`draining the node failed: ${(err as Error).message}`));
    }
    this.killNow();
  }

  /**
   * Deletes the node's pods while the kubelet runs, so that preStop hooks unmount and CNI DEL runs:
   * app namespaces first, then the system namespaces' (Mount Pods), leaving DaemonSet pods (the node
   * plugin, which the others' unmounts may need) to be stopped with the kubelet.
   */
  private async drain(timeoutMs = 90_000): Promise<void> {
    const core = this.cp.adminKubeConfig().makeApiClient(CoreV1Api);
    const system = new Set(this.opts.systemNamespaces ?? ['kube-system']);
    const deadline = Date.now() + timeoutMs;
    const onNode = async () =>
      (await core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${REAL_NODE_NAME}` })).items;
    const phases: ((p: V1Pod) => boolean)[] = [
      (p) => !system.has(p.metadata!.namespace!),
      (p) => !p.metadata?.ownerReferences?.some((o) => o.kind === 'DaemonSet'),
    ];
    for (const inPhase of phases) {
      const pods = (await onNode()).filter(inPhase);
      for (const p of pods)
        await core
          .deleteNamespacedPod({ name: p.metadata!.name!, namespace: p.metadata!.namespace! })
          .catch(() => undefined); // gone meanwhile
      const uids = new Set(pods.map((p) => p.metadata!.uid));
      while ((await onNode()).some((p) => uids.has(p.metadata!.uid))) {
        if (Date.now() > deadline) {
          this.log('pods still on the node after the drain time-out; stopping the kubelet anyway');
          return;
        }
        await sleep(250);
      }
    }
  }

  killNow(): void {
    if (this.done) return;
    this.done = true;
    process.removeListener('exit', this.exitHook);
    const problems = undoHost(this.state, this.log);
    for (const p of problems) this.log(`cleanup: ${p}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Undoing the host changes: synchronous (it also runs from an 'exit' handler), driven only by the
// recorded HostState, so the next start can run it for a process that died.

/**
 * Stops the node's processes and undoes its host changes; returns what could not be undone.
 * Order: kubelet, containers (through containerd, then whatever is left in kubepods), containerd
 * and its shims, mounts, netns, the bridge, sysctls, cgroups, folders.
 */
function undoHost(state: HostState, log: (msg: string) => void): string[] {
  const problems: string[] = [];
  if (state.pids.kubelet) terminate(state.pids.kubelet, 15_000);
  if (state.pids.containerd && alive(state.pids.containerd)) {
    const ctr = (args: string[]) =>
      spawnSync('ctr', ['--address', state.containerdSocket, '-n', 'k8s.io', ...args], {
        encoding: 'utf8',
        timeout: 10_000,
      });
    const tasks = () => ctr(['tasks', 'ls', '-q']).stdout?.split('\n').filter(Boolean) ?? [];
    for (const id of tasks()) ctr(['tasks', 'kill', '-s', 'SIGKILL', id]);
    for (let i = 0; i < 20 && tasks().length > 0; i++) {
      for (const id of tasks()) ctr(['tasks', 'delete', '-f', id]);
      sleepSync(100);
    }
  }
  killCgroupProcesses(); // a container whose shim is gone
  if (state.pids.containerd) terminate(state.pids.containerd, 15_000);
  for (const pid of shimsOf(state.containerdSocket)) terminate(pid, 2000, 'SIGKILL');
  killCgroupProcesses();

  // Mounts: everything under the run folder (overlay rootfs, sandbox shm, the kubelet's rshared root,
  // volume subpaths), what appeared under /var/lib/juicefs and /run/netns, deepest first; then our bind.
  const before = new Set(state.mountsBefore);
  const ours = () =>
    readMounts()
      .map((m) => m.mountPoint)
      .filter(
        (m) =>
          under(m, state.dir) ||
          under(m, '/run/containerd') ||
          ((under(m, '/var/lib/juicefs') || under(m, '/run/netns') || under(m, state.kubeletRoot)) && !before.has(m)),
      )
      .sort((a, b) => b.length - a.length);
  for (let round = 0; round < 3; round++) {
    const left = ours().filter((m) => m !== MOUNT_ROOT || state.mountRootBound);
    if (left.length === 0) break;
    for (const m of left) spawnSync('umount', ['-l', m]);
  }
  if (!state.mountRootBound && state.mountRootPropagation && existsSync(MOUNT_ROOT))
    spawnSync('mount', [`--make-r${state.mountRootPropagation}`, MOUNT_ROOT]);
  const leftMounts = ours().filter((m) => m !== MOUNT_ROOT || state.mountRootBound);
  if (leftMounts.length > 0) problems.push(`mounts left: ${leftMounts.join(', ')}`);
  const netnsBefore = new Set(state.netnsBefore);
  for (const n of listDir('/run/netns'))
    if (n.startsWith('cni-') && !netnsBefore.has(n)) rmSync(path.join('/run/netns', n), { force: true });

  if (spawnSync('ip', ['link', 'show', POD_BRIDGE], { stdio: 'ignore' }).status === 0)
    if (spawnSync('ip', ['link', 'del', POD_BRIDGE]).status !== 0) problems.push(`bridge ${POD_BRIDGE} left`);

  for (const [key, value] of Object.entries(state.sysctls)) {
    if (readSysctl(key) === value) continue;
    try {
      writeFileSync(path.join('/proc/sys', key), value);
    } catch (err) {
      problems.push(`sysctl ${key} not restored to ${value}: ${(err as Error).message}`);
    }
  }

  for (const cg of kubepodsCgroups()) {
    removeCgroupTree(cg);
    if (existsSync(cg)) problems.push(`cgroup ${cg} left`);
  }

  const mounts = readMounts().map((m) => m.mountPoint);
  for (const p of state.createdHostPaths) {
    if (!existsSync(p)) continue;
    if (mounts.some((m) => under(m, p))) problems.push(`${p} left: it still has mounts`);
    else rmSync(p, { recursive: true, force: true });
  }
  if (!state.keepDir) {
    if (mounts.some((m) => under(m, state.dir))) problems.push(`${state.dir} left: it still has mounts`);
    else rmSync(state.dir, { recursive: true, force: true });
  }
  rmSync(LOCK_DIR, { recursive: true, force: true });
  if (problems.length === 0) log('real node stopped; host changes undone');
  return problems;
}

/**
 * Undoes what a real node left behind when its process died without stopping it (SIGKILL, a crash):
 * its recorded processes, mounts, bridge, sysctls, cgroups and folders. Returns whether there was one.
 * startRealNode does this itself; a preflight may call it to report early.
 */
export function undoDeadRealNode(log: (msg: string) => void = () => {}): boolean {
  const held = readState();
  if (!existsSync(LOCK_DIR) || (held && alive(held.ownerPid))) return false;
  log(`undoing the host changes of a real node whose process (${held?.ownerPid ?? '?'}) died`);
  for (const p of held ? undoHost(held, log) : []) log(`cleanup of the dead node: ${p}`);
  rmSync(LOCK_DIR, { recursive: true, force: true });
  return true;
}

/** Takes LOCK_DIR; a holder that died is cleaned up after first. */
async function acquireLock(timeoutMs: number, log: (msg: string) => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let said = false;
  for (;;) {
    try {
      mkdirSync(LOCK_DIR); // atomic: exactly one process creates it
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    // The state file is written right after the folder: without one, its owner may be about to write it.
    if (!readState()) await sleep(500);
    if (undoDeadRealNode(log)) continue;
    const held = readState();
    if (Date.now() > deadline)
      throw new Error(`another real node (process ${held?.ownerPid ?? '?'}) is running on this machine`);
    if (!said) log(`waiting for the real node of process ${held?.ownerPid ?? '?'} to stop`);
    said = true;
    await sleep(1000);
  }
}

function saveState(state: HostState): void {
  writeFileSync(path.join(LOCK_DIR, 'state.json.tmp'), JSON.stringify(state, null, 2));
  // rename: a reader never sees half a file
  renameSync(path.join(LOCK_DIR, 'state.json.tmp'), path.join(LOCK_DIR, 'state.json'));
}

function readState(): HostState | undefined {
  try {
    return JSON.parse(readFileSync(path.join(LOCK_DIR, 'state.json'), 'utf8')) as HostState;
  } catch {
    return undefined;
  }
}

function cniConflist(ipamDir: string): string {
  // A bridge with no host address, no gateway and no masquerading: pods reach each other only, and
  // nothing is routed anywhere. hostNetwork pods do not use it.
  return `${JSON.stringify(
    {
      cniVersion: '0.4.0',
      name: 'jfs-node',
      plugins: [
        {
          type: 'bridge',
          bridge: POD_BRIDGE,
          isGateway: false,
          ipMasq: false,
          hairpinMode: false,
          ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: POD_SUBNET }]] },
        },
      ],
    },
    null,
    2,
  )}\n`;
}

// ---------------------------------------------------------------------------------------------
// Small host helpers.

function under(p: string, dir: string): boolean {
  return p === dir || p.startsWith(`${dir}/`);
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function mountPointsUnder(dirs: string[]): string[] {
  return readMounts()
    .map((m) => m.mountPoint)
    .filter((m) => dirs.some((d) => under(m, d)));
}

function propagationOf(mountPoint: string): 'shared' | 'slave' | 'private' {
  // mountinfo's optional fields (between the mount options and ' - '): shared:N, master:N
  const line = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === mountPoint);
  const optional = line?.split(' - ')[0].split(' ').slice(6) ?? [];
  if (optional.some((f) => f.startsWith('shared:'))) return 'shared';
  if (optional.some((f) => f.startsWith('master:'))) return 'slave';
  return 'private';
}

/** A non-loopback IPv4 address of this machine (what the kubelet reports as InternalIP). */
function nodeIp(): string | undefined {
  for (const addrs of Object.values(networkInterfaces()))
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return undefined;
}

export function readSysctl(key: string): string | undefined {
  try {
    return readFileSync(path.join('/proc/sys', key), 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Every kubepods cgroup folder: one per v1 hierarchy (cgroupfs driver), or the v2 one. */
export function kubepodsCgroups(): string[] {
  const out: string[] = [];
  if (existsSync('/sys/fs/cgroup/kubepods')) out.push('/sys/fs/cgroup/kubepods');
  for (const h of listDir('/sys/fs/cgroup')) {
    const d = path.join('/sys/fs/cgroup', h, 'kubepods');
    if (existsSync(d)) out.push(d);
  }
  return out;
}

function cgroupTree(dir: string): string[] {
  const subs = readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .flatMap((e) => cgroupTree(path.join(dir, e.name)));
  return [...subs, dir];
}

function killCgroupProcesses(): void {
  for (let round = 0; round < 20; round++) {
    const pids = new Set<number>();
    for (const cg of kubepodsCgroups())
      for (const d of cgroupTree(cg))
        for (const line of safeRead(path.join(d, 'cgroup.procs')).split('\n')) if (line) pids.add(Number(line));
    pids.delete(process.pid);
    if (pids.size === 0) return;
    for (const pid of pids) signal(pid, 'SIGKILL');
    sleepSync(100);
  }
}

function removeCgroupTree(dir: string): void {
  for (let round = 0; round < 20 && existsSync(dir); round++) {
    for (const d of cgroupTree(dir)) {
      try {
        rmdirSync(d);
      } catch {
        // busy for a moment after its last process exits
      }
    }
    if (existsSync(dir)) sleepSync(100);
  }
}

/** containerd-shim-runc-v2 processes of the containerd on this socket (they name it in their arguments). */
function shimsOf(socket: string): number[] {
  const pids: number[] = [];
  for (const entry of listDir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const args = safeRead(`/proc/${entry}/cmdline`).split('\0');
    if (args[0]?.includes('containerd-shim') && args.includes(socket)) pids.push(Number(entry));
  }
  return pids;
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Alive and not a zombie (a child of ours that exited is a zombie until the event loop reaps it). */
function alive(pid: number): boolean {
  const stat = safeRead(`/proc/${pid}/stat`);
  if (!stat) return false;
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] !== 'Z';
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone
  }
}

/** TERM (or `sig`), wait up to `graceMs`, then KILL; synchronous. */
function terminate(pid: number, graceMs: number, sig: NodeJS.Signals = 'SIGTERM'): void {
  if (!alive(pid)) return;
  signal(pid, sig);
  const deadline = Date.now() + graceMs;
  while (alive(pid) && Date.now() < deadline) sleepSync(50);
  if (alive(pid)) signal(pid, 'SIGKILL');
  const killDeadline = Date.now() + 5000;
  while (alive(pid) && Date.now() < killDeadline) sleepSync(50);
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function run(cmd: string, args: string[]): void {
  const res = spawnSync(cmd, args, { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${res.stderr || res.error?.message}`);
}

function which(cmd: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  for (const d of dirs) {
    const p = path.join(d, cmd);
    if (d && isExecutable(p)) return p;
  }
  return undefined;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function isCharDevice(p: string): boolean {
  try {
    return statSync(p).isCharacterDevice();
  } catch {
    return false;
  }
}
