// The Mount Pod upgrades' pure pieces (ADR 0019): a held Mount Pod stops by handing over (no unmount, unless the node
// service ends the mount), an unheld one keeps the unmounting preStop; the copy pod of a binary upgrade; the version
// read back from the mount's .config.
import t from 'tap';
import { DEFAULT_GLOBAL_CONFIG } from '../../src/config/schema.js';
import { STOP_CLIENT_SCRIPT, UNMOUNT_SCRIPT } from '../../src/mount/containers.js';
import type { VolumeSource } from '../../src/mount/volume.js';
import { MOUNT_POINT_ENV, POD_UID_ENV } from '../../src/contract/keys.js';
import { FD_UNMOUNT_MARKER, HANDOVER_PRESTOP_SCRIPT, planMountPod } from '../../src/node/mount-pod-plan.js';
import { binaryCopyPod, BINARY_INSTALL_SCRIPT, versionOfConfigLine } from '../../src/upgrade/mount-pod.js';

const volume: VolumeSource = {
  pvName: 'pvc-up',
  subdir: 'pvc-up',
  readOnly: false,
  attributes: {},
  mountOptions: [],
  secret: { name: 'juicefs-pvc-up-secret', keys: ['metaurl', 'name'], envNames: [], formatFlags: [] },
};
const plan = (attributes: Record<string, string> = {}) =>
  planMountPod({
    nodeName: 'node-a',
    namespace: 'juicefs-system',
    volume: { ...volume, attributes },
    options: { config: DEFAULT_GLOBAL_CONFIG },
  });
const preStop = (attributes: Record<string, string> = {}) =>
  plan(attributes).pod.spec!.containers[0].lifecycle?.preStop?.exec?.command;

t.test('a held Mount Pod hands over in its preStop; an unheld one unmounts', async (t) => {
  t.same(preStop(), ['sh', '-c', HANDOVER_PRESTOP_SCRIPT], 'default (held): the handover');
  // The unmount only in the branch the node service asks for (FD_UNMOUNT_MARKER names this pod's UID: it deletes
  // the Mount Pod with no reference left), so a re-started mount process cannot re-create a deleted --subdir.
  const [asked, handover] = HANDOVER_PRESTOP_SCRIPT.split('\nfi\n');
  t.ok(
    asked.startsWith(
      `if [ -n "$${POD_UID_ENV}" ] && [ "$(cat /tmp/${FD_UNMOUNT_MARKER} 2>/dev/null)" = "$${POD_UID_ENV}" ]; then\n`,
    ),
    "the unmount branch is taken only when the marker holds this pod's UID",
  );
  t.ok(
    asked.includes(`umount -l "$${MOUNT_POINT_ENV}"`) &&
      asked.includes(STOP_CLIENT_SCRIPT) &&
      /kill -TERM 1 2>\/dev\/null\nexit 0$/.test(asked),
    'asked: unmount, stop the client, end',
  );
  // A publish may have made the folder for the next Mount Pod in this fd folder, whose client does not make it.
  t.notMatch(asked, /rmdir/, 'the mount point folder is left to the node service');
  t.notMatch(handover, /umount/, 'the handover never unmounts');
  const env = plan().pod.spec!.containers[0].env ?? [];
  t.same(
    env.find((e) => e.name === POD_UID_ENV),
    { name: POD_UID_ENV, valueFrom: { fieldRef: { fieldPath: 'metadata.uid' } } },
    'the pod knows its UID',
  );
  t.notOk(
    (plan({ 'juicefs/fd-holder': 'false' }).pod.spec!.containers[0].env ?? []).some((e) => e.name === POD_UID_ENV),
    'an unheld Mount Pod does not need it',
  );
  t.match(handover, /kill -HUP/, 'SIGHUP: flush, save the handles, exit');
  t.match(HANDOVER_PRESTOP_SCRIPT, /kill -TERM 1/, 'then the supervisor, so it does not restart the mount process');
  t.notMatch(HANDOVER_PRESTOP_SCRIPT, /\$\([A-Za-z_][A-Za-z0-9_]*\)/, 'no $(NAME) for kubelet to expand');
  t.same(preStop({ 'juicefs/fd-holder': 'false' }), ['sh', '-c', UNMOUNT_SCRIPT], 'no holder: the unmount as before');
  t.equal(plan().pod.spec!.restartPolicy, 'Always', 'a crashed client is restarted in the same pod (ADR 0019)');
});

t.test('the copy pod of a binary upgrade: the target image, on the node, into the fd folder only', async (t) => {
  const mountPod = plan().pod;
  mountPod.metadata!.uid = 'u-1';
  const p = binaryCopyPod(mountPod, '/var/run/jfs-sidecar/fd/pvc-up-x', 'juicedata/mount:ce-v1.3.1');
  t.equal(p.spec!.nodeName, 'node-a');
  t.equal(p.spec!.restartPolicy, 'Never');
  t.equal(p.spec!.containers[0].image, 'juicedata/mount:ce-v1.3.1');
  t.same(p.spec!.volumes, [{ name: 'out', hostPath: { path: '/var/run/jfs-sidecar/fd/pvc-up-x', type: 'Directory' } }]);
  t.match(p.spec!.containers[0].command![2], /^\/usr\/local\/bin\/juicefs version && /, 'the image is run first');
  t.notOk(p.spec!.containers[0].securityContext?.privileged, 'not privileged');
  t.equal(p.metadata!.labels!['disable.sidecar.juicefs.com/inject'], 'true');
  t.match(
    BINARY_INSTALL_SCRIPT,
    /mv -f \/usr\/local\/bin\/juicefs\.new \/usr\/local\/bin\/juicefs/,
    'the binary is replaced by rename (a running executable cannot be written)',
  );
});

t.test("the client's version from its .config", async (t) => {
  t.equal(versionOfConfigLine(' "Version": "1.3.1+2025-12-16.abc",\n'), '1.3.1+2025-12-16.abc');
  t.equal(versionOfConfigLine('nothing'), undefined);
});
