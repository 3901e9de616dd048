// Mount Pod smooth upgrades on the real node (issue 13 item 2, ADR 0019), driven by JuiceFSUpgrade objects through
// the real controller (--upgrades, its shipped RBAC) and the node plugin as its DaemonSet. The Mount Pods start on
// the previous client (juicefs 1.2.0, which never hands its fd over by itself: the node service pulls it from the
// supervisor's own socket) and are upgraded to 1.3.1, a really different client:
// - mount-pod-binary: a copy pod puts the 1.3.1 binary in each Mount Pod's fd folder, one exec moves it in place and
//   SIGHUPs the mount process; the 1.2.0 supervisor re-execs the new binary on the same FUSE connection;
// - mount-pod-recreate: the client container's image is patched; the kubelet runs the preStop (a handover: SIGHUP,
//   no unmount) and starts a 1.3.1 container, which takes the held fd and the saved open handles.
// One app pod keeps a file open on every volume and appends a numbered line once a second throughout: no write may
// fail or go missing, the version in each mount's .config must be the new one, the FUSE device the same. Then a
// whole-client SIGKILL of an upgraded Mount Pod: the time until its target reads again.
import { CustomObjectsApi, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import t, { type Test } from 'tap';
import { ATTR, SYSTEM_NAMESPACE } from '../../src/contract/keys.js';
import { mountAt } from '../../src/juicefs/mounts.js';
import { applyObjects, readManifest } from '../../src/local/components.js';
import { MOUNT_IMAGE, PREVIOUS_MOUNT_IMAGE } from '../../src/local/images.js';
import { KUBELET_ROOT } from '../../src/local/real-node-stack.js';
import { isPodReady, volumeLabel } from '../../src/node/mount-pod-plan.js';
import {
  UPGRADE_GROUP,
  UPGRADE_PLURAL,
  UPGRADE_VERSION,
  type JuiceFSUpgrade,
  type UpgradeSpec,
} from '../../src/upgrade/types.js';
import { eventually } from '../env/harness.js';
import {
  appPod,
  createPod,
  exec,
  killClientFromHost,
  makeNamespace,
  podWhen,
  quantile,
  startSuiteWorld,
} from '../env/real-node-world.js';

t.setTimeout(30 * 60 * 1000);

const NS = 'mpup-apps';
const OLD_SC = 'juicefs-prev';
/**
 * Mount Pods per kind (JFS_MPUP_PER_KIND, at most 3: the app's shell keeps one fd per volume, 3..8, and busybox's sh
 * takes single-digit fds only): the upgrade time's median and p99 are over these.
 */
const PER_KIND = Math.min(3, Number(process.env.JFS_MPUP_PER_KIND ?? 3));
const BINARY = Array.from({ length: PER_KIND }, (_, i) => `bin${i}`);
const RECREATE = Array.from({ length: PER_KIND }, (_, i) => `rec${i}`);
const CLAIMS = [...BINARY, ...RECREATE];
const CRD = { group: UPGRADE_GROUP, version: UPGRADE_VERSION, plural: UPGRADE_PLURAL };
const median = (xs: number[]) => quantile(xs, 0.5);
const p99 = (xs: number[]) => quantile(xs, 0.99);

const w = await startSuiteWorld(t, { nodePlugin: true, controllerArgs: ['--upgrades'] });
if (w) {
  const custom = w.kc.makeApiClient(CustomObjectsApi);
  const readUpgrade = async (name: string) => (await custom.getClusterCustomObject({ ...CRD, name })) as JuiceFSUpgrade;
  const createUpgrade = (name: string, spec: UpgradeSpec) =>
    custom.createClusterCustomObject({
      ...CRD,
      body: { apiVersion: `${UPGRADE_GROUP}/${UPGRADE_VERSION}`, kind: 'JuiceFSUpgrade', metadata: { name }, spec },
    });
  const mountPods = async () =>
    (
      await w.core.listNamespacedPod({
        namespace: SYSTEM_NAMESPACE,
        labelSelector: 'app.kubernetes.io/name=juicefs-mount',
      })
    ).items;
  const pvOf = new Map<string, string>();
  const mountPodOf = async (claim: string) =>
    (await mountPods()).find(
      (p) => p.metadata?.labels?.['volume-id'] === volumeLabel(pvOf.get(claim)!) && !p.metadata?.deletionTimestamp,
    );
  const nodeLog = async () => {
    const plugin = (await w.core.listNamespacedPod({ namespace: SYSTEM_NAMESPACE })).items.find((p) =>
      p.metadata?.name?.startsWith('jfs-sidecar-node'),
    );
    if (!plugin) return '';
    return w.core
      .readNamespacedPodLog({ name: plugin.metadata!.name!, namespace: SYSTEM_NAMESPACE, container: 'node' })
      .catch(() => '');
  };
  const inApp = (script: string) => exec(w, NS, 'app', 'app', ['sh', '-c', script], 60_000);
  const client = (p: V1Pod | undefined) => p?.status?.containerStatuses?.find((s) => s.name === 'jfs-mount');
  let appUid = '';
  const target = (claim: string) =>
    path.join(KUBELET_ROOT, 'pods', appUid, 'volumes/kubernetes.io~csi', pvOf.get(claim)!, 'mount');
  const dataDir = (claim: string) => (CLAIMS.indexOf(claim) === 0 ? '/data' : `/data${CLAIMS.indexOf(claim)}`);
  /** The running client's version and mount process, from the mount's own .config, read in the app. */
  const clientOf = async (claim: string) => {
    const r = await inApp(`cat ${dataDir(claim)}/.config`);
    const version = /"Version":\s*"([^"]+)"/.exec(r.out)?.[1];
    const pid = /"Pid":\s*(\d+)/.exec(r.out)?.[1];
    return { version, pid };
  };

  const setUp = async () => {
    await applyObjects(w.kc, readManifest('upgrade-crd.yaml'));
    const sc = readManifest('storageclass-example.yaml').find((o) => o.kind === 'StorageClass') as KubernetesObject & {
      parameters?: Record<string, string>;
    };
    await applyObjects(w.kc, [
      {
        ...sc,
        metadata: { name: OLD_SC },
        parameters: {
          ...sc.parameters,
          [ATTR.cpuRequest]: '50m',
          [ATTR.memoryRequest]: '64Mi',
          [ATTR.mountImage]: PREVIOUS_MOUNT_IMAGE,
        },
      } as KubernetesObject,
    ]);
    await eventually(
      async () => (await custom.listClusterCustomObject(CRD)).items !== undefined,
      30_000,
      'the JuiceFSUpgrade API to be served',
    );
    await makeNamespace(w, NS, 'mount-pod', CLAIMS, OLD_SC);
    for (const c of CLAIMS)
      pvOf.set(c, (await w.core.readNamespacedPersistentVolumeClaim({ name: c, namespace: NS })).spec!.volumeName!);
  };
  const ready = await setUp().then(
    () => true,
    (err: Error) => {
      t.fail(`setup: ${err.message}`);
      return false;
    },
  );

  if (ready) {
    // Every volume: fd 3+i holds <dir>/open.log open; one numbered line a second to each; each round's time (from
    // /proc/uptime, 10 ms steps) to /tmp/times, each failed write to /tmp/err (outside JuiceFS).
    const opens = CLAIMS.map((c, i) => `exec ${3 + i}>>${dataDir(c)}/open.log`).join('; ');
    const writes = CLAIMS.map(
      (c, i) => `echo "$i" >&${3 + i} 2>>/tmp/err || echo "write $i to ${dataDir(c)} failed" >>/tmp/err`,
    ).join('; ');
    const writer =
      `${opens}; : >/tmp/err; i=0; trap 'exit 0' TERM; ` +
      `while :; do i=$((i+1)); ${writes}; read up rest </proc/uptime; echo "$i $up" >>/tmp/times; sleep 1; done`;
    const before = new Map<string, { device?: string; uid?: string; version?: string }>();

    await t.test(`an app writes once a second through an open file on ${CLAIMS.length} 1.2.0 Mount Pods`, async (t) => {
      const created = await createPod(w, appPod(NS, 'app', CLAIMS, writer));
      appUid = created.metadata!.uid!;
      await podWhen(w, NS, 'app', (p) => isPodReady(p), 240_000, 'app Ready', 500);
      // The 1.2.0 client never hands its fd over; the node service's check pass pulls it from its supervisor.
      await eventually(
        async () =>
          (await nodeLog()).split('\n').filter((l) => l.includes('pulled the FUSE fd')).length >= CLAIMS.length,
        60_000,
        "the node service holds every 1.2.0 client's fd (pulled from its own socket)",
      );
      for (const c of CLAIMS) {
        const pod = (await mountPodOf(c))!;
        const { version } = await clientOf(c);
        before.set(c, { device: mountAt(target(c))?.device, uid: pod.metadata?.uid, version });
        t.match(version, /^1\.2\.0/, `${c}: client ${version}`);
      }
    });

    const rollout = async (t: Test, name: string, kind: UpgradeSpec['kind'], claims: string[]) => {
      const t0 = Date.now();
      await createUpgrade(name, {
        kind,
        target: { image: MOUNT_IMAGE },
        selector: {
          namespaces: [SYSTEM_NAMESPACE],
          podSelector: {
            matchExpressions: [
              { key: 'volume-id', operator: 'In', values: claims.map((c) => volumeLabel(pvOf.get(c)!)) },
            ],
          },
        },
        strategy: { maxUnavailable: 1, podTimeoutSeconds: 120 },
      });
      let last: JuiceFSUpgrade | undefined;
      await eventually(
        async () => {
          last = await readUpgrade(name);
          return last.status?.phase === 'Completed' || last.status?.phase === 'Failed';
        },
        600_000,
        `${name} to end`,
      ).catch(() => undefined);
      t.equal(last?.status?.phase, 'Completed', `${name}: ${last?.status?.message}`);
      const times = (last?.status?.pods ?? [])
        .filter((p) => p.startedAt && p.finishedAt)
        .map((p) => Date.parse(p.finishedAt!) - Date.parse(p.startedAt!));
      t.equal(times.length, claims.length, `${claims.length} Mount Pods upgraded`);
      for (const p of last?.status?.pods ?? []) t.comment(`${p.name}: ${p.phase} ${p.message ?? ''}`);
      t.comment(
        `${kind}: upgrade time per Mount Pod (status startedAt → finishedAt, canary included): median ${median(times)} ms, p99 ${p99(times)} ms (${times.join(', ')}); whole rollout ${Date.now() - t0} ms`,
      );
      for (const c of claims) {
        const pod = await mountPodOf(c);
        const { version } = await clientOf(c);
        t.match(version, /^1\.3\.1/, `${c}: the client serving the mount is now ${version}`);
        t.equal(
          mountAt(target(c))?.device,
          before.get(c)?.device,
          `${c}: same FUSE connection (${before.get(c)?.device})`,
        );
        t.equal(pod?.metadata?.uid, before.get(c)?.uid, `${c}: the same Mount Pod, references and hash untouched`);
        t.ok(isPodReady(pod), `${c}: Mount Pod Ready`);
      }
      return { times, pods: last?.status?.pods ?? [] };
    };

    await t.test('binary upgrade 1.2.0 → 1.3.1 of three Mount Pods (JuiceFSUpgrade mount-pod-binary)', async (t) => {
      await rollout(t, 'mp-binary', 'mount-pod-binary', BINARY);
      for (const c of BINARY)
        t.equal(client(await mountPodOf(c))?.restartCount, 0, `${c}: the container was not restarted`);
    });

    await t.test(
      'recreate upgrade 1.2.0 → 1.3.1 of three Mount Pods (JuiceFSUpgrade mount-pod-recreate)',
      async (t) => {
        await rollout(t, 'mp-recreate', 'mount-pod-recreate', RECREATE);
        for (const c of RECREATE) {
          const s = client(await mountPodOf(c));
          t.equal(s?.restartCount, 1, `${c}: the kubelet replaced the client container once`);
          t.match(s?.image ?? '', /ce-v1\.3\.1$/, `${c}: running ${s?.image}`);
        }
      },
    );

    await t.test('the app: no write failed, none lost, longest stall', async (t) => {
      await new Promise((r) => setTimeout(r, 3000));
      const err = await inApp('cat /tmp/err');
      t.equal(err.out.trim(), '', 'no write failed (no I/O error on any volume)');
      const times = (await inApp('cat /tmp/times')).out
        .trim()
        .split('\n')
        .map((l) => Number(l.split(' ')[1]) * 1000);
      const rounds = times.length;
      let stall = 0;
      for (let i = 1; i < times.length; i++) stall = Math.max(stall, times[i] - times[i - 1] - 1000);
      t.comment(`app: ${rounds} rounds of writes; longest write stall (round gap − 1 s): ${Math.round(stall)} ms`);
      for (const c of CLAIMS) {
        const lines = (await inApp(`cat ${dataDir(c)}/open.log`)).out.trim().split('\n').map(Number);
        const complete = lines.every((n, i) => n === i + 1);
        t.ok(complete && lines.length >= rounds - 1, `${c}: open.log holds 1..${lines.length} in order, nothing lost`);
      }
    });

    await t.test('a whole-client SIGKILL of an upgraded Mount Pod: back on the same connection', async (t) => {
      const samples: number[] = [];
      // Recreate-upgraded ones: their image is 1.3.1. A binary-upgraded Mount Pod whose container restarts runs its
      // image's binary again (1.2.0 here: it cannot take the held fd; it mounts afresh, its targets are re-bound).
      for (const c of RECREATE.slice(0, 2)) {
        const pod = (await mountPodOf(c))!;
        const restarts = client(pod)?.restartCount ?? 0;
        const device = mountAt(target(c))?.device;
        const killed = killClientFromHost(pod.metadata!.uid!);
        t.ok(killed.length >= 2, `${c}: supervisor and mount process SIGKILLed from the host (${killed.join(', ')})`);
        const started = Date.now();
        await eventually(async () => (client(await mountPodOf(c))?.restartCount ?? 0) > restarts, 120_000, 'restarted');
        await eventually(
          async () => spawnSync('timeout', ['-s', 'KILL', '2', 'ls', target(c)], { encoding: 'utf8' }).status === 0,
          120_000,
          `${c} readable`,
        );
        samples.push(Date.now() - started);
        t.equal(mountAt(target(c))?.device, device, `${c}: same FUSE connection after the crash`);
      }
      t.comment(`whole-client SIGKILL after an upgrade: recovery ${samples.join(', ')} ms`);
    });
  }
}
