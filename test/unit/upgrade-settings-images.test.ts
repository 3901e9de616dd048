// `target.fromSettings` for Mount Pods (src/upgrade/settings-images.ts): the image a Mount Pod's volume settings name
// now, found from its volume-id label; the same rule as the node service's publish (computeMountSettings), so a
// rollout's target is the image a new publish would get.
import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import t from 'tap';
import { parseGlobalConfig } from '../../src/config/schema.js';
import { DEFAULT_CE_MOUNT_IMAGE } from '../../src/contract/keys.js';
import { computeMountSettings } from '../../src/mount/settings.js';
import { planMountPod } from '../../src/node/mount-pod-plan.js';
import { mountPodSettingsImages, pvOfMountPod, type SettingsSource } from '../../src/upgrade/settings-images.js';

const OLD = 'juicedata/mount:ce-v1.2.0';
const NEW = 'juicedata/mount:ce-v1.3.1';
const SECRET = { name: 's', keys: ['metaurl', 'name'], envNames: [], formatFlags: [] };

function pv(name: string, handle: string, attributes: Record<string, string> = {}, claim?: string): V1PersistentVolume {
  return {
    metadata: { name, uid: `uid-${name}` },
    spec: {
      csi: { driver: 'csi.juicefs.com', volumeHandle: handle, volumeAttributes: attributes },
      ...(claim && { claimRef: { namespace: 'apps', name: claim, uid: `uid-pvc-${claim}` } }),
    },
  };
}
const pvc = (name: string, storageClassName = 'juicefs-sc'): V1PersistentVolumeClaim => ({
  metadata: { name, namespace: 'apps', uid: `uid-pvc-${name}` },
  spec: { volumeName: `pv-${name}`, storageClassName },
});

/** The Mount Pod the node service plans for `volume` (its labels are what the controller reads back). */
function mountPod(handle: string, attributes: Record<string, string> = {}): V1Pod {
  return planMountPod({
    nodeName: 'node-a',
    namespace: 'juicefs-system',
    volume: { pvName: handle, subdir: handle, readOnly: false, attributes, mountOptions: [], secret: SECRET },
    options: { config: parseGlobalConfig('') },
  }).pod;
}

const source = (
  pvs: V1PersistentVolume[],
  pvcs: V1PersistentVolumeClaim[],
  configYaml = '',
  defaultMountImage?: string,
): SettingsSource => ({
  pvs: () => pvs,
  getPvc: (ns, name) => pvcs.find((c) => c.metadata?.namespace === ns && c.metadata.name === name),
  config: parseGlobalConfig(configYaml),
  defaultMountImage,
});

t.test('the Mount Pod is matched to its PV by volume handle, not PV name', async (t) => {
  const pod = mountPod('handle-1');
  const pvs = [pv('pv-a', 'handle-1'), pv('pv-b', 'handle-2')];
  t.equal((pvOfMountPod(pod, pvs) as V1PersistentVolume).metadata?.name, 'pv-a');
  t.match(pvOfMountPod(pod, [pv('pv-b', 'handle-2')]), /no PersistentVolume .* volume handle of handle-1/);
  t.match(pvOfMountPod(pod, [pv('pv-a', 'handle-1'), pv('pv-c', 'handle-1')]), /pv-a, pv-c share its volume handle/);
  const other = pv('pv-x', 'handle-1');
  other.spec!.csi!.driver = 'other.csi.example.com';
  t.match(pvOfMountPod(pod, [other]), /no PersistentVolume/, "another driver's PV is not ours");
  t.match(pvOfMountPod({ metadata: {} }, pvs), /no volume-id label/);
});

t.test(
  'the image: default, the PV attribute, the ConfigMap entry for its claim — as a publish would choose',
  async (t) => {
    const pod = mountPod('pv-data');
    const images = (s: SettingsSource) => mountPodSettingsImages(pod, s);
    t.same(images(source([pv('pv-data', 'pv-data')], [])), { images: { 'jfs-mount': DEFAULT_CE_MOUNT_IMAGE } });
    t.same(images(source([pv('pv-data', 'pv-data')], [], '', 'registry.local/mount:7')), {
      images: { 'jfs-mount': 'registry.local/mount:7' },
    });
    const pinned = [pv('pv-data', 'pv-data', { 'juicefs/mount-image': OLD }, 'data')];
    t.same(images(source(pinned, [pvc('data')])), { images: { 'jfs-mount': OLD } }, 'the PV attribute');
    const entry = `mountPodPatch:\n  - pvcSelector: {matchStorageClassName: juicefs-old}\n    ceMountImage: ${NEW}\n`;
    t.same(images(source(pinned, [pvc('data', 'juicefs-old')], entry)), { images: { 'jfs-mount': NEW } }, 'the entry');
    t.same(images(source(pinned, [pvc('data', 'juicefs-sc')], entry)), { images: { 'jfs-mount': OLD } }, 'not matched');
    // A claimRef whose PVC is another object (deleted and made again) selects nothing, as at publish.
    const stale = pvc('data', 'juicefs-old');
    stale.metadata!.uid = 'uid-other';
    t.same(images(source(pinned, [stale], entry)), { images: { 'jfs-mount': OLD } }, 'a stale claimRef');

    // The same answer as the node service's own settings for that volume and claim.
    const published = computeMountSettings(
      {
        pvName: 'pv-data',
        subdir: 'pv-data',
        readOnly: false,
        attributes: { 'juicefs/mount-image': OLD },
        mountOptions: [],
        secret: SECRET,
      },
      { name: 'data', namespace: 'apps', labels: {}, annotations: {}, storageClassName: 'juicefs-old' },
      { config: parseGlobalConfig(entry) },
      [],
    );
    t.equal(published.image, NEW);
  },
);

t.test('what cannot be told is said, never guessed', async (t) => {
  const pod = mountPod('pv-data');
  const byNode = `mountPodPatch:\n  - nodeSelector: {matchLabels: {zone: a}}\n    ceMountImage: ${NEW}\n`;
  t.match(mountPodSettingsImages(pod, source([pv('pv-data', 'pv-data')], [], byNode)), {
    unknown: /nodeSelector names an image/,
  });
  t.match(mountPodSettingsImages(pod, source([], [])), { unknown: /no PersistentVolume/ });
  const bad = pv('pv-data', 'pv-data', { 'juicefs/mount-cpu-limit': 'lots' });
  t.match(mountPodSettingsImages(pod, source([bad], [])), { unknown: /do not resolve: .*mount-cpu-limit/ });
});
