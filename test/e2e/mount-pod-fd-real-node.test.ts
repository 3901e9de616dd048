// Mount Pod mode with the node service holding each Mount Pod's FUSE fd
// (ADR 0015), on the real node (kubelet + containerd, the node plugin as its
// DaemonSet). One app pod uses several PVs, each served by its own Mount Pod;
// the whole client of a Mount Pod (supervisor and mount process) is SIGKILLed
// through containerd, as a container crash: the kubelet restarts the
// container, the new client takes the held fd over, and the app's mount works
// again on the same FUSE connection, nothing re-bound, the app not restarted.
// Then the same after the node plugin itself restarted (the fds recovered from
// the clients' own sockets), a 1.2.0 client (cannot hand over: re-bound), and
// an OOM kill under a memory limit (on this cgroup v1 node the kernel kills
// the mount process only: juicefs's own supervisor replaces it).
import type { V1Pod } from '@kubernetes/client-node';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { FD_HOLDER_ROOT } from '../../src/contract/keys.js';
import { mountAt } from '../../src/juicefs/mounts.js';
import { KUBELET_ROOT } from '../../src/local/real-node-stack.js';
import { PREVIOUS_MOUNT_IMAGE } from '../../src/local/images.js';
import { fdDirOf, isPodReady, mountPointOf } from '../../src/node/mount-pod-plan.js';
import { eventually } from '../env/harness.js';
import {
  containerIdOf,
  MOUNT_POD_NAMESPACE as NS,
  SMALL_MOUNT_POD,
  startRealNodeHarness,
} from '../env/real-node-harness.js';

t.setTimeout(20 * 60 * 1000);

const APP_NS = 'fd-apps';
/** Crash samples: one PV each, so each kill is its Mount Pod's first (the kubelet's crash back-off starts at 10 s). */
const SAMPLES = 5;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

