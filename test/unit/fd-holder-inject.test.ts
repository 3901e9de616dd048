// What the injector adds for the FUSE fd holder (src/mount/fd-holder.ts): with native placement a holder container
// first, its memory volume, and per client container JFS_SUPER_COMM and _FUSE_STATE_PATH on it; `juicefs/fd-holder:
// "false"` on the PV turns it off; classic placement never gets one; the holder runs the jfs-sidecar image.
import type { V1Pod } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { configFromObjects } from '../../src/config/options.js';
import { ATTR, FD_HOLDER_NAME } from '../../src/contract/keys.js';
import { injectObjects, parseManifests } from '../../src/offline/inject-manifests.js';
import { TESTDATA } from '../golden/golden.js';

const FIXTURE = path.join(TESTDATA, 'two-juicefs-and-other.yaml');

function inject(
  edit: (objects: ReturnType<typeof parseManifests>) => void,
  native = true,
  projectImage = 'jfs-sidecar:t',
) {
  const objects = parseManifests(readFileSync(FIXTURE, 'utf8'), FIXTURE);
  edit(objects);
  const config = { ...configFromObjects(objects), enableNativeSidecar: native };
  const results = injectObjects(objects, { mode: 'sidecar', config, projectImage });
  return results.find((r) => r.object.kind === 'Pod')!.object as V1Pod;
}
const env = (pod: V1Pod, name: string) =>
  Object.fromEntries(
    [...(pod.spec!.initContainers ?? []), ...pod.spec!.containers]
      .find((c) => c.name === name)!
      .env!.map((e) => [e.name, e.value]),
  );

t.test('native placement: one holder first, one folder per client container', async (t) => {
  const pod = inject(() => undefined);
  const inits = pod.spec!.initContainers!;
  t.equal(inits[0].name, FD_HOLDER_NAME);
  t.equal(inits[0].image, 'jfs-sidecar:t', 'the jfs-sidecar image');
  t.equal(inits[0].restartPolicy, 'Always', 'a native sidecar');
  t.same(inits[0].args, ['fd-holder', 'run', '--dir=/jfs-fd', '--name=jfs-mount', '--name=jfs-mount-1']);
  t.equal(inits[0].securityContext?.privileged, undefined, 'unprivileged');
  t.equal(inits[0].securityContext?.readOnlyRootFilesystem, true);
  t.same(pod.spec!.volumes!.find((v) => v.name === 'jfs-fd')?.emptyDir, { medium: 'Memory', sizeLimit: '16Mi' });
  for (const c of ['jfs-mount', 'jfs-mount-1']) {
    t.equal(env(pod, c).JFS_SUPER_COMM, `/jfs-fd/${c}/fuse.sock`, `${c}: its own socket`);
    t.equal(env(pod, c)._FUSE_STATE_PATH, `/jfs-fd/${c}/state.json`, `${c}: its state file`);
  }
  const app = pod.spec!.containers.find((c) => c.name === 'app') ?? pod.spec!.containers[0];
  t.notOk(
    (app.volumeMounts ?? []).some((m) => m.name === 'jfs-fd'),
    'no app container mounts the holder volume',
  );
});

t.test('juicefs/fd-holder: "false" on a PV: that client hands nothing over', async (t) => {
  const pod = inject((objects) => {
    const pv = objects.find((o) => o.kind === 'PersistentVolume') as unknown as {
      spec: { csi: { volumeAttributes?: Record<string, string> } };
    };
    pv.spec.csi.volumeAttributes = { ...pv.spec.csi.volumeAttributes, [ATTR.fdHolder]: 'false' };
  });
  const clients = (pod.spec!.initContainers ?? []).filter((c) => c.name.startsWith('jfs-mount'));
  const held = clients.filter((c) => (c.env ?? []).some((e) => e.name === 'JFS_SUPER_COMM')).map((c) => c.name);
  t.equal(held.length, 1, `one of the two volumes keeps its holder (${held.join(', ')})`);
  const holder = pod.spec!.initContainers!.find((c) => c.name === FD_HOLDER_NAME)!;
  t.same(
    holder.args!.filter((a) => a.startsWith('--name=')),
    [`--name=${held[0]}`],
  );
});

t.test('classic placement: no holder (it would never exit, and nothing orders it against the client)', async (t) => {
  const pod = inject(() => undefined, false);
  const all = [...(pod.spec!.initContainers ?? []), ...pod.spec!.containers];
  t.notOk(all.some((c) => c.name === FD_HOLDER_NAME));
  t.notOk(all.some((c) => (c.env ?? []).some((e) => e.name === 'JFS_SUPER_COMM')));
});

t.test('no jfs-sidecar image given: no holder', async (t) => {
  const objects = parseManifests(readFileSync(FIXTURE, 'utf8'), FIXTURE);
  const pod = injectObjects(objects, { mode: 'sidecar', config: configFromObjects(objects) }).find(
    (r) => r.object.kind === 'Pod',
  )!.object as V1Pod;
  t.notOk((pod.spec!.initContainers ?? []).some((c) => c.name === FD_HOLDER_NAME));
});
