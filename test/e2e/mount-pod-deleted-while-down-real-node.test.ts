// A Mount Pod whose last reference goes while its client is down or starting
// again (its container was SIGKILLed, the kubelet restarts it): the reliability
// run's crash, then unpublishes, can delete it in that window. The kubelet runs
// no preStop for a container that is not running, so nothing in the pod
// unmounts; after the Mount Pod is gone, no mount of it may be left on the node.
import type { V1Pod } from '@kubernetes/client-node';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { MOUNT_ROOT } from '../../src/contract/keys.js';
import { readMounts } from '../../src/juicefs/mounts.js';
import { eventually } from '../env/harness.js';
import { SMALL_MOUNT_POD, startRealNodeHarness } from '../env/real-node-harness.js';

t.setTimeout(10 * 60 * 1000);

t.test('a Mount Pod deleted while its client is down leaves no mount', async (t) => {
  const h = await startRealNodeHarness(t, { volumeName: `down-${process.pid}` });
  const { vol, dir, call } = h;
  const ofVolume = () => readMounts().filter((m) => m.source === `JuiceFS:${vol.name}`);
  const publish = (pv: string, target: string) =>
    call('NodePublishVolume', {
      volume_id: pv,
      target_path: target,
      volume_capability: { mount: { mount_flags: [] }, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } },
      secrets: vol.secrets,
      volume_context: { subPath: pv, ...SMALL_MOUNT_POD },
    });
  const unpublish = (pv: string, target: string) => call('NodeUnpublishVolume', { volume_id: pv, target_path: target });
  const podOf = async (pv: string): Promise<V1Pod | undefined> =>
    (await h.mountPods()).find((p) => p.metadata?.name?.includes(`-${pv}-`));

  // Unpublished at once after the SIGKILL (client dead), and 1 s after it (the kubelet restarting it).
  for (const [pv, waitMs] of [
    ['pv-d1', 0],
    ['pv-d2', 1000],
  ] as const) {
    const target = path.join(dir, 'targets', pv, 'mount');
    mkdirSync(path.dirname(target), { recursive: true });
    await publish(pv, target);
    const pod = await eventually(
      async () => {
        const p = await podOf(pv);
        return p?.status?.containerStatuses?.[0]?.state?.running ? p : undefined;
      },
      30_000,
      `${pv} Mount Pod running`,
    );
    h.killContainer(pod);
    if (waitMs) await new Promise((r) => setTimeout(r, waitMs));
    await unpublish(pv, target);
    await eventually(async () => (await podOf(pv)) === undefined, 90_000, `${pv} Mount Pod gone`);
    const left = () => ofVolume().filter((m) => m.mountPoint.startsWith(`${MOUNT_ROOT}/${pv}-`));
    // The node service's clean-up after the pod is gone is asynchronous: give it a moment.
    await eventually(async () => left().length === 0, 15_000, 'no mount').catch(() => undefined);
    t.same(
      left().map((m) => m.mountPoint),
      [],
      `${pv} (unpublished ${waitMs} ms after the SIGKILL): no Mount Pod mount left once the pod is gone`,
    );
  }
});
