// A sidecar in-place rollout on the real node (issue 13, "Must show", the rollout item): ten injected pods
// on the previous mount image, one JuiceFSUpgrade to the current one with maxUnavailable 2 and partition 3,
// reconciled by the real controller (--upgrades, its shipped RBAC, the after-admission policy of ADR 0006
// naming it the upgrader), the real kubelet restarting each native sidecar in place. Sampled all along:
// never more than two of the ten pods unready, the status true to the pods at every sample, the three pods
// beyond the partition untouched; pause holds it, resume finishes it. Then an image that does not start
// (busybox: no juicefs) fails on its canary: the rollout stops and the pods keep their clients.
//
// This checks the rollout's mechanics. Without the fd holder (branch wt-fdside) the apps' open files and
// their view of the mount do not survive the swap; what the app sees afterwards is printed, not asserted.
import {
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
  type V1Pod,
} from '@kubernetes/client-node';
import t from 'tap';
import { ATTR } from '../../src/contract/keys.js';
import { applyObjects, readManifest } from '../../src/local/components.js';
import { MOUNT_IMAGE, PREVIOUS_MOUNT_IMAGE, BUSYBOX_IMAGES } from '../../src/local/images.js';
import { normalizeImage } from '../../src/upgrade/clients.js';
import {
  UPGRADE_GROUP,
  UPGRADE_PLURAL,
  UPGRADE_READY_CONDITION,
  UPGRADE_VERSION,
  type JuiceFSUpgrade,
  type UpgradeSpec,
} from '../../src/upgrade/types.js';
import {
  appPod,
  createPod,
  exec,
  makeNamespace,
  podWhen,
  quantile,
  setGlobalConfig,
  startSuiteWorld,
} from '../env/real-node-world.js';
import { eventually } from '../env/harness.js';
import { setTimeout as sleep } from 'node:timers/promises';

t.setTimeout(20 * 60 * 1000);

const NS = 'rn-upgrade';
const OLD_SC = 'juicefs-sc-prev';
const PODS = Array.from({ length: 10 }, (_, i) => `app-${String(i).padStart(2, '0')}`);
const PARTITION = 3;
const MAX_UNAVAILABLE = 2;
/** In name order the last PARTITION pods stay on their client. */
const BEYOND = PODS.slice(PODS.length - PARTITION);
const CRD = { group: UPGRADE_GROUP, version: UPGRADE_VERSION, plural: UPGRADE_PLURAL };

