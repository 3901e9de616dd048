// The Mount Pod plan's part of the node service's FUSE fd holder (ADR 0015): a
// folder per Mount Pod at its /tmp, the client's JFS_SUPER_COMM and state path,
// and `juicefs/fd-holder: "false"` taking all of it away.
import t from 'tap';
import { DEFAULT_GLOBAL_CONFIG } from '../../src/config/schema.js';
import { AttributeError, parseVolumeAttributes } from '../../src/contract/attributes.js';
import type { VolumeSource } from '../../src/mount/volume.js';
import { FD_DIR_IN_POD, FD_VOLUME_NAME, fdDirOf, planMountPod } from '../../src/node/mount-pod-plan.js';

const volume: VolumeSource = {
  pvName: 'pvc-fd',
  subdir: 'pvc-fd',
  readOnly: false,
  attributes: {},
  mountOptions: [],
  secret: { name: 'juicefs-pvc-fd-secret', keys: ['metaurl', 'name'], envNames: [], formatFlags: [] },
};
const options = { config: DEFAULT_GLOBAL_CONFIG };
const plan = (attributes: Record<string, string> = {}) =>
  planMountPod({ nodeName: 'node-a', namespace: 'juicefs-system', volume: { ...volume, attributes }, options });

const HELD = { 'juicefs/fd-holder': 'true' };

t.test('each Mount Pod has its fd-holder folder at /tmp, named as its mount point', async (t) => {
  const p = plan(HELD);
  t.equal(p.fdDir, `/var/run/jfs-sidecar/fd/pvc-fd-${p.hash}`);
  t.equal(fdDirOf(p.pod), p.fdDir, 'the node service reads the folder back from the pod');
  t.equal(p.mountPoint.split('/').pop(), p.fdDir!.split('/').pop(), 'one name for both host folders');
  const c = p.pod.spec!.containers[0];
  t.same(
    c.volumeMounts?.find((m) => m.name === FD_VOLUME_NAME),
    { name: FD_VOLUME_NAME, mountPath: FD_DIR_IN_POD },
    "at /tmp: juicefs's own fd socket and state file go there",
  );
  const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
  t.equal(env.JFS_SUPER_COMM, '/tmp/fd-holder.sock');
  t.equal(env._FUSE_STATE_PATH, '/tmp/state1.json', 'the state file of the supervisor, PID 1');
  t.equal(env.JFS_NO_UMOUNT, '0', 'a client that gets no fd unmounts a dead mount point first');
});

t.test('a Secret envs entry cannot point the client at another holder', async (t) => {
  const p = planMountPod({
    nodeName: 'node-a',
    namespace: 'juicefs-system',
    volume: { ...volume, attributes: HELD },
    options: {
      config: { ...DEFAULT_GLOBAL_CONFIG, mountPodPatch: [{ env: [{ name: 'JFS_SUPER_COMM', value: '/x' }] }] },
    },
  });
  const values = p.pod.spec!.containers[0].env!.filter((e) => e.name === 'JFS_SUPER_COMM').map((e) => e.value);
  t.same(values, ['/tmp/fd-holder.sock'], "the node's own value, once");
});

t.test(
  'juicefs/fd-holder "false": no folder, no JFS_SUPER_COMM; unset: a holder (the default); one hash',
  async (t) => {
    t.equal(plan().fdDir, plan(HELD).fdDir, 'unset: a holder for a Mount Pod, as with "true"');
    const off = plan({ 'juicefs/fd-holder': 'false' });
    t.equal(off.fdDir, undefined);
    t.equal(fdDirOf(off.pod), undefined);
    t.notOk(
      off.pod.spec!.containers[0].env?.some((e) => e.name.startsWith('JFS_SUPER') || e.name === '_FUSE_STATE_PATH'),
    );
    t.notOk(off.pod.spec!.volumes?.some((v) => v.name === FD_VOLUME_NAME));
    t.equal(off.hash, plan(HELD).hash, 'not a mount setting: an existing Mount Pod is reused either way');
    t.ok(plan(HELD).fdDir);
    t.throws(() => parseVolumeAttributes({ 'juicefs/fd-holder': 'no' }), AttributeError);
  },
);
