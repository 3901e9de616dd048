// A real Kubernetes control plane on loopback, as controller-runtime's envtest
// runs one: etcd, kube-apiserver and kube-controller-manager built from their
// Go modules by test/env/build.sh (or taken from KUBEBUILDER_ASSETS), with
// generated certificates, RBAC, and a complete teardown. Optionally
// kube-scheduler; a real kubelet (real-node.ts) joins with certificates from
// this control plane's CA.
import { CoreV1Api, KubeConfig, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { detachMountsUnder } from './mounts.js';
import { PACKAGE_ROOT } from '../util/package-root.js';
import { makeCa, makeClient, makeServiceAccountKey, makeServing, type Pem } from './pki.js';
import { setTimeout as sleep } from 'node:timers/promises';

const BUILD_SCRIPT = path.join(PACKAGE_ROOT, 'test/env/build.sh');

export type Component =
  | 'kube-apiserver'
  | 'kube-controller-manager'
  | 'kubelet'
  | 'kube-scheduler'
  | 'kubectl'
  | 'etcd'
  | 'juicefs'
  | 'juicefs-prev'
  | 'csi-sanity'
  | 'csi-provisioner'
  | 'csi-resizer'
  | 'csi-snapshotter'
  | 'snapshot-controller';

/** The user the API server presents to kubelets (logs, exec, port-forward), bound to system:kubelet-api-admin. */
export const APISERVER_KUBELET_CLIENT = 'kube-apiserver-kubelet-client';

/** Paths of the binaries, building what is missing (progress goes to stderr). */
export function ensureBinaries(components: Component[]): Record<Component, string> {
  const res = spawnSync('bash', [BUILD_SCRIPT, '--paths', ...components], {
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });
  if (res.status !== 0) throw new Error(`test/env/build.sh failed (exit ${res.status})`);
  const out = {} as Record<Component, string>;
  for (const line of res.stdout.split('\n')) {
    const m = /^([a-z-]+)=(.+)$/.exec(line.trim());
    if (m) out[m[1] as Component] = m[2];
  }
  for (const c of components) if (!out[c]) throw new Error(`build.sh did not report a path for ${c}`);
  return out;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

export interface ControlPlaneOptions {
  /** Also run kube-controller-manager (PV/PVC binding, ReplicaSets, GC, namespace deletion). */
  controllerManager?: boolean;
  /** Also run kube-scheduler, so that a pod without nodeName gets a node (a real kubelet's). */
  scheduler?: boolean;
  /** Keep the temporary folder after stop (for debugging). */
  keepDir?: boolean;
  /** Extra kube-apiserver flags. */
  apiserverArgs?: string[];
  /** Extra kube-controller-manager flags (e.g. --kube-api-qps for the provisioning benchmark). */
  controllerManagerArgs?: string[];
}

interface Proc {
  name: string;
  child: ChildProcess;
  logFile: string;
}

export class ControlPlane {
  readonly dir: string;
  private readonly procs: Proc[] = [];
  private ca!: Pem;
  apiserverPort = 0;
  adminKubeconfigPath = '';
  /** The CA that signed every certificate here (PEM file): what a kubelet trusts for client certificates. */
  caFile = '';
  private stopped = false;

  private constructor(private readonly opts: ControlPlaneOptions) {
    this.dir = mkdtempSync(path.join(tmpdir(), 'jfs-cp-'));
  }

  static async start(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
    const cp = new ControlPlane(opts);
    try {
      await cp.boot();
      return cp;
    } catch (err) {
      const logs = cp.logs(60);
      await cp.stop();
      throw new Error(`control plane failed to start: ${(err as Error).message}\n${logs}`, { cause: err });
    }
  }

  get server(): string {
    return `https://127.0.0.1:${this.apiserverPort}`;
  }

  private file(name: string, content: string): string {
    const p = path.join(this.dir, name);
    writeFileSync(p, content, { mode: 0o600 });
    return p;
  }

  private spawn(name: string, bin: string, args: string[]): void {
    const logFile = path.join(this.dir, `${name}.log`);
    const log = createWriteStream(logFile);
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: false });
    child.stdout.pipe(log);
    child.stderr.pipe(log);
    this.procs.push({ name, child, logFile });
  }

  private async boot(): Promise<void> {
    const components: Component[] = ['etcd', 'kube-apiserver'];
    if (this.opts.controllerManager) components.push('kube-controller-manager');
    if (this.opts.scheduler) components.push('kube-scheduler');
    const bins = ensureBinaries(components);

    this.ca = await makeCa('jfs-sidecar-test-ca');
    const serving = await makeServing(
      this.ca,
      'kube-apiserver',
      ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'],
      ['127.0.0.1', '10.0.0.1'],
    );
    const admin = await makeClient(this.ca, 'jfs-admin', ['system:masters']);
    const kcmClient = await makeClient(this.ca, 'system:kube-controller-manager', []);
    // The API server's identity towards kubelets: a kubelet with webhook authn/authz (not anonymous) asks
    // this API server whether that user may use nodes/proxy, nodes/log, …; the binding below says yes.
    const kubeletClient = await makeClient(this.ca, APISERVER_KUBELET_CLIENT, []);
    const sa = makeServiceAccountKey();
    const caFile = this.file('ca.crt', this.ca.cert);
    this.caFile = caFile;
    const caKeyFile = this.file('ca.key', this.ca.key);
    const saPub = this.file('sa.pub', sa.publicKey);
    const saKey = this.file('sa.key', sa.privateKey);

    const etcdPort = await freePort();
    const etcdPeer = await freePort();
    this.spawn('etcd', bins.etcd, [
      `--data-dir=${path.join(this.dir, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);

    this.apiserverPort = await freePort();
    this.spawn('kube-apiserver', bins['kube-apiserver'], [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      `--secure-port=${this.apiserverPort}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--tls-cert-file=${this.file('apiserver.crt', serving.cert)}`,
      `--tls-private-key-file=${this.file('apiserver.key', serving.key)}`,
      `--client-ca-file=${caFile}`,
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      '--service-account-issuer=https://kubernetes.default.svc',
      '--service-cluster-ip-range=10.0.0.0/24',
      '--authorization-mode=Node,RBAC',
      '--allow-privileged=true',
      '--enable-priority-and-fairness=false',
      '--storage-media-type=application/json',
      // A real node is named `localhost` and serves on 127.0.0.1 only: dialling it by name keeps
      // logs/exec on loopback (its InternalIP, which kubelet requires to be non-loopback, is never dialled).
      '--kubelet-preferred-address-types=Hostname,InternalIP',
      `--kubelet-client-certificate=${this.file('apiserver-kubelet-client.crt', kubeletClient.cert)}`,
      `--kubelet-client-key=${this.file('apiserver-kubelet-client.key', kubeletClient.key)}`,
      // Kubelets' serving certificates come from this CA (issueServing), so the API server verifies them.
      `--kubelet-certificate-authority=${caFile}`,
      ...(this.opts.apiserverArgs ?? []),
    ]);
    this.adminKubeconfigPath = this.file(
      'admin.kubeconfig',
      this.kubeconfigYaml({ cert: admin.cert, key: admin.key }, 'jfs-admin'),
    );
    await this.waitReady(admin);
    await this.adminKubeConfig()
      .makeApiClient(RbacAuthorizationV1Api)
      .createClusterRoleBinding({
        body: {
          metadata: { name: APISERVER_KUBELET_CLIENT },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:kubelet-api-admin' },
          subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: APISERVER_KUBELET_CLIENT }],
        },
      });

    if (this.opts.scheduler) {
      // The bootstrap RBAC binds the user system:kube-scheduler to its roles (and to the
      // extension-apiserver-authentication reader its authentication-kubeconfig needs).
      const schedClient = await makeClient(this.ca, 'system:kube-scheduler', []);
      const schedKubeconfig = this.writeKubeconfig('kube-scheduler', schedClient);
      this.spawn('kube-scheduler', bins['kube-scheduler'], [
        `--kubeconfig=${schedKubeconfig}`,
        `--authentication-kubeconfig=${schedKubeconfig}`,
        `--authorization-kubeconfig=${schedKubeconfig}`,
        '--leader-elect=false',
        '--bind-address=127.0.0.1',
        `--secure-port=${await freePort()}`,
      ]);
    }

    if (this.opts.controllerManager) {
      const kcmKubeconfig = this.file(
        'kcm.kubeconfig',
        this.kubeconfigYaml({ cert: kcmClient.cert, key: kcmClient.key }, 'kcm'),
      );
      this.spawn('kube-controller-manager', bins['kube-controller-manager'], [
        `--kubeconfig=${kcmKubeconfig}`,
        `--authentication-kubeconfig=${kcmKubeconfig}`,
        `--authorization-kubeconfig=${kcmKubeconfig}`,
        '--leader-elect=false',
        `--service-account-private-key-file=${saKey}`,
        `--root-ca-file=${caFile}`,
        `--cluster-signing-cert-file=${caFile}`,
        `--cluster-signing-key-file=${caKeyFile}`,
        '--use-service-account-credentials=true',
        '--bind-address=127.0.0.1',
        `--secure-port=${await freePort()}`,
        '--concurrent-deployment-syncs=5',
        '--concurrent-replicaset-syncs=5',
        ...(this.opts.controllerManagerArgs ?? []),
      ]);
      // The ServiceAccount admission plugin needs the default ServiceAccount, which the controller-manager creates.
      await this.waitFor(
        async () => {
          const core = this.adminKubeConfig().makeApiClient(CoreV1Api);
          await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
          return true;
        },
        60_000,
        'default ServiceAccount',
      );
    }
  }

  private kubeconfigYaml(auth: { cert?: string; key?: string; token?: string }, user: string): string {
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const userBlock = auth.token
      ? `    token: ${auth.token}`
      : `    client-certificate-data: ${b64(auth.cert!)}\n    client-key-data: ${b64(auth.key!)}`;
    return `apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: ${this.server}
    certificate-authority-data: ${b64(this.ca.cert)}
users:
- name: ${user}
  user:
${userBlock}
contexts:
- name: local
  context:
    cluster: local
    user: ${user}
current-context: local
`;
  }

  /** A client certificate from this control plane's CA: CN is the user, O the groups. */
  issueClient(user: string, groups: string[]): Promise<Pem> {
    return makeClient(this.ca, user, groups);
  }

  /** A serving certificate from this control plane's CA (which the API server trusts for kubelets). */
  issueServing(cn: string, dns: string[], ips: string[]): Promise<Pem> {
    return makeServing(this.ca, cn, dns, ips);
  }

  /** Writes `<name>.kubeconfig` for a client certificate into the control plane's folder; returns its path. */
  writeKubeconfig(name: string, client: Pem): string {
    return this.file(`${name}.kubeconfig`, this.kubeconfigYaml(client, name));
  }

  adminKubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromFile(this.adminKubeconfigPath);
    return kc;
  }

  /** A kubeconfig file for a ServiceAccount (a TokenRequest token), to run a component with its own RBAC. */
  async serviceAccountKubeconfig(namespace: string, name: string): Promise<string> {
    const core = this.adminKubeConfig().makeApiClient(CoreV1Api);
    const tr = await core.createNamespacedServiceAccountToken({
      name,
      namespace,
      body: { spec: { audiences: [], expirationSeconds: 24 * 3600 } },
    });
    return this.file(
      `sa-${namespace}-${name}.kubeconfig`,
      this.kubeconfigYaml({ token: tr.status!.token }, `${namespace}-${name}`),
    );
  }

  private async waitReady(admin: Pem): Promise<void> {
    await this.waitFor(
      () =>
        new Promise<boolean>((resolve) => {
          const req = request(
            {
              host: '127.0.0.1',
              port: this.apiserverPort,
              path: '/readyz',
              ca: this.ca.cert,
              cert: admin.cert,
              key: admin.key,
              timeout: 2000,
            },
            (res) => {
              res.resume();
              resolve(res.statusCode === 200);
            },
          );
          req.on('error', () => resolve(false));
          req.on('timeout', () => req.destroy());
          req.end();
        }),
      120_000,
      'kube-apiserver /readyz',
    );
  }

  private async waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const p of this.procs) {
        if (p.child.exitCode !== null)
          throw new Error(`${p.name} exited with code ${p.child.exitCode} while waiting for ${what}`);
      }
      try {
        if (await check()) return;
      } catch {
        // not yet
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(250);
    }
  }

  /** The last lines of each component's log. */
  logs(lines = 40): string {
    return this.procs
      .map((p) => {
        const text = existsSync(p.logFile)
          ? readFileSync(p.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
          : '';
        return `----- ${p.name} (last ${lines} lines) -----\n${text}`;
      })
      .join('\n');
  }

  /**
   * Kills every process at once and removes the folder, synchronously: for a
   * process 'exit' handler, where nothing asynchronous runs any more.
   */
  killNow(): void {
    // Also after stop() began: the process may be exiting in the middle of it.
    this.stopped = true;
    for (const p of this.procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    if (!this.opts.keepDir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** Stops every process (TERM, then KILL) and removes the folder. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // Reverse order: the controller-manager and apiserver before etcd.
    for (const p of [...this.procs].reverse()) await stopProcess(p.child);
    if (!this.opts.keepDir) {
      // Never recurse into a mount (a test's target).
      detachMountsUnder(this.dir);
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

export async function stopProcess(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
