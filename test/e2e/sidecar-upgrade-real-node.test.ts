// The sidecar's in-place upgrade on the real node (issue 13 item 3, issue 12's F2): an app holds a file open in
// /data and appends to it every 0.2 s; the upgrader arms the handover in the pod's FUSE fd holder (the one exec its
// after-admission policy allows it) and changes jfs-mount's image in the running pod. The kubelet restarts the
// native sidecar in place; the outgoing client hands the FUSE fd and its open files to the holder, the new one (from
// the new image) takes both. Checked: no write fails, none is lost, the open file's content is complete, /data is
// the same FUSE connection, the app is not restarted, the client runs from the new image; the longest write stall.
import type { V1Pod } from '@kubernetes/client-node';
import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import t from 'tap';
import { FD_HOLDER_NAME } from '../../src/contract/keys.js';
import { expectHandoverCommand } from '../../src/controller/upgrade-sidecar.js';
import { MOUNT_IMAGE, NEXT_MOUNT_IMAGE, qualifiedRef } from '../../src/local/images.js';
import {
  appPod,
  appRunning,
  createPod,
  exec,
  makeNamespace,
  podWhen,
  quantile,
  startSuiteWorld,
} from '../env/real-node-world.js';

t.setTimeout(15 * 60 * 1000);

