// The real node (kubelet + containerd + runc) on the local control plane with
// kube-scheduler: it registers as `localhost` and goes Ready, runs a pod the
// scheduler placed, serves logs and exec to the API server over loopback with
// webhook authn/authz, and on stop leaves no process, mount, bridge, sysctl
// change, cgroup or host folder behind. Runs as root; a missing prerequisite
// fails the test with what to install (never a silent skip).
import { CoreV1Api, Exec, Log, type KubeConfig, type V1Pod, type V1Status } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { request } from 'node:https';
import { spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import t, { type Test as Tap } from 'tap';
import { ensureBinaries, freePort } from '../../src/local/control-plane.js';
import { readMounts } from '../../src/juicefs/mounts.js';
import {
  assertRealNodePrerequisites,
  DEFAULT_SANDBOX_IMAGE,
  HOST_PATHS,
  kubepodsCgroups,
  LOCK_DIR,
  MOUNT_ROOT,
  NODE_SYSCTLS,
  POD_BRIDGE,
  readSysctl,
  startRealNode,
} from '../../src/local/real-node.js';
import { eventually, startControlPlane } from '../env/harness.js';

const BUSYBOX = 'docker.io/library/busybox:1.36';
const NS = 'real-node';
const UNPULLABLE = 'docker.io/library/not-imported:1';

/**
 * A single-layer `docker save` archive from a folder, with the system tar (test-only images until
 * src/local/images.ts lands; nothing is pulled).
 */
function dockerArchive(rootfs: string, out: string, tags: string[], config: Record<string, unknown>): string {
  const work = mkdtempSync(path.join(tmpdir(), 'jfs-img-'));
  try {
    const tar = (args: string[]) => {
      const r = spawnSync('tar', args, { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`tar ${args.join(' ')}: ${r.stderr}`);
    };
    tar([
      '--numeric-owner',
      '--owner=0',
      '--group=0',
      '--sort=name',
      '--mtime=@0',
      '-C',
      rootfs,
      '-cf',
      path.join(work, 'layer.tar'),
      '.',
    ]);
    const diffId = createHash('sha256')
      .update(readFileSync(path.join(work, 'layer.tar')))
      .digest('hex');
    const cfg = JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: '1970-01-01T00:00:00Z',
      config: {
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        WorkingDir: '/',
        ...config,
      },
      rootfs: { type: 'layers', diff_ids: [`sha256:${diffId}`] },
    });
    const cfgName = `${createHash('sha256').update(cfg).digest('hex')}.json`;
    writeFileSync(path.join(work, cfgName), cfg);
    writeFileSync(
      path.join(work, 'manifest.json'),
      JSON.stringify([{ Config: cfgName, RepoTags: tags, Layers: ['layer.tar'] }]),
    );
    tar(['-C', work, '-cf', out, 'manifest.json', cfgName, 'layer.tar']);
    return out;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** pause (busybox sleeping; CRI stops sandboxes with SIGKILL) and busybox with its applet links. */
function testImages(dir: string): string[] {
  const busybox = path.join(dir, 'busybox-root');
  for (const d of ['bin', 'etc', 'tmp', 'root', 'proc', 'sys', 'dev'])
    mkdirSync(path.join(busybox, d), { recursive: true });
  copyFileSync('/bin/busybox', path.join(busybox, 'bin/busybox'));
  const applets = spawnSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  for (const a of applets) if (a !== 'busybox') symlinkSync('busybox', path.join(busybox, 'bin', a));
  writeFileSync(path.join(busybox, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(path.join(busybox, 'etc/group'), 'root:x:0:\n');
  const pause = path.join(dir, 'pause-root');
  mkdirSync(path.join(pause, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', path.join(pause, 'bin/busybox'));
  return [
    dockerArchive(pause, path.join(dir, 'pause.tar'), [DEFAULT_SANDBOX_IMAGE], {
      Entrypoint: ['/bin/busybox', 'sleep', '2147483647'],
    }),
    dockerArchive(busybox, path.join(dir, 'busybox.tar'), [BUSYBOX], { Cmd: ['sh'] }),
  ];
}

const podPhase = async (core: CoreV1Api, name: string) =>
  (await core.readNamespacedPod({ name, namespace: NS })).status?.phase;

function busyboxPod(name: string, script: string, restartPolicy: 'Never' | 'Always'): V1Pod {
  return {
    metadata: { name, namespace: NS },
    spec: {
      restartPolicy,
      terminationGracePeriodSeconds: 2,
      containers: [{ name: 'main', image: BUSYBOX, command: ['sh', '-c', script] }],
    },
  };
}

/** The kubelet's message for a pod whose image pull failed (undefined while it has not). */
async function pullError(core: CoreV1Api, name: string): Promise<string | undefined> {
  const pod = await core.readNamespacedPod({ name, namespace: NS });
  const waiting = pod.status?.containerStatuses?.[0]?.state?.waiting;
  return waiting && ['ErrImagePull', 'ImagePullBackOff'].includes(waiting.reason ?? '') && waiting.message
    ? waiting.message
    : undefined;
}

async function clientLog(kc: KubeConfig, pod: string): Promise<string> {
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => (text += c.toString()));
  const ended = new Promise((r) => out.on('end', r));
  await new Log(kc).log(NS, pod, 'main', out, { follow: false });
  await ended;
  return text;
}

async function clientExec(kc: KubeConfig, pod: string, command: string[]): Promise<{ out: string; status: V1Status }> {
  const stdout = new PassThrough();
  let out = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  const status = await new Promise<V1Status>((resolve, reject) => {
    new Exec(kc).exec(NS, pod, 'main', command, stdout, process.stderr, null, false, resolve).catch(reject);
  });
  return { out, status };
}

/** The HTTP status the kubelet answers a caller without a client certificate. */
function anonymousStatus(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/pods', rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Processes whose command line names the run folder or its socket: containerd, shims, kubelet. */
function processesOf(dir: string): string[] {
  const left: string[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').join(' ');
    } catch {
      continue;
    }
    if (cmd.includes(dir)) left.push(`${e}: ${cmd}`);
  }
  return left;
}

interface HostBefore {
  sysctls: Record<string, string | undefined>;
  hostPaths: string[];
  mounts: Set<string>;
  netns: string[];
}

function hostNow(): HostBefore {
  return {
    sysctls: Object.fromEntries(NODE_SYSCTLS.map((k) => [k, readSysctl(k)])),
    hostPaths: HOST_PATHS.filter((p) => existsSync(p)),
    mounts: new Set(readMounts().map((m) => m.mountPoint)),
    netns: existsSync('/run/netns') ? readdirSync('/run/netns') : [],
  };
}

/** One assertion per kind of host change: after a node is gone, the host is as before it. */
function assertHostClean(t: Tap, before: HostBefore, dir: string): void {
  t.same(processesOf(dir), [], 'no containerd, shim or kubelet process of the node is left');
  const mountsLeft = readMounts()
    .map((m) => m.mountPoint)
    .filter(
      (m) =>
        !before.mounts.has(m) &&
        [dir, '/var/lib/juicefs', '/run/netns', '/run/containerd'].some((d) => m === d || m.startsWith(`${d}/`)),
    );
  t.same(mountsLeft, [], 'no mount left under the run folder, /var/lib/juicefs, /run/netns, /run/containerd');
  t.equal(
    readMounts().some((m) => m.mountPoint === MOUNT_ROOT),
    before.mounts.has(MOUNT_ROOT),
    `${MOUNT_ROOT} mounted as before`,
  );
  const netnsLeft = (existsSync('/run/netns') ? readdirSync('/run/netns') : []).filter(
    (n) => !before.netns.includes(n),
  );
  t.same(netnsLeft, [], 'no pod network namespace left');
  t.not(spawnSync('ip', ['link', 'show', POD_BRIDGE], { stdio: 'ignore' }).status, 0, `bridge ${POD_BRIDGE} removed`);
  t.same(Object.fromEntries(NODE_SYSCTLS.map((k) => [k, readSysctl(k)])), before.sysctls, 'sysctls as before');
  t.same(kubepodsCgroups(), [], 'no kubepods cgroup left (so no container process either)');
  t.same(
    HOST_PATHS.filter((p) => existsSync(p) && !before.hostPaths.includes(p)),
    [],
    'no new host folder left',
  );
  t.notOk(existsSync(dir), 'run folder removed');
  t.notOk(existsSync(LOCK_DIR), 'lock released');
}

let missing: string | undefined;
try {
  assertRealNodePrerequisites();
} catch (err) {
  missing = (err as Error).message;
}
if (missing) {
  // Not a skip: CI runs as root with .ci/run's packages, so a machine without them is a broken setup.
  t.fail(missing);
} else {
  const imagesDir = mkdtempSync(path.join(tmpdir(), 'jfs-real-node-images-'));
  t.teardown(() => rmSync(imagesDir, { recursive: true, force: true }));
  const archives = testImages(imagesDir);
  const kubectl = ensureBinaries(['kubectl']).kubectl;
  let t0 = Date.now();
  const cp = await startControlPlane(t, { controllerManager: true, scheduler: true });
  t.comment(`control plane (with kube-scheduler) up in ${Date.now() - t0} ms`);
  const kc = cp.adminKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: NS } } });
  await eventually(() => core.readNamespacedServiceAccount({ name: 'default', namespace: NS }), 30_000, 'default SA');

  t.test('Ready node, scheduled pod, logs and exec over loopback, clean stop', async (t) => {
    const before = hostNow();
    t0 = Date.now();
    const node = await startRealNode(cp, { importArchives: archives, log: (m) => t.comment(m) });
    t.teardown(() => node.stop());
    const dir = node.dir;
    t.comment(
      `containerd up ${node.timings.containerdUpMs} ms, images imported ${node.timings.importMs} ms, ` +
        `node Ready ${node.timings.nodeReadyMs} ms after the kubelet started (${Date.now() - t0} ms in all)`,
    );
    try {
      const n = await core.readNode({ name: 'localhost' });
      t.equal(n.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True', 'node localhost is Ready');
      t.match(n.status?.nodeInfo?.containerRuntimeVersion, /^containerd:\/\/\d/, 'it runs containerd');
      t.equal(n.status?.nodeInfo?.kubeletVersion, 'v1.34.4', 'the kubelet is the control plane version');

      // A pod without nodeName: kube-scheduler places it on the real node, which runs it to completion.
      await core.createNamespacedPod({
        namespace: NS,
        body: busyboxPod('hello', 'echo hello-from-the-real-node; echo second line', 'Never'),
      });
      t0 = Date.now();
      await eventually(async () => (await podPhase(core, 'hello')) === 'Succeeded', 90_000, 'pod hello Succeeded');
      t.comment(`pod hello Succeeded ${Date.now() - t0} ms after create`);
      const hello = await core.readNamespacedPod({ name: 'hello', namespace: NS });
      t.equal(hello.spec?.nodeName, 'localhost', 'the scheduler bound it to the real node');

      // logs: API server → kubelet at localhost:<port> with its kubelet client certificate.
      t.match(
        await clientLog(kc, 'hello'),
        /hello-from-the-real-node\nsecond line/,
        'client-node Log shows its output',
      );
      const kl = spawnSync(kubectl, ['--kubeconfig', cp.adminKubeconfigPath, '-n', NS, 'logs', 'hello'], {
        encoding: 'utf8',
      });
      t.match(kl.stdout, /hello-from-the-real-node/, `kubectl logs shows its output ${kl.stderr}`);

      // exec on a running pod.
      t0 = Date.now();
      await core.createNamespacedPod({ namespace: NS, body: busyboxPod('sleeper', 'exec sleep 3600', 'Always') });
      await eventually(async () => (await podPhase(core, 'sleeper')) === 'Running', 90_000, 'pod sleeper Running');
      t.comment(`first Running pod: sleeper Running ${Date.now() - t0} ms after create`);
      const ex = await clientExec(kc, 'sleeper', ['sh', '-c', 'echo exec-works; id -u']);
      t.equal(ex.status.status, 'Success', 'client-node Exec succeeds');
      t.equal(ex.out, 'exec-works\n0\n', 'client-node Exec returns the command output');
      const ke = spawnSync(
        kubectl,
        [
          '--kubeconfig',
          cp.adminKubeconfigPath,
          '-n',
          NS,
          'exec',
          'sleeper',
          '--',
          'sh',
          '-c',
          'echo kubectl-exec-works',
        ],
        { encoding: 'utf8' },
      );
      t.equal(ke.stdout, 'kubectl-exec-works\n', `kubectl exec works ${ke.stderr}`);

      // The kubelet authenticates and authorizes the API server; an anonymous caller is turned away.
      const port = n.status?.daemonEndpoints?.kubeletEndpoint?.Port;
      t.equal(await anonymousStatus(port ?? 0), 401, 'an anonymous request to the kubelet is refused');

      // An image that was not imported is not fetched from anywhere outside this machine.
      await core.createNamespacedPod({
        namespace: NS,
        body: {
          ...busyboxPod('unpullable', 'true', 'Never'),
          spec: { containers: [{ name: 'main', image: UNPULLABLE }] },
        },
      });
      const pullMessage = await eventually(() => pullError(core, 'unpullable'), 60_000, 'the pull to fail');
      t.match(pullMessage, /127\.0\.0\.1:9/, `the pull went to the closed loopback proxy: ${pullMessage}`);
    } catch (err) {
      t.comment(node.logs(60));
      throw err;
    }

    t0 = Date.now();
    await node.stop();
    await node.stop(); // idempotent
    t.comment(`real node stopped (pods drained first) in ${Date.now() - t0} ms`);
    t.same(
      (await core.listNamespacedPod({ namespace: NS })).items.map((p) => p.metadata?.name),
      [],
      'stop() deleted the pods through the API first',
    );
    assertHostClean(t, before, dir);
  });

  t.test('killNow() with a pod running: no drain, the host is clean all the same', async (t) => {
    const before = hostNow();
    // A registry configuration (hosts.toml) is passed through to containerd's CRI: docker.io's mirror
    // here is a loopback port where nothing listens.
    const registryDir = mkdtempSync(path.join(tmpdir(), 'jfs-real-node-registry-'));
    t.teardown(() => rmSync(registryDir, { recursive: true, force: true }));
    const mirrorPort = await freePort();
    mkdirSync(path.join(registryDir, 'docker.io'));
    writeFileSync(
      path.join(registryDir, 'docker.io/hosts.toml'),
      `server = "https://registry-1.docker.io"\n[host."http://127.0.0.1:${mirrorPort}"]\n  capabilities = ["pull", "resolve"]\n`,
    );
    const node = await startRealNode(cp, { importArchives: archives, registryConfigDir: registryDir });
    t.teardown(() => node.stop());
    await core.createNamespacedPod({
      namespace: NS,
      body: { ...busyboxPod('mirrored', 'true', 'Never'), spec: { containers: [{ name: 'main', image: UNPULLABLE }] } },
    });
    const pullMessage = await eventually(() => pullError(core, 'mirrored'), 60_000, 'the pull to fail');
    t.match(pullMessage, new RegExp(`127\\.0\\.0\\.1:${mirrorPort}`), `the pull went to the mirror: ${pullMessage}`);
    await core.createNamespacedPod({ namespace: NS, body: busyboxPod('killed', 'exec sleep 3600', 'Always') });
    await eventually(async () => (await podPhase(core, 'killed')) === 'Running', 90_000, 'pod killed Running');
    t0 = Date.now();
    node.killNow();
    t.comment(`killNow() took ${Date.now() - t0} ms`);
    assertHostClean(t, before, node.dir);
    // The pod objects outlive their node; the next subtest's node must not find them.
    for (const name of ['killed', 'mirrored'])
      await core.deleteNamespacedPod({ name, namespace: NS, gracePeriodSeconds: 0 });
  });

  t.test('a node whose process was killed is undone by the next start', async (t) => {
    const before = hostNow();
    // The child starts a control plane and a node with a running pod; SIGKILL to its process group
    // takes its control plane (plain children) but not containerd, the kubelet, shims or containers.
    const child = spawn(
      process.execPath,
      [...process.execArgv, path.join(import.meta.dirname, '../env/real-node-child.ts'), ...archives],
      { detached: true, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
    });
    const line = await new Promise<string>((resolve, reject) => {
      setTimeout(() => reject(new Error('the child printed nothing within 120 s')), 120_000).unref();
      let out = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]);
      });
      child.once('exit', (code) => reject(new Error(`child exited (${code}) before its node ran a pod`)));
    });
    const left = JSON.parse(line) as { nodeDir: string; cpDir: string; socket: string };
    t.teardown(() => rmSync(left.cpDir, { recursive: true, force: true }));
    process.kill(-child.pid!, 'SIGKILL');
    await new Promise((r) => child.once('exit', r));
    t.not(processesOf(left.nodeDir), [], 'the killed process left its containerd and kubelet running');
    t.ok(existsSync(LOCK_DIR), 'and its lock');

    t0 = Date.now();
    // The standard kubelet root this time (what manifests/ name in their hostPaths).
    const node = await startRealNode(cp, {
      importArchives: archives,
      kubeletRootDir: '/var/lib/kubelet',
      log: (m) => t.comment(m),
    });
    t.comment(`start with the dead node's clean-up first: ${Date.now() - t0} ms`);
    t.equal(node.kubeletRoot, '/var/lib/kubelet', 'the kubelet root is the one asked for');
    t.same(processesOf(left.nodeDir), [], "the dead node's processes are gone");
    t.notOk(existsSync(left.nodeDir), "the dead node's run folder is gone");
    const n = await core.readNode({ name: 'localhost' });
    t.equal(n.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True', 'the new node is Ready');
    await node.stop();
    assertHostClean(t, before, left.nodeDir);
    assertHostClean(t, before, node.dir);
  });
}
