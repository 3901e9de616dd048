// The FUSE fd holder of sidecar mode on the real node (issue 13 item 1, issue 12 item 5's crash case; ADR 0015):
// the whole client of a sidecar is SIGKILLed (supervisor and mount process, as a crash of the container): the
// kubelet restarts the native sidecar, its new client takes the FUSE fd the holder container kept, and the app's
// /data (the kubelet's subPath bind of the same connection) works again with no pod restart and no re-bind.
// Files opened after the crash work; a file open at the crash gets EBADF (its handle died with the process).
// Time to recovery: median of 5 pods, each crashed once (a first container restart has no kubelet back-off).
import t from 'tap';
import {
  appPod,
  appRunning,
  createPod,
  exec,
  killClient,
  makeNamespace,
  podWhen,
  quantile,
  startSuiteWorld,
  timeToVolumeBack,
} from '../env/real-node-world.js';
import { FD_HOLDER_NAME } from '../../src/contract/keys.js';

t.setTimeout(15 * 60 * 1000);

const w = await startSuiteWorld(t, { nodePlugin: false });
if (w) {
  const NS = 'rn-fdholder';
  await makeNamespace(w, NS, 'sidecar', ['data']);

  // The app holds /data/open.log open on fd 3 and appends to it every 0.2 s, logging each result to /tmp/w.log
  // (outside the volume); it also keeps working on SIGTERM long enough for the stop.
  const APP = `trap 'exit 0' TERM; exec 3>>/data/open-$HOSTNAME.log; i=0
while :; do i=$((i+1)); if echo $i >&3 2>/tmp/err; then echo "$i ok" >/tmp/w.log; else echo "$i ERR $(cat /tmp/err)" >/tmp/w.log; fi; sleep 0.2; done &
wait`;
  const deviceOf = async (pod: string) =>
    (await exec(w, NS, pod, 'app', ['sh', '-c', 'awk \'$5 == "/data" {print $3}\' /proc/self/mountinfo'])).out.trim();
  const restarts = (p: Awaited<ReturnType<typeof podWhen>>, name: string) =>
    [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])].find((s) => s.name === name)
      ?.restartCount ?? 0;

  t.test('SIGKILL of the whole sidecar client: the app gets /data back on the same connection (x5)', async (t) => {
    const pods = ['fdh-0', 'fdh-1', 'fdh-2', 'fdh-3', 'fdh-4'];
    for (const p of pods) await createPod(w, appPod(NS, p, ['data'], APP));
    const times: number[] = [];
    for (const p of pods) {
      const before = await podWhen(w, NS, p, (x) => appRunning(x), 180_000, `pod ${p} Running`);
      const names = (before.spec?.initContainers ?? []).map((c) => c.name);
      t.equal(names[0], FD_HOLDER_NAME, `${p}: the holder is the first init container (${names.join(', ')})`);
      const sidecar = names.find((n) => n.startsWith('jfs-mount'))!;
      const device = await deviceOf(p);
      const killed = await killClient(w, NS, p, sidecar);
      // The writer's last result at the kill (numbered): what it reports after that is the open file's fate.
      const atKill = Number((await exec(w, NS, p, 'app', ['cat', '/tmp/w.log'])).out.trim().split(' ')[0] || 0);
      // Every juicefs process of the container (sometimes only the supervisor is found, while it restarts its child:
      // its death ends the container's script, so the whole client goes either way).
      t.ok(killed.length > 0, `${p}: juicefs processes killed (${killed.replace(/\n/g, ' ')})`);
      const back = await timeToVolumeBack(w, NS, p, '/data', 60_000);
      t.ok(back.ms !== undefined, `${p}: /data works again after ${back.ms} ms (${back.lastError || 'no error seen'})`);
      if (back.ms !== undefined) times.push(back.ms);
      // The kubelet reports the restart a moment after the new client already serves.
      const after = await podWhen(w, NS, p, (x) => restarts(x, sidecar) > restarts(before, sidecar), 30_000, p);
      t.equal(restarts(after, sidecar), restarts(before, sidecar) + 1, `${p}: the sidecar container restarted once`);
      t.equal(restarts(after, 'app'), 0, `${p}: the app container was not restarted`);
      t.equal(restarts(after, FD_HOLDER_NAME), 0, `${p}: the holder was not restarted`);
      t.equal(await deviceOf(p), device, `${p}: /data is the same FUSE connection (${device}), not a re-bind`);
      const fresh = await exec(w, NS, p, 'app', ['sh', '-c', `echo new > /data/after-${p} && cat /data/after-${p}`]);
      t.equal(fresh.out, 'new\n', `${p}: a file opened after the crash works`);
      // The file open at the crash: its handle died with the old client process. The write in flight at the kill (#n+1)
      // is interrupted by the new client (go-fuse's lost-request check); each later one gets EBADF. Judged on a write
      // numbered after that one: the status file still said the pre-crash "ok" when read too early (a CI flake).
      let open = '';
      for (let i = 0; i < 40; i++) {
        open = (await exec(w, NS, p, 'app', ['cat', '/tmp/w.log'])).out.trim();
        if (Number(open.split(' ')[0]) >= atKill + 2) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      t.comment(
        `${p}: the file open at the crash, written after recovery (last result #${atKill} at the kill): ${open}`,
      );
      t.ok(Number(open.split(' ')[0]) >= atKill + 2, `${p}: the writer went on after the crash`);
      t.match(open, /ERR .*(Bad file descriptor|bad file)/i, `${p}: the file open at the crash: EBADF`);
    }
    const sorted = [...times].sort((a, b) => a - b);
    t.comment(
      `time to recovery after a whole-client SIGKILL (ms): ${sorted.join(', ')}; median ${quantile(sorted, 0.5)}`,
    );
    for (const p of pods) await w.core.deleteNamespacedPod({ name: p, namespace: NS, gracePeriodSeconds: 10 });
    // Gone before the world stops, so that nothing of theirs is left on the node.
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
