// The local images in a real containerd (Debian's 1.6, as the local node runs
// it): a bare containerd of its own (root, state, sockets under a temp folder;
// CRI with restrict_oom_score_adj and registry.config_path at our hosts.toml)
// (b) pulls busybox:latest from the loopback registry into an empty store, and
// finds nothing for a name we do not have, (a) imports every archive and lists
// its refs with our digests, (c) runs busybox, both mount images' `juicefs
// version` and the project image's CLI. Then it stops containerd and checks
// that no process, mount, cgroup or folder is left.
import { execFile, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { readMounts } from '../../src/juicefs/mounts.js';
import { startImageRegistry, writeHostsToml, registriesOf } from '../../src/local/image-registry.js';
import {
  BUSYBOX_IMAGES,
  MOUNT_IMAGE,
  PAUSE_IMAGE,
  PREVIOUS_MOUNT_IMAGE,
  NEXT_MOUNT_IMAGE,
  PROJECT_IMAGE,
  ensureImages,
} from '../../src/local/images.js';
import { detachMountsUnder } from '../../src/local/mounts.js';
import { PACKAGE_VERSION } from '../../src/util/package-root.js';

const NS = 'k8s.io';
// Our containers' cgroups go under a parent of our own (ctr's default would be /k8s.io/<id>, shared).
const CGROUP_PARENT = `jfs-images-e2e-${process.pid}`;
// containerd 1.6 keeps shim sockets and ctr's FIFOs under /run/containerd whatever its state folder is.
const RUN_DIRS = ['/run/containerd', '/run/containerd/s', '/run/containerd/fifo'];

const missing = ['containerd', 'ctr', 'runc', 'tar', 'gcc'].filter(
  (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0,
);

function cgroupDirs(): string[] {
  return readdirSync('/sys/fs/cgroup').map((c) => path.join('/sys/fs/cgroup', c, CGROUP_PARENT));
}

/** Processes whose command line names our socket: containerd and its shims. */
function ourProcesses(sock: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(sock)) pids.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

t.test('local images in a real containerd', { timeout: 600_000 }, async (t) => {
  if (process.getuid?.() !== 0 || missing.length) {
    t.fail(
      `needs root and ${missing.join(', ') || 'nothing else'}: .ci/run installs containerd runc ` +
        'containernetworking-plugins busybox-static fuse3',
    );
    return;
  }
  const t0 = Date.now();
  const images = await ensureImages();
  t.comment(`ensureImages: ${Date.now() - t0} ms`);
  const requests: { method: string; url: string; status: number }[] = [];
  const registry = await startImageRegistry(images.images, { onRequest: (r) => requests.push(r) });
  t.teardown(() => registry.close());

  const runBefore = RUN_DIRS.filter((d) => existsSync(d));
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-images-e2e-'));
  const sock = path.join(dir, 'containerd.sock');
  const hostsDir = path.join(dir, 'certs.d');
  await writeHostsToml(hostsDir, registry.host, registriesOf(images.refs));
  mkdirSync(path.join(dir, 'cni'));
  const config = path.join(dir, 'config.toml');
  writeFileSync(
    config,
    `version = 2
root = "${dir}/root"
state = "${dir}/state"
[grpc]
  address = "${sock}"
[ttrpc]
  address = "${sock}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  # No CAP_SYS_RESOURCE here: sandboxes keep containerd's own oom_score_adj.
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "${hostsDir}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = "${dir}/cni"
    bin_dir = "/usr/lib/cni"
`,
  );

  const containerd = spawn('containerd', ['--config', config], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const cleanup = async () => {
    if (containerd.exitCode === null && containerd.signalCode === null) {
      const exited = new Promise((r) => containerd.once('exit', r));
      process.kill(-containerd.pid!, 'SIGTERM');
      const timer = setTimeout(() => process.kill(-containerd.pid!, 'SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    // Shims outlive containerd by design; ours are the ones that name our socket.
    for (const pid of ourProcesses(sock)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    detachMountsUnder(dir);
    rmSync(dir, { recursive: true, force: true });
    for (const d of cgroupDirs()) if (existsSync(d)) rmdirSync(d);
    // Deepest first, only what was not there before, and only when empty (another containerd may use it).
    for (const d of [...RUN_DIRS].reverse())
      if (!runBefore.includes(d) && existsSync(d) && readdirSync(d).length === 0) rmdirSync(d);
  };
  t.teardown(cleanup);

  const logStream: string[] = [];
  containerd.stderr.setEncoding('utf8').on('data', (d: string) => logStream.push(d));
  // Asynchronous: the registry answering ctr's pulls runs in this process.
  const ctr = (...args: string[]) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) =>
      execFile(
        'ctr',
        ['--address', sock, '--namespace', NS, ...args],
        { timeout: 120_000, maxBuffer: 1 << 24 },
        (err, stdout, stderr) =>
          resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
      ),
    );
  for (let i = 0; ; i++) {
    if (existsSync(sock) && (await ctr('version')).status === 0) break;
    if (containerd.exitCode !== null || i > 100) {
      t.fail(`containerd did not start: ${logStream.join('').slice(-2000)}`);
      return;
    }
    await sleep(100);
  }

  await t.test('(b) a pull goes to the loopback registry only', async (t) => {
    const busybox = images.images.find((i) => i.name === 'busybox')!;
    const pull = await ctr('images', 'pull', '--hosts-dir', hostsDir, 'docker.io/library/busybox:latest');
    t.equal(pull.status, 0, 'pulled', { stderr: pull.stderr });
    const layer = Object.values(busybox.blobs).find((b) => b.mediaType.endsWith('.tar'))!;
    t.ok(
      requests.some(
        (r) => r.url.startsWith(`/v2/library/busybox/blobs/${layer.digest}?ns=docker.io`) && r.status === 200,
      ),
      'the layer came from our registry, into an empty store',
    );
    const ls = await ctr('images', 'ls');
    t.match(ls.stdout, new RegExp(`^docker.io/library/busybox:latest\\s+\\S+\\s+${busybox.manifest.digest}`, 'm'));
    const before = requests.length;
    const unknown = await ctr('images', 'pull', '--hosts-dir', hostsDir, 'docker.io/library/nginx:latest');
    t.not(unknown.status, 0, 'a name we do not have is not found');
    t.match(unknown.stderr, /not found/);
    t.ok(
      requests.slice(before).some((r) => r.url.startsWith('/v2/library/nginx/manifests/latest?ns=docker.io')),
      'and it was asked of the loopback registry',
    );
    const other = await ctr('images', 'pull', '--hosts-dir', hostsDir, 'quay.io/example/app:1');
    t.not(other.status, 0, 'another registry goes through _default to the loopback one: not found');
    t.ok(requests.some((r) => r.url.includes('?ns=quay.io')));
  });

  await t.test('(a) every archive imports and lists its refs', async (t) => {
    for (const image of images.images) {
      const started = Date.now();
      const res = await ctr('images', 'import', image.archive);
      t.equal(res.status, 0, `import ${image.name}`, { stderr: res.stderr });
      t.comment(`import ${image.name} (${(image.size / 1e6).toFixed(1)} MB): ${Date.now() - started} ms`);
    }
    const ls = (await ctr('images', 'ls')).stdout;
    for (const image of images.images)
      for (const ref of image.refs)
        t.match(ls, new RegExp(`^${ref.replaceAll('.', '\\.')}\\s+\\S+\\s+${image.manifest.digest}\\s`, 'm'), ref);
    for (const ref of [
      ...BUSYBOX_IMAGES,
      PAUSE_IMAGE,
      MOUNT_IMAGE,
      PREVIOUS_MOUNT_IMAGE,
      NEXT_MOUNT_IMAGE,
      PROJECT_IMAGE,
    ])
      t.ok(images.refs.includes(ref), `${ref} is built`);
  });

  let n = 0;
  const run = (ref: string, ...cmd: string[]) =>
    ctr(
      'run',
      '--rm',
      '--runc-root',
      path.join(dir, 'runc'),
      '--cgroup',
      `/${CGROUP_PARENT}/c${++n}`,
      ref,
      `jfs-images-e2e-${n}`,
      ...cmd,
    );

  await t.test('(c) containers of each image run', async (t) => {
    const hello = await run(
      'docker.io/library/busybox:1.36',
      'sh',
      '-c',
      'echo hello from busybox; id -un; stat -c %a /tmp',
    );
    t.equal(hello.status, 0, 'busybox runs', { stderr: hello.stderr });
    t.equal(hello.stdout, 'hello from busybox\nroot\n1777\n');

    const versions: string[] = [];
    for (const ref of [MOUNT_IMAGE, PREVIOUS_MOUNT_IMAGE]) {
      const v = await run(ref, 'juicefs', 'version');
      t.equal(v.status, 0, `${ref}: juicefs version`, { stderr: v.stderr });
      t.match(v.stdout, /^juicefs version \d+\.\d+\.\d+/, ref);
      versions.push(v.stdout.trim());
      const tools = await run(
        ref,
        'sh',
        '-c',
        'command -v fusermount3; command -v fusermount; command -v /bin/juicefs',
      );
      t.equal(tools.stdout, '/usr/bin/fusermount3\n/usr/bin/fusermount\n/bin/juicefs\n', 'fuse tools and a shell');
    }
    t.match(versions[0], /version 1\.3\.1/);
    t.not(versions[0], versions[1], 'the two mount images have different clients');

    const cli = await run(PROJECT_IMAGE, 'node', '/app/dist/src/cli/main.js', '--version');
    t.equal(cli.status, 0, 'the CLI runs', { stderr: cli.stderr });
    t.equal(cli.stdout.trim(), PACKAGE_VERSION);
    const entry = await run(PROJECT_IMAGE);
    t.match(entry.stdout + entry.stderr, /Usage: jfs-sidecar/, 'the entrypoint is the CLI');
    const shipped = await run(
      PROJECT_IMAGE,
      'sh',
      '-c',
      'id -u; ls /app; ls /app/dist/src; command -v juicefs; command -v fusermount3',
    );
    t.equal(shipped.status, 0, 'a shell in the project image', { stderr: shipped.stderr });
    t.match(shipped.stdout, /^65532\n/, 'the unprivileged user by default');
    t.match(shipped.stdout, /^proto$/m);
    t.notMatch(shipped.stdout, /^local$/m, 'the harness is not shipped');
    t.match(shipped.stdout, /\/usr\/local\/bin\/juicefs\n\/usr\/bin\/fusermount3\n$/);
    const noDev = await run(PROJECT_IMAGE, 'sh', '-c', 'ls /app/node_modules');
    t.notMatch(noDev.stdout, /^(typescript|tap|eslint)$/m, 'production node_modules only');
    t.match(noDev.stdout, /^fastify$/m);
  });

  await t.test('(d) each mount image mounts a JuiceFS volume with FUSE (privileged, as a sidecar runs)', async (t) => {
    for (const [i, ref] of [MOUNT_IMAGE, PREVIOUS_MOUNT_IMAGE].entries()) {
      const vol = path.join(dir, `vol${i}`);
      mkdirSync(vol);
      // SQLite metadata and file storage in a host folder; the container has loopback only (no usage report).
      const script = [
        'set -e',
        'juicefs format --storage file --bucket /vol/data/ sqlite3:///vol/meta.db e2e >/dev/null 2>&1',
        'mkdir -p /jfs',
        'juicefs mount -d --no-usage-report sqlite3:///vol/meta.db /jfs >/dev/null 2>&1',
        `grep -qF " /jfs fuse.juicefs " /proc/mounts`,
        'echo written-through-fuse > /jfs/file',
        'cat /jfs/file',
        'juicefs umount /jfs',
      ].join('\n');
      const res = await ctr(
        'run',
        '--rm',
        '--privileged',
        '--runc-root',
        path.join(dir, 'runc'),
        '--cgroup',
        `/${CGROUP_PARENT}/m${i}`,
        '--mount',
        `type=bind,src=${vol},dst=/vol,options=rbind:rw`,
        ref,
        `jfs-images-e2e-mount-${i}`,
        'sh',
        '-c',
        script,
      );
      t.equal(res.status, 0, `${ref}: format, mount, write, read, umount`, { stderr: res.stderr });
      t.equal(res.stdout, 'written-through-fuse\n');
      t.ok(existsSync(path.join(vol, 'data/e2e')), 'the data went to the host folder');
    }
  });

  await cleanup();
  t.same(ourProcesses(sock), [], 'no containerd or shim left');
  t.same(
    readMounts().filter((m) => m.mountPoint.startsWith(dir)),
    [],
    'no mount left',
  );
  t.notOk(existsSync(dir), 'the folder is gone');
  t.same(
    cgroupDirs().filter((d) => existsSync(d)),
    [],
    'no cgroup left',
  );
  t.same(
    RUN_DIRS.filter((d) => existsSync(d)),
    runBefore,
    '/run/containerd as it was',
  );
});
