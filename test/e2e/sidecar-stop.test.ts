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
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ENV_METAURL } from '../../src/mount/containers.js';
import { MOUNT_POINT_ENV } from '../../src/contract/keys.js';
import { makeVolume, withFuseMount } from '../env/juicefs.js';
import { argvHere, inNs, renderedSidecar, sh, sleep, startSidecar, SUBDIR } from '../env/sidecar-process.js';

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