const w = await startSuiteWorld(t, { nodePlugin: false });
if (w) {
  const NS = 'rn-upgrade';
  await makeNamespace(w, NS, 'sidecar', ['data']);
  // The after-admission policy lets only the upgrader (the controller's ServiceAccount) change an injected image.
  const upgraderKc = new KubeConfig();
  upgraderKc.loadFromFile(await w.cp.serviceAccountKubeconfig('juicefs-system', 'jfs-sidecar-controller'));
  const upgrader = upgraderKc.makeApiClient(CoreV1Api);

  // fd 3 stays open on /data/open.log for the pod's life; each line of /tmp/w.log (outside the volume) is
  // `<n> <uptime> ok|ERR <error>` for the n-th append.
  const APP = `trap 'exit 0' TERM; exec 3>>/data/open-$HOSTNAME.log; i=0
while :; do i=$((i+1)); if echo "$i" >&3 2>/tmp/err; then r=ok; else r="ERR $(cat /tmp/err)"; fi
read up _ </proc/uptime; echo "$i $up $r" >>/tmp/w.log; sleep 0.2; done &
wait`;
  const deviceOf = async (pod: string) =>
    (await exec(w, NS, pod, 'app', ['sh', '-c', 'awk \'$5 == "/data" {print $3}\' /proc/self/mountinfo'])).out.trim();
  const status = (p: V1Pod, name: string) =>
    [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])].find((s) => s.name === name);

  t.test('jfs-mount upgraded in place: the open file keeps working, same connection (x3)', async (t) => {
    const pods = ['upg-0', 'upg-1', 'upg-2'];
    for (const p of pods) await createPod(w, appPod(NS, p, ['data'], APP));
    const stalls: number[] = [];
    const swaps: number[] = [];
    for (const p of pods) {
      const before = await podWhen(w, NS, p, (x) => appRunning(x), 180_000, `pod ${p} Running`);
      const client = before.spec!.initContainers!.find((c) => c.name.startsWith('jfs-mount'))!;
      t.equal(qualifiedRef(client.image!), MOUNT_IMAGE, `${p}: the client runs ${MOUNT_IMAGE}`);
      t.ok(
        before.spec!.initContainers!.some((c) => c.name === FD_HOLDER_NAME),
        `${p}: the pod has its FUSE fd holder`,
      );
      const oldImageId = status(before, client.name)?.imageID;
      const oldRestarts = status(before, client.name)?.restartCount ?? 0;
      const device = await deviceOf(p);
      await new Promise((r) => setTimeout(r, 2000)); // writes under way before the swap

      // The upgrader's two steps, as the JuiceFSUpgrade sidecar actuator takes them.
      const armed = await exec(w, NS, p, FD_HOLDER_NAME, expectHandoverCommand([client.name]));
      t.equal(armed.status.status, 'Success', `${p}: handover armed (${armed.err.trim() || 'ok'})`);
      const started = Date.now();
      // As `kubectl set image` does it: a strategic merge of the one container, by name.
      await upgrader.patchNamespacedPod(
        {
          name: p,
          namespace: NS,
          body: { spec: { initContainers: [{ name: client.name, image: NEXT_MOUNT_IMAGE }] } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
      );
      const after = await podWhen(
        w,
        NS,
        p,
        (x) => {
          const s = status(x, client.name);
          return !!s && s.imageID !== oldImageId && s.started === true && s.ready === true;
        },
        120_000,
        `${p}: ${client.name} restarted on ${NEXT_MOUNT_IMAGE}`,
      );
      swaps.push(Date.now() - started);
      await new Promise((r) => setTimeout(r, 2000)); // writes after the swap

      t.equal(status(after, client.name)?.restartCount, oldRestarts + 1, `${p}: the client restarted in place once`);
      t.equal(status(after, 'app')?.restartCount, 0, `${p}: the app was not restarted`);
      t.equal(status(after, FD_HOLDER_NAME)?.restartCount, 0, `${p}: the holder was not restarted`);
      t.equal(after.metadata?.uid, before.metadata?.uid, `${p}: the same pod`);
      t.equal(await deviceOf(p), device, `${p}: /data is the same FUSE connection (${device})`);
      const image = await exec(w, NS, p, client.name, ['sh', '-c', 'cat /etc/jfs-sidecar-image; juicefs version']);
      t.match(image.out, /^next\n.*juicefs version 1\.3\.1/s, `${p}: the client runs from the new image`);

      const log = (await exec(w, NS, p, 'app', ['cat', '/tmp/w.log'])).out.trim().split('\n');
      const rows = log.map((l) => l.split(' '));
      const errors = log.filter((l) => / ERR /.test(l));
      t.same(errors, [], `${p}: no append failed (${log.length} appends)`);
      t.same(
        rows.map((r) => Number(r[0])),
        rows.map((_, i) => i + 1),
        `${p}: the appends are one sequence`,
      );
      let stall = 0;
      for (let i = 1; i < rows.length; i++) stall = Math.max(stall, Number(rows[i][1]) - Number(rows[i - 1][1]));
      stalls.push(Math.round(stall * 1000));
      // Every append that succeeded is in the file, in order (the file the app still holds open).
      const content = (await exec(w, NS, p, 'app', ['cat', `/data/open-${p}.log`])).out.trim().split('\n');
      const okCount = rows.length;
      t.same(
        content.slice(0, okCount).map(Number),
        rows.map((r) => Number(r[0])),
        `${p}: the open file holds every append (${content.length} lines)`,
      );
      const fresh = await exec(w, NS, p, 'app', ['sh', '-c', `echo new > /data/after-${p} && cat /data/after-${p}`]);
      t.equal(fresh.out, 'new\n', `${p}: a file opened after the swap works`);
    }
    const sortedStalls = [...stalls].sort((a, b) => a - b);
    const sortedSwaps = [...swaps].sort((a, b) => a - b);
    t.comment(
      `in-place sidecar upgrade, ${pods.length} pods: patch → new client ready (ms) ${sortedSwaps.join(', ')}, ` +
        `median ${quantile(sortedSwaps, 0.5)}; the app's longest write stall (ms, 0.2 s period) ` +
        `${sortedStalls.join(', ')}, median ${quantile(sortedStalls, 0.5)}`,
    );
    for (const p of pods) await w.core.deleteNamespacedPod({ name: p, namespace: NS, gracePeriodSeconds: 10 });
    const deadline = Date.now() + 90_000;
    for (const p of pods)
      while (Date.now() < deadline) {
        const gone = await w.core.readNamespacedPod({ name: p, namespace: NS }).then(
          () => false,
          () => true,
        );
        if (gone) break;
        await new Promise((r) => setTimeout(r, 500));
      }
  });
}