const w = await startSuiteWorld(t, { nodePlugin: false, controllerArgs: ['--upgrades'] });
if (w) {
  const custom = w.kc.makeApiClient(CustomObjectsApi);
  const readUpgrade = async (name: string) => (await custom.getClusterCustomObject({ ...CRD, name })) as JuiceFSUpgrade;
  const createUpgrade = (name: string, spec: UpgradeSpec) =>
    custom.createClusterCustomObject({
      ...CRD,
      body: { apiVersion: `${UPGRADE_GROUP}/${UPGRADE_VERSION}`, kind: 'JuiceFSUpgrade', metadata: { name }, spec },
    });
  const patchSpec = (name: string, spec: Partial<UpgradeSpec>) =>
    custom.patchClusterCustomObject(
      { ...CRD, name, body: { spec } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  const listPods = async () => (await w.core.listNamespacedPod({ namespace: NS })).items;
  const client = (p: V1Pod) => p.status?.initContainerStatuses?.find((s) => s.name === 'jfs-mount');
  const isReady = (p: V1Pod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;

  // A failed setup must not end the process before the teardown stops the world.
  const setUp = async () => {
    // The CRD, the after-admission policy (its ConfigMap names the controller's ServiceAccount the upgrader),
    // a StorageClass whose clients start on the previous image, and the readiness gate on.
    await applyObjects(w.kc, [...readManifest('upgrade-crd.yaml'), ...readManifest('after-admission.yaml')]);
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
    await setGlobalConfig(w, (text) => text.replace(/upgradeReadinessGate: \w+/, 'upgradeReadinessGate: true'));
    await eventually(
      async () => (await custom.listClusterCustomObject(CRD)).items !== undefined,
      30_000,
      'the JuiceFSUpgrade API to be served',
    );
    await makeNamespace(w, NS, 'sidecar', ['data'], OLD_SC);
  };
  const ready = await setUp().then(
    () => true,
    (err: Error) => {
      t.fail(`setup: ${err.message}`);
      return false;
    },
  );
  if (ready) {
    // The pods as they were before any rollout (set by the first test).
    let before = new Map<string, V1Pod>();
    await t.test('ten injected pods start on the previous client; the controller opens their gate', async (t) => {
      const t0 = Date.now();
      await Promise.all(PODS.map((name) => createPod(w, appPod(NS, name, ['data']))));
      for (const name of PODS) await podWhen(w, NS, name, isReady, 240_000, `${name} Ready`, 500);
      t.comment(`10 pods CREATE → Ready in ${Date.now() - t0} ms`);
      const pods = await listPods();
      before = new Map(pods.map((p) => [p.metadata!.name!, p]));
      for (const p of pods) {
        t.equal(
          p.spec?.initContainers?.find((c) => c.name === 'jfs-mount')?.image,
          PREVIOUS_MOUNT_IMAGE,
          `${p.metadata?.name} on the previous image`,
        );
        t.ok(
          p.spec?.readinessGates?.some((g) => g.conditionType === UPGRADE_READY_CONDITION),
          `${p.metadata?.name} carries the upgrade gate from admission`,
        );
        t.match(
          p.status?.conditions?.find((c) => c.type === UPGRADE_READY_CONDITION),
          { status: 'True', reason: 'Admitted' },
          'set True by the controller',
        );
      }
    });

    await t.test('maxUnavailable 2, partition 3: sampled, paused, resumed, completed', async (t) => {
      const violations: string[] = [];
      let maxUnready = 0;
      let samples = 0;
      let sampling = true;
      let lastSucceeded = 0;
      const sampler = (async () => {
        while (sampling) {
          const [pods, u] = await Promise.all([listPods(), readUpgrade('to-current').catch(() => undefined)]);
          samples++;
          const unready = pods.filter((p) => !isReady(p)).map((p) => p.metadata!.name!);
          maxUnready = Math.max(maxUnready, unready.length);
          if (unready.length > MAX_UNAVAILABLE) violations.push(`unready at once: ${unready.join(', ')}`);
          const byName = new Map(pods.map((p) => [p.metadata!.name!, p]));
          for (const name of BEYOND) {
            const p = byName.get(name)!;
            const s = client(p);
            if (s?.imageID !== client(before.get(name)!)?.imageID || (s?.restartCount ?? 0) !== 0)
              violations.push(`${name} beyond the partition was touched`);
          }
          const st = u?.status;
          if (st?.pods) {
            if ((st.counts?.inProgress ?? 0) > MAX_UNAVAILABLE) violations.push(`inProgress ${st.counts?.inProgress}`);
            const succeeded = st.pods.filter((r) => r.phase === 'Succeeded');
            if (succeeded.length < lastSucceeded) violations.push('the succeeded count went down');
            lastSucceeded = succeeded.length;
            if (st.counts && st.counts.succeeded !== succeeded.length)
              violations.push(`counts.succeeded ${st.counts.succeeded} ≠ ${succeeded.length} records`);
            for (const r of st.pods) {
              if (BEYOND.includes(r.name)) violations.push(`${r.name} beyond the partition has a record`);
              const s = client(byName.get(r.name)!);
              // A record says Succeeded only when the pod shows it: the new image running, a new imageID, ready.
              if (
                r.phase === 'Succeeded' &&
                !(
                  s?.image === normalizeImage(MOUNT_IMAGE) &&
                  s.imageID !== r.containers[0].fromImageID &&
                  s.ready &&
                  s.started
                )
              )
                violations.push(`${r.name} Succeeded in the status but not on the pod`);
            }
          }
          await sleep(250);
        }
      })();
      try {
        await createUpgrade('to-current', {
          kind: 'sidecar',
          target: { image: MOUNT_IMAGE },
          selector: { namespaces: [NS] },
          strategy: { maxUnavailable: MAX_UNAVAILABLE, partition: PARTITION, podTimeoutSeconds: 180 },
        });
        const first = await eventually(
          async () => {
            const u = await readUpgrade('to-current');
            return (u.status?.counts?.succeeded ?? 0) >= 2 ? u : false;
          },
          240_000,
          'two pods upgraded',
        );
        t.match(first.status?.counts, { selected: 10, inScope: 7, partitioned: 3 }, 'the cut: 7 in scope, 3 beyond');

        // Pause: what is under way finishes, nothing new starts.
        await patchSpec('to-current', { paused: true });
        const held = await eventually(
          async () => {
            const u = await readUpgrade('to-current');
            return u.status?.phase === 'Paused' && u.status.counts?.inProgress === 0 ? u : false;
          },
          240_000,
          'the pause to settle',
        );
        const heldRecords = held.status!.pods!.length;
        await sleep(6000);
        const still = await readUpgrade('to-current');
        t.equal(still.status?.phase, 'Paused', 'still paused');
        t.equal(still.status?.pods?.length, heldRecords, 'no pod started while paused');
        t.ok(heldRecords < 7, `paused part-way (${heldRecords} of 7 pods touched)`);

        await patchSpec('to-current', { paused: false });
        const done = await eventually(
          async () => {
            const u = await readUpgrade('to-current');
            if (u.status?.phase === 'Failed') throw new Error(`the rollout failed: ${u.status.message}`);
            return u.status?.phase === 'Completed' ? u : false;
          },
          300_000,
          'the rollout to complete',
        );
        t.match(
          done.status?.counts,
          { succeeded: 7, failed: 0, partitioned: 3, pending: 0, inProgress: 0 },
          'the counts at the end',
        );
        t.match(
          done.status?.conditions?.find((c) => c.type === 'Completed'),
          { status: 'True' },
        );
        const times = done.status!.pods!.map((r) => Date.parse(r.finishedAt!) - Date.parse(r.startedAt!));
        t.comment(
          `upgrade time per pod (startedAt → finishedAt, 7 pods): median ${quantile(times, 0.5)} ms, p99 ${quantile(times, 0.99)} ms, max ${Math.max(...times)} ms`,
        );
      } finally {
        sampling = false;
        await sampler;
      }
      t.same(violations, [], `no violation in ${samples} samples`);
      t.ok(maxUnready <= MAX_UNAVAILABLE, `at most ${MAX_UNAVAILABLE} pods unready at once (max seen ${maxUnready})`);
      t.ok(maxUnready >= 1, 'the gate did drain pods during their swap');

      const after = await listPods();
      for (const p of after) {
        const name = p.metadata!.name!;
        const old = before.get(name)!;
        t.equal(p.metadata?.uid, old.metadata?.uid, `${name} is the same pod (in place, not recreated)`);
        t.equal(
          p.status?.containerStatuses?.find((s) => s.name === 'app')?.restartCount,
          0,
          `${name}: the app container did not restart`,
        );
        const s = client(p)!;
        if (BEYOND.includes(name)) {
          t.equal(s.imageID, client(old)?.imageID, `${name} (beyond the partition) keeps its client`);
          t.equal(
            p.spec?.initContainers?.find((c) => c.name === 'jfs-mount')?.image,
            PREVIOUS_MOUNT_IMAGE,
            `${name} keeps the previous image`,
          );
        } else {
          t.equal(s.image, normalizeImage(MOUNT_IMAGE), `${name} runs the current image`);
          t.not(s.imageID, client(old)?.imageID, `${name}: a new imageID`);
          // The kubelet recomputes Ready a moment after the gate goes True (seen: the last pod lags the status).
          const again = await podWhen(w, NS, name, isReady, 20_000, `${name} Ready`, 250).then(
            () => true,
            () => false,
          );
          t.ok(again, `${name} Ready again (within 20 s of Completed)`);
          t.match(
            p.status?.conditions?.find((c) => c.type === UPGRADE_READY_CONDITION),
            { status: 'True', reason: 'Upgraded' },
            `${name}: the gate was set True again by the upgrader`,
          );
        }
      }
      // Without the fd holder: what the app of an upgraded pod sees of the volume now (reported, not asserted).
      const seen = await exec(w, NS, PODS[0], 'app', [
        'sh',
        '-c',
        'ls /data >/dev/null && echo ok; grep " /data " /proc/mounts',
      ]);
      t.comment(
        `app of ${PODS[0]} after the swap, no fd holder: ${JSON.stringify(seen.out.trim())} ${seen.err.trim()}`,
      );
    });

    await t.test('an image that does not start stops the rollout on its canary; the pods keep serving', async (t) => {
      const snapshot = new Map((await listPods()).map((p) => [p.metadata!.name!, client(p)?.imageID]));
      // busybox has no juicefs: the canary's `juicefs version` cannot start.
      await createUpgrade('broken', {
        kind: 'sidecar',
        target: { image: BUSYBOX_IMAGES[0] },
        selector: { namespaces: [NS] },
        strategy: { maxUnavailable: MAX_UNAVAILABLE },
      });
      const failed = await eventually(
        async () => {
          const u = await readUpgrade('broken');
          return u.status?.phase === 'Failed' ? u : false;
        },
        120_000,
        'the broken rollout to fail',
      );
      t.comment(`status: ${failed.status?.message}`);
      t.match(failed.status?.message, /does not start on .*canary/, 'the reason names the image and its canary');
      t.match(
        failed.status?.conditions?.find((c) => c.type === 'Failed'),
        { status: 'True', reason: 'PodFailed' },
      );
      const records = failed.status?.pods ?? [];
      t.ok(records.length <= MAX_UNAVAILABLE, `at most ${MAX_UNAVAILABLE} pods were started (${records.length})`);
      t.ok(
        records.every((r) => r.phase === 'Failed'),
        'they failed before their swap',
      );
      await sleep(3000);
      const again = await readUpgrade('broken');
      t.equal(again.status?.pods?.length, records.length, 'nothing new started after the failure');
      for (const p of await listPods()) {
        const name = p.metadata!.name!;
        t.equal(client(p)?.imageID, snapshot.get(name), `${name} keeps its client`);
        t.notOk(
          [...(p.spec?.initContainers ?? [])].some((c) => c.image === BUSYBOX_IMAGES[0] && c.name === 'jfs-mount'),
          `${name} was never patched`,
        );
        t.ok(isReady(p), `${name} still Ready`);
      }
      // A pod the rollouts never touched still serves its volume on its old client.
      const r = await exec(w, NS, BEYOND[0], 'app', [
        'sh',
        '-c',
        'echo still > /data/still.txt && cat /data/still.txt',
      ]);
      t.equal(r.out, 'still\n', `${BEYOND[0]} reads and writes its volume ${r.err}`);
      const noCanary = await eventually(
        async () =>
          (
            await w.core.listNamespacedPod({
              namespace: 'juicefs-system',
              labelSelector: 'app.kubernetes.io/name=jfs-upgrade-canary',
            })
          ).items.length === 0,
        30_000,
        'the canary pods to go',
      );
      t.ok(noCanary, 'no canary pod is left');
    });
  }
}
