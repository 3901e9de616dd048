// Classic placement (enableNativeSidecar: false) on the real node: the sidecar
// is a regular container, so a Job's pod completes only because the
// controller's stopper (src/controller/classic-stopper.ts) execs the stop into
// it once the app has exited (issue 12 item 5, ADR 0013 and 0018). Five Jobs,
// one after the other: each pod Succeeded, the sidecar Completed with exit 0,
// and the delay from the app's end to the sidecar's by the kubelet's own
// timestamps (1 s resolution), median of 5.
import t from 'tap';
import {
  makeNamespace,
  pvDirOf,
  quantile,
  readOnHost,
  runJob,
  setNativeSidecar,
  startSuiteWorld,
} from '../env/real-node-world.js';

t.setTimeout(20 * 60 * 1000);

const w = await startSuiteWorld(t, { nodePlugin: false });
if (w) {
  const NS = 'rn-classic';
  await makeNamespace(w, NS, 'sidecar', ['data']);
  await setNativeSidecar(w, false);

  t.test('a classic-placement Job completes within seconds of its app; the sidecar exits 0', async (t) => {
    const stamps: number[] = [];
    const observed: number[] = [];
    for (let i = 0; i < 5; i++) {
      const name = `job-classic-${i}`;
      const run = await runJob(w, NS, name, 'data');
      const statuses = run.pod.status?.containerStatuses ?? [];
      t.ok(
        (run.pod.spec?.containers ?? []).some((c) => c.name === 'jfs-mount'),
        `${name}: the sidecar is a regular container (classic placement)`,
      );
      const side = statuses.find((s) => s.name === 'jfs-mount');
      t.equal(run.pod.status?.phase, 'Succeeded', `${name}: the pod Succeeded`);
      t.equal(side?.state?.terminated?.exitCode, 0, `${name}: the sidecar exited 0`);
      t.equal(side?.state?.terminated?.reason, 'Completed', `${name}: reason Completed`);
      t.ok(run.observedDelayMs <= 10_000, `${name}: completed ${run.observedDelayMs} ms after the app (≤ 10 s)`);
      t.equal(readOnHost(w, `${await pvDirOf(w, NS, 'data')}/${name}.txt`), `${name}\n`, `${name}: its write is kept`);
      stamps.push(run.stampDelayS);
      observed.push(run.observedDelayMs);
      await w.batch.deleteNamespacedJob({ name, namespace: NS, propagationPolicy: 'Background' });
    }
    const median = quantile(stamps, 0.5);
    t.comment(
      `classic placement, app end → sidecar end by kubelet stamps: ${stamps.join(', ')} s (median ${median} s); ` +
        `app seen terminated → pod completed: ${observed.join(', ')} ms (median ${quantile(observed, 0.5)} ms)`,
    );
    t.ok(median <= 3, `median delay ${median} s ≤ 3 s (before: the Job never completed)`);
  });
}
