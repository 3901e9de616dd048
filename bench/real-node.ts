// The real-node figures of issue 12 (BENCH_ONLY=real-node; root and the real
// node's prerequisites): pod CREATE → app Running with one JuiceFS volume in
// sidecar mode and Mount Pod mode (interleaved), the Job completion delay after
// the app exits (native sidecar), and the time until the app sees its volume
// again after its FUSE client is killed, in both modes. One node (with the node
// plugin, for Mount Pod mode), started once.
import type { V1Pod } from '@kubernetes/client-node';
import { MOUNT_POD_APP_VALUE, SYSTEM_NAMESPACE } from '../src/contract/keys.js';
import { missingRealNodePrerequisites } from '../src/local/real-node.js';
import {
  appPod,
  appRunning,
  createPod,
  killClient,
  killClientFromHost,
  makeNamespace,
  podWhen,
  quantile,
  runJob,
  startWorld,
  timeToVolumeBack,
  type World,
} from '../test/env/real-node-world.js';
import { eventually } from '../test/env/harness.js';

const PODS = Number(process.env.BENCH_RN_PODS ?? '20');
const JOBS = Number(process.env.BENCH_RN_JOBS ?? '5');
const SIDECAR_NS = 'bench-sidecar';
const MOUNT_POD_NS = 'bench-mountpod';

async function deleteAndWait(w: World, namespace: string, name: string): Promise<void> {
  await w.core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 5 }).catch(() => undefined);
  await eventually(
    async () => !(await w.core.readNamespacedPod({ name, namespace }).catch(() => undefined)),
    120_000,
    `pod ${namespace}/${name} gone`,
  );
}

/** CREATE → app container Running and ready (polled every 100 ms). */
async function startupMs(w: World, namespace: string, name: string): Promise<number> {
  const t0 = Date.now();
  await createPod(w, appPod(namespace, name, ['data']));
  await podWhen(w, namespace, name, (p) => appRunning(p), 180_000, `${namespace}/${name} Running`, 100);
  return Date.now() - t0;
}

async function mountPodOf(w: World): Promise<V1Pod> {
  return eventually(
    async () =>
      (
        await w.core.listNamespacedPod({
          namespace: SYSTEM_NAMESPACE,
          labelSelector: `app.kubernetes.io/name=${MOUNT_POD_APP_VALUE}`,
        })
      ).items.find((p) => p.status?.phase === 'Running' && !p.metadata?.deletionTimestamp),
    60_000,
    'a Running Mount Pod',
  );
}

const fmt = (xs: number[]) =>
  xs.length ? `median ${quantile(xs, 0.5)} ms, p90 ${quantile(xs, 0.9)} ms (n=${xs.length})` : 'no samples';

