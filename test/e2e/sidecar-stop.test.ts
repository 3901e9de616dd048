// F1 (issue 12), reproduced without a kubelet: the sidecar must stop within a
// few seconds of SIGTERM, exit 0, and keep what the apps wrote, although
// another mount of its FUSE mount stays (kubelet's subPath bind of the app's
// volume, which kubelet removes only after every container has stopped).
//
// The "container" is a private mount namespace (unshare -m) running the
// sidecar's command exactly as the injector renders it for a golden case
// (test/testdata/one-pvc.yaml): the entrypoint script and the juicefs flags.
// Only what differs on this machine changes:
// `juicefs` is the locally built client, the volume is a real SQLite + file
// one, the mount point, cache dir and metrics port are the test's own. The
// kubelet's subPath bind is a bind of the mount point made in that namespace;
// an app is a process in it writing through that bind. The namespace (its
// mounts and the fusectl mount the script may make) goes when its processes do.
// Run under dash (Debian images such as juicedata/mount) and busybox sh.
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { configFromObjects } from '../../src/config/options.js';
import { ENV_METAURL } from '../../src/mount/containers.js';
import { MOUNT_POINT_ENV } from '../../src/contract/keys.js';
import { injectObjects, parseManifests } from '../../src/offline/inject-manifests.js';
import { expand } from '../../src/local/expand.js';
import { makeVolume, withFuseMount, type TestVolume } from '../env/juicefs.js';

const FIXTURE = path.join(import.meta.dirname, '../testdata/one-pvc.yaml');

/** The jfs-mount container the injector renders for the fixture. */
function renderedSidecar(): V1Container {
  const objects = parseManifests(readFileSync(FIXTURE, 'utf8'), FIXTURE);
  const results = injectObjects(objects, { mode: 'sidecar', config: configFromObjects(objects) });
  const pod = results.find((r) => r.object.kind === 'Pod')!.object as V1Pod;
  const sidecar = pod.spec!.initContainers!.find((c) => c.name === 'jfs-mount');
  if (!sidecar) throw new Error('the injector rendered no jfs-mount container');
  return sidecar;
}

/** Its argv as kubelet would exec it here: $(VAR) expanded, then this machine's client, cache dir and port. */
function argvHere(c: V1Container, vol: TestVolume, shell: string, cacheDir: string, port: number): string[] {
  const argv = [...(c.command ?? []), ...(c.args ?? [])].map((a) => expand(a, {}));
  if (argv[0] !== 'sh') throw new Error(`the sidecar's command is not sh -c <entrypoint>: ${argv[0]}`);
  return argv.map((a, i) => {
    if (i === 0) return shell;
    if (a === 'juicefs') return vol.juicefs;
    if (a.startsWith('--cache-dir=')) return `--cache-dir=${cacheDir}`;
    if (a.startsWith('--metrics=')) return `--metrics=127.0.0.1:${port}`;
    return a;
  });
}

/** Where the sidecar's files are in the volume: the fixture's PV subdirectory (`--subdir=`). */
const SUBDIR = (() => {
  const flag = (renderedSidecar().command ?? []).find((a) => a.startsWith('--subdir='));
  return flag ? flag.slice('--subdir='.length) : '.';
})();