t.test(
  "Mount Pod mode: the node service holds the client's FUSE fd; a crashed client is replaced on the same connection",
  { skip: process.getuid?.() !== 0 ? 'real mounts need root' : false },
  async (t) => {
    const h = await startRealNodeHarness(t, { volumeName: 'fdmp' });
    const { core, vol, mountPods } = h;
    const node = h.stack.node;
    const pvs = [...Array.from({ length: SAMPLES }, (_, i) => `pv-fd${i}`), 'pv-old', 'pv-oom'];
    const attributes = (pv: string): Record<string, string> => ({
      subPath: pv,
      ...SMALL_MOUNT_POD,
      // Opt-in for Mount Pods (ADR 0015); the 1.2.0 client has it too and never hands an fd over.
      'juicefs/fd-holder': 'true',
      ...(pv === 'pv-old' ? { 'juicefs/mount-image': PREVIOUS_MOUNT_IMAGE } : {}),
      // Small enough that a large write's buffers pass it (juicefs buffers up to --buffer-size, 300 MiB by default).
      ...(pv === 'pv-oom'
        ? { 'juicefs/mount-memory-limit': '160Mi', mountOptions: 'upload-limit=8,buffer-size=1024' }
        : {}),
    });
    await core.createNamespace({ body: { metadata: { name: APP_NS } } });
    await core.createNamespacedSecret({
      namespace: APP_NS,
      body: { metadata: { name: 'jfs-secret' }, stringData: vol.secrets },
    });
    for (const pv of pvs) {
      await core.createPersistentVolume({
        body: {
          metadata: { name: pv },
          spec: {
            capacity: { storage: '10Gi' },
            accessModes: ['ReadWriteMany'],
            persistentVolumeReclaimPolicy: 'Retain',
            storageClassName: '',
            csi: {
              driver: 'csi.juicefs.com',
              volumeHandle: pv,
              volumeAttributes: attributes(pv),
              nodePublishSecretRef: { name: 'jfs-secret', namespace: APP_NS },
            },
          },
        },
      });
      await core.createNamespacedPersistentVolumeClaim({
        namespace: APP_NS,
        body: {
          metadata: { name: pv },
          spec: {
            accessModes: ['ReadWriteMany'],
            storageClassName: '',
            volumeName: pv,
            resources: { requests: { storage: '10Gi' } },
          },
        },
      });
    }
    await eventually(
      async () =>
        (await core.readNamespacedServiceAccount({ name: 'default', namespace: APP_NS }).catch(() => undefined)) !==
        undefined,
      30_000,
      'default ServiceAccount',
    );
    // The app holds /d0/open.log open and appends a line every 0.2 s; each failed write is logged outside JuiceFS.
    const writer =
      'echo hello > /d0/hello.txt; exec 3>>/d0/open.log; i=0; ' +
      'while :; do i=$((i+1)); if ! echo "$i" >&3 2>>/tmp/err; then echo "write $i failed" >>/tmp/err; fi; sleep 0.2; done';
    const app: V1Pod = {
      metadata: { name: 'app', namespace: APP_NS },
      spec: {
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'app',
            image: 'busybox',
            command: ['sh', '-c', writer],
            volumeMounts: pvs.map((pv, i) => ({ name: pv, mountPath: `/d${i}` })),
          },
        ],
        volumes: pvs.map((pv) => ({ name: pv, persistentVolumeClaim: { claimName: pv } })),
      },
    };
    const created = await core.createNamespacedPod({ namespace: APP_NS, body: app });
    const uid = created.metadata!.uid!;
    await eventually(
      async () => isPodReady(await core.readNamespacedPod({ name: 'app', namespace: APP_NS })),
      240_000,
      'app pod Ready with its volumes',
    );
    const target = (pv: string) => path.join(KUBELET_ROOT, 'pods', uid, 'volumes/kubernetes.io~csi', pv, 'mount');
    const mountPodOf = async (pv: string) =>
      (await mountPods()).find((p) => p.metadata?.labels?.['volume-id'] === pv && !p.metadata?.deletionTimestamp);
    const restartsOf = (p: V1Pod | undefined) => p?.status?.containerStatuses?.[0]?.restartCount ?? 0;
    const appRestarts = async () =>
      restartsOf(await core.readNamespacedPod({ name: 'app', namespace: APP_NS }).catch(() => undefined));
    // In a child with a hard timeout: a read on a FUSE connection nobody serves blocks.
    const readable = (file: string) =>
      spawnSync('timeout', ['-s', 'KILL', '2', 'cat', file], { encoding: 'utf8' }).stdout === 'hello\n';
    const inApp = async (script: string) => h.exec(APP_NS, 'app', 'app', ['sh', '-c', script]);
    /** SIGKILL of every process of the Mount Pod's container (supervisor and mount process), as a crash. */
    const killWholeClient = (pod: V1Pod) => {
      const r = spawnSync(
        'ctr',
        ['--address', node.containerdSocket, '-n', 'k8s.io', 'tasks', 'kill', '--all', '-s', 'SIGKILL'].concat(
          containerIdOf(pod),
        ),
        { encoding: 'utf8' },
      );
      if (r.status !== 0) throw new Error(`ctr tasks kill failed: ${r.stderr.trim()}`);
    };
    // Each PV's files through the app's first volume only for d0; the others get their hello.txt from the host.
    for (const pv of pvs.slice(1)) spawnSync('sh', ['-c', `echo hello > ${target(pv)}/hello.txt`]);

    /** Kills the whole client; the time until the app's target reads again, and what the connection was. */
    const crash = async (pv: string, kill: (pod: V1Pod) => void | Promise<void> = killWholeClient) => {
      const pod = (await mountPodOf(pv))!;
      const device = mountAt(target(pv))?.device;
      await kill(pod);
      const started = Date.now();
      await eventually(async () => restartsOf(await mountPodOf(pv)) > restartsOf(pod), 120_000, `${pv} restarted`);
      await eventually(async () => readable(path.join(target(pv), 'hello.txt')), 120_000, `${pv} readable again`);
      const ms = Date.now() - started;
      const after = (await mountPodOf(pv))!;
      return {
        ms,
        before: device,
        after: mountAt(target(pv))?.device,
        same: after.metadata?.uid === pod.metadata?.uid,
      };
    };

    await t.test('each Mount Pod hands its FUSE fd to the node service', async (t) => {
      for (const pv of pvs) {
        const pod = (await mountPodOf(pv))!;
        const dir = fdDirOf(pod)!;
        t.equal(path.dirname(dir), FD_HOLDER_ROOT, `${pv}: fd-holder folder ${path.basename(dir)}`);
        await eventually(
          async () =>
            readdirSync(dir).some((f) => f.startsWith('fuse_fd_comm.')) && existsSync(`${dir}/fd-holder.sock`),
          30_000,
          `${pv}: the holder's socket and the client's own fd socket`,
        );
      }
      const logs = await core.readNamespacedPodLog({
        name: (await h.nodePluginPod()).metadata!.name!,
        namespace: NS,
        container: 'node',
      });
      const holding = logs.split('\n').filter((l) => l.includes("holding the Mount Pod client's FUSE fd")).length;
      t.ok(holding >= SAMPLES, `the node service holds the fds (${holding} hand-overs logged)`);
    });

    await t.test('SIGKILL of the whole client: same FUSE connection, no re-bind, the app not restarted', async (t) => {
      const times: number[] = [];
      for (const pv of pvs.slice(0, SAMPLES)) {
        const r = await crash(pv);
        times.push(r.ms);
        t.ok(r.same, `${pv}: the same Mount Pod, its container restarted by the kubelet`);
        t.equal(
          r.after,
          r.before,
          `${pv}: the app's target is on the same FUSE connection (${r.before}): not re-bound`,
        );
      }
      t.comment(`time to recovery after a whole-client SIGKILL: median ${median(times)} ms (${times.join(', ')} ms)`);
      t.equal(await appRestarts(), 0, 'the app container was never restarted');
      const newFile = await inApp('echo after > /d0/after.txt && cat /d0/after.txt && ls /d0 >/dev/null');
      t.equal(newFile.out, 'after\n', `files opened after the crash work (${newFile.err})`);
      // The file the app held open at the crash: its handle lived in the dead process.
      const err = await inApp('sleep 1; cat /tmp/err 2>/dev/null; echo; tail -n 1 /d0/open.log');
      t.comment(`the app's writes to the file open at the crash, afterwards:\n${err.out.trim()}`);
      t.match(err.out, /Bad file descriptor/, 'a file open at the crash: its writes fail with EBADF (not ENOTCONN)');
      t.notMatch(err.out, /not connected/, 'never "transport endpoint is not connected"');
    });

    await t.test(
      'the node plugin restarts: it takes the fds back from the clients, a crash still recovers',
      async (t) => {
        const plugin = await h.nodePluginPod();
        h.killContainer(plugin);
        await eventually(
          async () => restartsOf(await h.nodePluginPod()) > restartsOf(plugin),
          60_000,
          'node plugin restarted by the kubelet',
        );
        const recovered = await eventually(
          async () => {
            const logs = await core
              .readNamespacedPodLog({ name: plugin.metadata!.name!, namespace: NS, container: 'node' })
              .catch(() => '');
            const lines = logs.split('\n').filter((l) => l.includes('fd holder recovered after a restart'));
            return lines.length >= pvs.length ? lines : undefined;
          },
          60_000,
          'every holder recovered',
        );
        const withFd = recovered.filter((l) => l.includes('"recovered":true')).length;
        t.ok(withFd >= SAMPLES, `fds pulled back from the clients' own sockets (${withFd} of ${recovered.length})`);
        const r = await crash('pv-fd0');
        t.equal(r.after, r.before, `same FUSE connection after the plugin's restart, not re-bound (${r.ms} ms)`);
        t.comment(
          `recovery after a plugin restart, then a whole-client SIGKILL (second crash: kubelet back-off): ${r.ms} ms`,
        );
      },
    );

    await t.test('a 1.2.0 client cannot hand its fd over: the node service re-binds the target', async (t) => {
      const pod = (await mountPodOf('pv-old'))!;
      const version = await h.exec(NS, pod.metadata!.name!, 'jfs-mount', ['juicefs', 'version']);
      t.comment(`pv-old client: ${version.out.trim()}`);
      const r = await crash('pv-old');
      t.not(r.after, r.before, `re-bound to a new FUSE connection (${r.ms} ms)`);
      t.comment(`1.2.0 client, whole-client SIGKILL, re-bind: ${r.ms} ms`);
      // The held fd had to go for that: dropped as dead (the client's own umount of the hung mount point worked) or
      // released because the new client never asked for it (ADR 0019 decision 7).
      const logs = await core.readNamespacedPodLog({
        name: (await h.nodePluginPod()).metadata!.name!,
        namespace: NS,
        container: 'node',
      });
      const freed = logs
        .split('\n')
        .filter((l) => l.includes('pv-old') && /held FUSE fd is dead|did not ask for the held FUSE fd/.test(l));
      t.ok(freed.length > 0, 'the node service freed the held fd');
      for (const l of freed) t.comment(`node: ${l.slice(0, 300)}`);
    });

    await t.test('an OOM kill under a memory limit: the mount comes back on the same connection', async (t) => {
      const pod = (await mountPodOf('pv-oom'))!;
      const device = mountAt(target('pv-oom'))?.device;
      const cid = containerIdOf(pod);
      // The container's memory cgroup (cgroup v1 here, cgroupfs driver): its OOM kill count.
      const found = spawnSync('find', ['/sys/fs/cgroup/memory', '-type', 'd', '-name', cid], { encoding: 'utf8' });
      const cgroup = found.stdout.trim().split('\n')[0];
      const oomKills = () => Number(/oom_kill (\d+)/.exec(readFileSync(`${cgroup}/memory.oom_control`, 'utf8'))?.[1]);
      t.ok(cgroup, `the Mount Pod's memory cgroup ${cgroup}`);
      // Writes faster than the client may upload (upload-limit): its write buffers grow past the memory limit.
      void inApp('dd if=/dev/urandom of=/d6/big bs=1M count=600 2>&1').catch(() => undefined);
      await eventually(async () => oomKills() > 0, 90_000, 'an OOM kill in the Mount Pod');
      const started = Date.now();
      await eventually(async () => readable(path.join(target('pv-oom'), 'hello.txt')), 120_000, 'readable again');
      const after = (await mountPodOf('pv-oom'))!;
      const logs = await core.readNamespacedPodLog({
        name: pod.metadata!.name!,
        namespace: NS,
        container: 'jfs-mount',
      });
      const restarted = /will restart in 1 second/.test(logs);
      t.comment(
        `OOM kills ${oomKills()}; container restarts ${restartsOf(after)}; ` +
          `the supervisor restarted the mount process: ${restarted}; readable ${Date.now() - started} ms after the kill was seen`,
      );
      t.equal(mountAt(target('pv-oom'))?.device, device, 'same FUSE connection, not re-bound');
      t.equal(after.metadata?.uid, pod.metadata?.uid, 'same Mount Pod');
      t.equal(await appRestarts(), 0, 'the app not restarted');
    });

    await t.test('cleanup: the app gone, every Mount Pod and fd-holder folder goes', async (t) => {
      const before = await mountPods();
      const dirs = before.map(fdDirOf).filter((d): d is string => d !== undefined);
      const mountPoints = before.map(mountPointOf).filter((m): m is string => m !== undefined);
      await core.deleteNamespacedPod({ name: 'app', namespace: APP_NS, gracePeriodSeconds: 0 });
      await eventually(async () => (await mountPods()).length === 0, 120_000, 'Mount Pods deleted');
      await eventually(async () => dirs.every((d) => !existsSync(d)), 30_000, 'fd-holder folders removed');
      const left = pvs.map((pv) => mountAt(target(pv))).filter(Boolean);
      t.same(left, [], 'no target left mounted');
      t.same(
        mountPoints.filter((m) => mountAt(m)),
        [],
        'no Mount Pod mount point left mounted',
      );
    });
  },
);