export async function realNodeLines(): Promise<string[]> {
  const missing = missingRealNodePrerequisites();
  if (missing.length) return ['## Real node', `NOT RUN: the real node needs ${missing.join('; ')}`];
  const lines: string[] = ['## Real node (kubelet v1.34.4 + containerd; one JuiceFS volume, SQLite + file storage)'];
  const t0 = Date.now();
  const w = await startWorld({ nodePlugin: true });
  lines.push(`stack up (control plane, webhook, controller, node, node plugin) in ${Date.now() - t0} ms`);
  try {
    await makeNamespace(w, SIDECAR_NS, 'sidecar', ['data']);
    await makeNamespace(w, MOUNT_POD_NS, 'mount-pod', ['data']);
    const sidecar: number[] = [];
    const mountPod: number[] = [];
    // How many Mount Pod mode starts found a Mount Pod of the volume still there (not created afresh).
    let reused = 0;
    // One warm-up of each (first image use, first Mount Pod), not counted.
    for (const [ns, name] of [
      [SIDECAR_NS, 'warm'],
      [MOUNT_POD_NS, 'warm'],
    ]) {
      await startupMs(w, ns, name);
      await deleteAndWait(w, ns, name);
    }
    for (let i = 0; i < PODS; i++) {
      sidecar.push(await startupMs(w, SIDECAR_NS, `app-${i}`));
      await deleteAndWait(w, SIDECAR_NS, `app-${i}`);
      const existing = await w.core.listNamespacedPod({
        namespace: SYSTEM_NAMESPACE,
        labelSelector: `app.kubernetes.io/name=${MOUNT_POD_APP_VALUE}`,
      });
      if (existing.items.some((p) => !p.metadata?.deletionTimestamp)) reused++;
      mountPod.push(await startupMs(w, MOUNT_POD_NS, `app-${i}`));
      await deleteAndWait(w, MOUNT_POD_NS, `app-${i}`);
    }
    lines.push('');
    lines.push(`### Pod CREATE → app Running, one JuiceFS volume (${PODS} each, interleaved, one at a time)`);
    lines.push(`sidecar mode:   ${fmt(sidecar)}`);
    lines.push(`Mount Pod mode: ${fmt(mountPod)} (${reused} of ${PODS} found the previous Mount Pod still there)`);

    const observed: number[] = [];
    const stamps: number[] = [];
    for (let i = 0; i < JOBS; i++) {
      const run = await runJob(w, SIDECAR_NS, `job-${i}`, 'data');
      const side = run.pod.status?.initContainerStatuses?.find((s) => s.name.startsWith('jfs-mount'));
      if (run.pod.status?.phase !== 'Succeeded' || side?.state?.terminated?.exitCode !== 0)
        lines.push(`job-${i}: phase ${run.pod.status?.phase}, sidecar ${JSON.stringify(side?.state?.terminated)}`);
      observed.push(run.observedDelayMs);
      stamps.push(run.stampDelayS);
    }
    lines.push('');
    lines.push(`### Job completion delay after the app exits (native sidecar, ${JOBS} Jobs; target ≤ 3 s)`);
    lines.push(`observed (polling 100 ms, app terminated → pod Succeeded): ${fmt(observed)}`);
    lines.push(`kubelet stamps (1 s resolution, last container finishedAt − app finishedAt): ${stamps.join(', ')} s`);

    lines.push('');
    lines.push('### FUSE client killed (kill -9): until `ls` of the app mount works again');
    lines.push(
      "`server`: only juicefs's FUSE server process (its supervisor keeps the FUSE fd); `all`: the supervisor too",
    );
    const CAP = Number(process.env.BENCH_RN_RECOVERY_CAP_MS ?? '60000');
    const said = (r: { ms?: number; lastError: string }) =>
      r.ms === undefined ? `never (cap ${CAP / 1000} s; the app sees: ${r.lastError})` : `${r.ms} ms`;
    for (const which of ['server', 'all'] as const) {
      const name = `crash-${which}`;
      await startupMs(w, SIDECAR_NS, name);
      const sc = (await w.core.readNamespacedPod({ name, namespace: SIDECAR_NS })).spec!.initContainers!.find((c) =>
        c.name.startsWith('jfs-mount'),
      )!.name;
      await killClient(w, SIDECAR_NS, name, sc, which);
      lines.push(`sidecar mode, ${which}:   ${said(await timeToVolumeBack(w, SIDECAR_NS, name, '/data', CAP))}`);
      await deleteAndWait(w, SIDECAR_NS, name);
    }
    for (const which of ['server', 'all'] as const) {
      const name = `crash-${which}`;
      await startupMs(w, MOUNT_POD_NS, name);
      const mp = await mountPodOf(w);
      // The Mount Pod's juicefs supervisor is its PID 1, which a kill from inside the container cannot end.
      if (which === 'server')
        await killClient(w, SYSTEM_NAMESPACE, mp.metadata!.name!, mp.spec!.containers[0].name, which);
      else
        lines.push(`(host kill -9 of the Mount Pod's juicefs pids ${killClientFromHost(mp.metadata!.uid!).join(' ')})`);
      lines.push(`Mount Pod mode, ${which}: ${said(await timeToVolumeBack(w, MOUNT_POD_NS, name, '/data', CAP))}`);
      await deleteAndWait(w, MOUNT_POD_NS, name);
    }
  } finally {
    await w.stop();
  }
  return lines;
}
