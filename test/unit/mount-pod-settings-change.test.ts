// Which settings changes a running Mount Pod can take without a new mount (src/upgrade/settings-change.ts): the
// containers compared are the planner's own for the settings before and after.
import t from 'tap';
import { DEFAULT_GLOBAL_CONFIG } from '../../src/config/schema.js';
import type { VolumeSource } from '../../src/mount/volume.js';
import { planMountPod } from '../../src/node/mount-pod-plan.js';
import { classifyMountPodChange } from '../../src/upgrade/settings-change.js';

const volume: VolumeSource = {
  pvName: 'pvc-s',
  subdir: 'pvc-s',
  readOnly: false,
  attributes: {},
  mountOptions: [],
  secret: { name: 'juicefs-pvc-s-secret', keys: ['metaurl', 'name'], envNames: [], formatFlags: [] },
};
const client = (v: Partial<VolumeSource>) =>
  planMountPod({
    nodeName: 'node-a',
    namespace: 'juicefs-system',
    volume: { ...volume, ...v },
    options: { config: DEFAULT_GLOBAL_CONFIG },
  }).pod.spec!.containers[0];
const base = client({});

t.test('an image change is smooth (binary or recreate upgrade)', async (t) => {
  const r = classifyMountPodChange(
    base,
    client({ attributes: { 'juicefs/mount-image': 'juicedata/mount:ce-v1.3.2' } }),
  );
  t.equal(r.smooth, true);
  t.same(r.image?.to, 'juicedata/mount:ce-v1.3.2');
  t.same(classifyMountPodChange(base, client({})), { smooth: true, image: undefined }, 'nothing changed');
});

t.test('mount options: kernel-fixed ones and process ones are refused, each with its reason', async (t) => {
  const ro = classifyMountPodChange(base, client({ readOnly: true }));
  t.equal(ro.smooth, false);
  if (!ro.smooth) t.match(ro.reasons.join('\n'), /--read-only were fixed by the kernel/);
  const cache = classifyMountPodChange(base, client({ mountOptions: ['cache-size=2048'] }));
  t.equal(cache.smooth, false);
  if (!cache.smooth) t.match(cache.reasons.join('\n'), /--cache-size: the client's command line/);
  const sub = classifyMountPodChange(base, client({ subdir: 'other' }));
  if (!sub.smooth) t.match(sub.reasons.join('\n'), /--subdir were fixed by the kernel/);
  else t.fail('a subdir change cannot be smooth');
});

t.test('env and resources are refused with their reasons', async (t) => {
  const res = classifyMountPodChange(base, client({ attributes: { 'juicefs/mount-memory-limit': '2Gi' } }));
  t.equal(res.smooth, false);
  if (!res.smooth) t.match(res.reasons.join('\n'), /resources: changed through the pod \/resize/);
  const env = classifyMountPodChange(base, { ...base, env: [...(base.env ?? []), { name: 'TZ', value: 'UTC' }] });
  t.equal(env.smooth, false);
  if (!env.smooth) t.match(env.reasons.join('\n'), /env TZ/);
});