const sh = (args: string[]) => spawnSync(args[0], args.slice(1), { encoding: 'utf8' });
const inNs = (pid: number, script: string) => sh(['nsenter', '-t', String(pid), '-m', 'sh', '-c', script]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sidecar {
  child: ChildProcess;
  log: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

/** Starts the sidecar in its own mount namespace; on teardown, kills what is left in it, then removes the volume. */
async function startSidecar(t: Test, vol: TestVolume, argv: string[], env: Record<string, string>): Promise<Sidecar> {
  const child = spawn('unshare', ['-m', '--propagation', 'private', ...argv], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  // What kill(sh) alone would leave on a failure: juicefs, which keeps the namespace and its mounts.
  const ns = await namespaceOf(child.pid!);
  t.teardown(() => {
    killNamespace(ns);
    vol.remove();
  });
  const deadline = Date.now() + 30_000;
  while (!out.includes('is ready at')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the client did not mount:\n${out}`);
    await sleep(100);
  }
  return { child, log: () => out, exited };
}

const OWN_NAMESPACE = readlinkSync('/proc/self/ns/mnt');

/** The mount namespace of `pid` once unshare has made it: until then the pid is still in this process's. */
async function namespaceOf(pid: number): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const ns = readlinkSync(`/proc/${pid}/ns/mnt`);
    if (ns !== OWN_NAMESPACE) return ns;
    await sleep(20);
  }
  throw new Error(`pid ${pid} did not enter a mount namespace of its own`);
}

/** SIGKILL to every process in mount namespace `ns` (the test's own "container"), never this process's own. */
function killNamespace(ns: string): void {
  if (ns === OWN_NAMESPACE) throw new Error("refusing to kill the processes of the test runner's own mount namespace");
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readlinkSync(`/proc/${pid}/ns/mnt`) === ns) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
const shells: [string, string[]][] = [
  ['dash', ['sh']],
  ['busybox sh', busybox ? [busybox, 'sh'] : []],
];

t.test('prerequisites: root, FUSE, unshare/nsenter, busybox', async (t) => {
  t.equal(process.getuid?.(), 0, 'runs as root (FUSE mounts, mount namespaces)');
  t.ok(existsSync('/dev/fuse'), '/dev/fuse');
  t.equal(sh(['unshare', '--version']).status, 0, 'util-linux unshare');
  t.ok(busybox, 'busybox-static (.ci/run installs it)');
});

let port = 19600;
for (const [shellName, shellCmd] of shells) {
  t.test(`${shellName}: the sidecar stops promptly while a bind of its mount remains`, async (t) => {
    const vol = makeVolume('stopvol');
    const mp = path.join(vol.dir, 'pods/uid-1/data');
    const bind = path.join(vol.dir, 'kubelet/volume-subpaths/data/app/0');
    mkdirSync(mp, { recursive: true });
    mkdirSync(bind, { recursive: true });
    const sidecarSpec = renderedSidecar();
    const argv = argvHere(sidecarSpec, vol, shellCmd.join(' '), path.join(vol.dir, 'cache'), port++);
    const s = await startSidecar(t, vol, [...shellCmd, ...argv.slice(1)], {
      [ENV_METAURL]: vol.metaurl,
      [MOUNT_POINT_ENV]: mp,
    });
    const pid = s.child.pid!;
    // The kubelet's subPath bind, and an app that wrote through it and has exited.
    t.equal(
      inNs(pid, `mount --bind '${mp}' '${bind}' && echo written-by-app > '${bind}/out.txt'`).status,
      0,
      'bind made, app wrote through it',
    );

    const sent = Date.now();
    s.child.kill('SIGTERM');
    const { code, at } = await s.exited;
    const seconds = (at - sent) / 1000;
    t.comment(`exit ${code} ${seconds.toFixed(2)} s after SIGTERM`);
    t.equal(code, 0, 'exits 0');
    t.ok(seconds < 3, `within 3 s of SIGTERM (${seconds.toFixed(2)} s; juicefs alone waits 30 s)`);
    t.match(s.log(), /aborting connection \d+/, 'it aborted the FUSE connection the bind held');
    t.match(s.log(), /The juicefs mount process exit successfully/, 'juicefs ended its session itself');
    await withFuseMount(vol, (m) =>
      t.equal(readFileSync(`${m}/${SUBDIR}/out.txt`, 'utf8'), 'written-by-app\n', 'data kept'),
    );
  });
}

t.test('a file still open in the volume holds the stop until it is closed, and its data is kept', async (t) => {
  const vol = makeVolume('openvol');
  const mp = path.join(vol.dir, 'pods/uid-2/data');
  const bind = path.join(vol.dir, 'kubelet/volume-subpaths/data/app/0');
  mkdirSync(mp, { recursive: true });
  mkdirSync(bind, { recursive: true });
  const argv = argvHere(renderedSidecar(), vol, 'sh', path.join(vol.dir, 'cache'), port++);
  const s = await startSidecar(t, vol, argv, { [ENV_METAURL]: vol.metaurl, [MOUNT_POINT_ENV]: mp });
  const pid = s.child.pid!;
  // An app still writing (classic placement: every container gets SIGTERM at once): a file open through the bind,
  // written before and 3 s after the sidecar's SIGTERM, then closed.
  t.equal(inNs(pid, `mount --bind '${mp}' '${bind}'`).status, 0, 'the bind, as kubelet makes it');
  const writer = spawn('nsenter', [
    '-t',
    String(pid),
    '-m',
    'sh',
    '-c',
    `exec 3>'${bind}/late.txt'; echo before >&3; sleep 3; echo after-term >&3; exec 3>&-`,
  ]);
  const writerDone = new Promise<number | null>((r) => writer.once('exit', r));
  await sleep(500);
  s.child.kill('SIGTERM');
  await sleep(1500);
  t.equal(s.child.exitCode, null, 'still serving while a file is open');
  t.equal(await writerDone, 0, "the app's write after SIGTERM succeeded");
  const closed = Date.now();
  const { code, at } = await s.exited;
  t.comment(`exit ${code} ${((at - closed) / 1000).toFixed(2)} s after the file was closed`);
  t.equal(code, 0, 'exits 0');
  t.ok(at - closed < 3000, 'within 3 s of the last close');
  await withFuseMount(vol, (m) =>
    t.equal(
      readFileSync(`${m}/${SUBDIR}/late.txt`, 'utf8'),
      'before\nafter-term\n',
      'what it wrote after SIGTERM is kept',
    ),
  );
});

t.test('with no other mount of it, the session ends by itself: no abort', async (t) => {
  const vol = makeVolume('plainvol');
  const mp = path.join(vol.dir, 'pods/uid-3/data');
  mkdirSync(mp, { recursive: true });
  const argv = argvHere(renderedSidecar(), vol, 'sh', path.join(vol.dir, 'cache'), port++);
  const s = await startSidecar(t, vol, argv, { [ENV_METAURL]: vol.metaurl, [MOUNT_POINT_ENV]: mp });
  const sent = Date.now();
  s.child.kill('SIGTERM');
  const { code, at } = await s.exited;
  t.equal(code, 0, 'exits 0');
  t.ok(at - sent < 3000, `promptly (${at - sent} ms)`);
  t.notMatch(s.log(), /aborting connection/, 'nothing aborted');
  t.notOk(existsSync(mp), 'the mount point is removed');
});
