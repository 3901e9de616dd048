// `npm start` (jfs-sidecar local) as a newcomer runs it: the process prints
// KUBECONFIG=…, the node is a real kubelet with containerd, the examples apply
// and run as real containers in both modes (the app sees fuse.juicefs and its
// file, through exec and logs over the API server), and Ctrl-C leaves no
// process, mount, bridge or folder behind.
import { CoreV1Api, KubeConfig, Log, type V1Pod } from '@kubernetes/client-node';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import t from 'tap';
import { readMounts } from '../../src/juicefs/mounts.js';
import { applyObjects, CLI } from '../../src/local/components.js';
import { LOCK_DIR, POD_BRIDGE } from '../../src/local/real-node.js';
import { PACKAGE_ROOT as PROJECT_ROOT } from '../../src/util/package-root.js';
import { isPodReady, mountPointOf, referencesOf } from '../../src/node/mount-pod-plan.js';
import { parseManifests } from '../../src/offline/inject-manifests.js';
import { eventually, podExec } from '../env/harness.js';

t.setTimeout(20 * 60 * 1000);

const examples = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .flatMap((f) => parseManifests(readFileSync(path.join(dir, f), 'utf8'), f));

const running = (pod: V1Pod) => pod.status?.phase === 'Running' && isPodReady(pod);

/** Processes of this local cluster's node (their command lines name its folder): none may outlive Ctrl-C. */
function nodeProcesses(clusterDir: string): string[] {
  const left: string[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').join(' ');
    } catch {
      continue;
    }
    if (/(^|\/)(containerd|containerd-shim-runc-v2|kubelet) /.test(cmd) && cmd.includes(clusterDir)) left.push(cmd);
  }
  return left;
}

/** The pid holding the real node's lock, if any. */
function lockOwner(): number | undefined {
  try {
    return (JSON.parse(readFileSync(path.join(LOCK_DIR, 'state.json'), 'utf8')) as { ownerPid?: number }).ownerPid;
  } catch {
    return undefined;
  }
}

t.test('npm start: a real node, both modes, clean stop', async (t) => {
  t.equal(process.getuid?.(), 0, 'runs as root (the real node needs it)');
  const child = spawn(process.execPath, [CLI, 'local'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'info' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
    if (!t.passing()) t.comment(`npm start stderr (last lines):\n${stderr.split('\n').slice(-30).join('\n')}`);
  });

  const kubeconfig = await eventually(
    async () => {
      if (child.exitCode !== null) throw new Error(`npm start exited (${child.exitCode})`);
      return /^KUBECONFIG=(.+)$/m.exec(stdout)?.[1];
    },
    15 * 60 * 1000,
    'KUBECONFIG= printed',
  );
  const clusterDir = path.dirname(kubeconfig);
  t.match(stdout, /kubectl apply -f .*examples\/mount-pod-mode\//, 'the hint shows Mount Pod mode');
  t.match(stderr, /node plugin registered with the kubelet/, 'the node plugin DaemonSet registered');
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);

  await t.test('the node is a real kubelet with containerd', async (t) => {
    const nodes = (await core.listNode()).items;
    t.equal(nodes.length, 1, 'one node');
    t.equal(nodes[0].status?.nodeInfo?.containerRuntimeVersion.split(':')[0], 'containerd', 'runtime containerd');
    t.ok(
      nodes[0].status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
      'node Ready',
    );
  });

  await applyObjects(kc, examples(path.join(PROJECT_ROOT, 'examples')));
  await applyObjects(kc, examples(path.join(PROJECT_ROOT, 'examples/mount-pod-mode')));

  await t.test('sidecar mode: the app pod runs and writes into JuiceFS', async (t) => {
    const app = await eventually(
      async () => {
        const p = await core.readNamespacedPod({ name: 'app', namespace: 'demo' });
        return running(p) ? p : undefined;
      },
      180_000,
      'demo/app Running and Ready',
    );
    t.ok(
      [...(app.spec?.initContainers ?? []), ...(app.spec?.containers ?? [])].some((c) => c.name === 'jfs-mount'),
      'jfs-mount sidecar injected',
    );
    const { out } = await podExec(kc, { namespace: 'demo', name: 'app', container: 'app' }, [
      'sh',
      '-c',
      'grep " /data " /proc/mounts; cat /data/hello.txt',
    ]);
    t.match(out, / \/data fuse\.juicefs /, 'exec: the app sees fuse.juicefs on /data');
    t.match(out, /\d{2}:\d{2}:\d{2}/, 'exec: the date line it wrote is there');
    const logs = new PassThrough();
    let text = '';
    logs.on('data', (c: Buffer) => (text += c.toString()));
    await new Log(kc).log('demo', 'app', 'jfs-mount', logs, { follow: false });
    await eventually(async () => /is ready at/.test(text), 10_000, 'jfs-mount log read');
    t.match(text, /is ready at \/var\/lib\/juicefs\/volume\//, "logs: the client's own output");
  });

  let mountPoint: string | undefined;
  await t.test('Mount Pod mode: two pods share one real Mount Pod', async (t) => {
    for (const name of ['writer', 'reader']) {
      await eventually(
        async () => running(await core.readNamespacedPod({ name, namespace: 'demo-mp' })),
        180_000,
        `demo-mp/${name} Running and Ready`,
      );
    }
    const pods: V1Pod[] = (
      await core.listNamespacedPod({
        namespace: 'juicefs-system',
        labelSelector: 'app.kubernetes.io/name=juicefs-mount',
      })
    ).items;
    t.equal(pods.length, 1, 'one Mount Pod');
    t.equal(pods[0].status?.phase, 'Running', 'the Mount Pod is a running container');
    t.equal(referencesOf(pods[0]).length, 2, 'a reference per app pod');
    for (const target of referencesOf(pods[0]))
      t.ok(target.startsWith('/var/lib/kubelet/pods/'), `the kubelet's own target: ${target}`);
    const { out } = await podExec(kc, { namespace: 'demo-mp', name: 'reader', container: 'app' }, [
      'sh',
      '-c',
      'grep " /data " /proc/mounts; cat /data/hello.txt',
    ]);
    t.match(out, / \/data fuse\.juicefs /, 'the reader sees fuse.juicefs on /data');
    t.match(out, /\d{2}:\d{2}:\d{2}/, "the reader sees the writer's line");
    mountPoint = mountPointOf(pods[0]);
  });

  child.kill('SIGINT');
  t.equal(await exited, 0, 'Ctrl-C stops it cleanly');
  t.notOk(existsSync(clusterDir), 'cluster folder removed');
  const mounts = readMounts();
  t.same(
    mounts.filter((m) => m.mountPoint.startsWith(clusterDir)).map((m) => m.mountPoint),
    [],
    'no mount left under it',
  );
  t.same(
    mounts.filter((m) => m.mountPoint.startsWith('/var/lib/kubelet/')).map((m) => m.mountPoint),
    [],
    'no mount left under /var/lib/kubelet',
  );
  t.same(
    mounts.filter((m) => m.fsType === 'fuse.juicefs' && m.mountPoint.startsWith('/var/lib/juicefs/')),
    [],
    'no JuiceFS mount left under /var/lib/juicefs',
  );
  t.ok(mountPoint, 'the Mount Pod had a mount point');
  t.same(nodeProcesses(clusterDir), [], 'no containerd, shim or kubelet left');
  // Another real node may hold the lock by now (one per machine, taken in turn): only ours must be gone.
  t.not(lockOwner(), child.pid, 'the real node lock is released');
  t.notOk(existsSync(`/sys/class/net/${POD_BRIDGE}`), 'the pod bridge is gone');
});
