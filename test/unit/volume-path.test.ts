// Where the controller finds a PV's directory: under the `subdir` mount option, and, for the PVs the reference
// driver provisioned (no record), by the reference's rules.
import type { V1PersistentVolume } from '@kubernetes/client-node';
import t from 'tap';
import { SubdirError } from '../../src/contract/subdir.js';
import {
  optionSubdir,
  pvDirectory,
  pvsSharing,
  referenceRecord,
  volumeDirectory,
} from '../../src/mount/volume-path.js';

const UID_NAME = 'pvc-0a1b2c3d-1111-2222-3333-444455556666';

function pv(
  name: string,
  attributes: Record<string, string> = {},
  extra: { mountOptions?: string[]; capacity?: string; driver?: string; handle?: string } = {},
): V1PersistentVolume {
  return {
    metadata: { name, creationTimestamp: new Date('2026-01-02T03:04:05Z') },
    spec: {
      capacity: { storage: extra.capacity ?? '10Gi' },
      ...(extra.mountOptions ? { mountOptions: extra.mountOptions } : {}),
      csi: {
        driver: extra.driver ?? 'csi.juicefs.com',
        volumeHandle: extra.handle ?? name,
        volumeAttributes: attributes,
      },
    },
  };
}

t.test('the subdir mount option, as the mount reads it', async (t) => {
  t.equal(optionSubdir([]), undefined, 'none');
  t.equal(optionSubdir(['subdir=team-x']), 'team-x');
  t.equal(optionSubdir(['writeback', 'cache-size=100,subdir=/team-x//a/']), 'team-x/a', 'comma list, canonical');
  t.equal(optionSubdir(['--subdir=team-x']), 'team-x', 'with the flag dashes');
  t.equal(optionSubdir(['subdir=a'], 'subdir=b'), 'b', 'the mountOptions attribute wins, as at the mount');
  t.equal(optionSubdir(['subdir=a', 'subdir=c']), 'c', 'the later one wins');
  t.equal(optionSubdir(['subdir=/']), undefined, 'the root');
  t.throws(() => optionSubdir(['subdir=../x']), SubdirError, 'escaping the volume is refused');
  t.equal(volumeDirectory('pvc-1', ['subdir=team-x']), 'team-x/pvc-1');
  t.equal(volumeDirectory('ns-name', []), 'ns-name');
  t.equal(volumeDirectory('p', [], 'subdir=x/y,writeback'), 'x/y/p');
});

t.test('a PV the reference provisioned: its directory from subPath and its mount options', async (t) => {
  const a = referenceRecord(UID_NAME, pv(UID_NAME, { subPath: UID_NAME }, { mountOptions: ['subdir=team-x'] }));
  t.same(a, {
    id: UID_NAME,
    subdir: `team-x/${UID_NAME}`,
    capacityBytes: 10 * 2 ** 30,
    createdAt: '2026-01-02T03:04:05.000Z',
  });
  const b = referenceRecord('my-vol', pv('my-vol', {}, { capacity: '1500M' }));
  t.equal(b?.subdir, 'my-vol', 'no subPath: the volume id');
  t.equal(b?.capacityBytes, 1_500_000_000, 'decimal capacity');
  const c = referenceRecord('p', pv('p', { subPath: 'a/b', mountOptions: 'subdir=x' }));
  t.equal(c?.subdir, 'x/a/b', 'the mountOptions attribute');
  const d = referenceRecord(
    'p',
    pv(
      'p',
      { subPath: 'ns-c', 'juicefs/rendered-mount-options': '["subdir=z1","writeback"]' },
      {
        mountOptions: ['subdir=${.node.labels.zone}'],
      },
    ),
  );
  t.equal(d?.subdir, 'z1/ns-c', "the controller's rendering of templated options, not the PV's copy");
  t.equal(referenceRecord('p', pv('p', { subPath: '/' })), undefined, 'the root is never a volume directory');
  t.throws(() => referenceRecord('p', pv('p', { subPath: '../etc' })), SubdirError);
  t.equal(referenceRecord('p', pv('p', {}, { driver: 'other.csi.io' })), undefined, "another driver's PV");
  t.equal(referenceRecord('p', pv('p', {}, { handle: 'q' })), undefined, 'a PV of another handle');
});

t.test('no PV: the name external-provisioner gives, at the root, as the reference deletes it', async (t) => {
  t.same(referenceRecord(UID_NAME, undefined), { id: UID_NAME, subdir: UID_NAME, capacityBytes: 0, createdAt: '' });
  t.equal(referenceRecord('sanity-123', undefined), undefined, 'any other name is no volume');
  t.equal(referenceRecord(`x${UID_NAME}`, undefined), undefined, 'the whole name, not a part of it');
});

t.test('other PVs mounting the same directory', async (t) => {
  const pvs = [
    pv('a', { subPath: 'shared/x' }),
    pv('b', { subPath: 'x' }, { mountOptions: ['subdir=shared'] }),
    pv('c', { subPath: 'shared/y' }),
    pv('d', { subPath: 'shared/x' }, { driver: 'other.csi.io' }),
    pv('e', { subPath: '../bad' }),
  ];
  t.same(pvsSharing(pvs, 'a', 'shared/x'), ['b'], 'the same directory reached through the subdir option');
  t.same(pvsSharing(pvs, 'z', 'shared/x'), ['a', 'b']);
  t.same(pvsSharing(pvs, 'z', 'other'), []);
  t.equal(pvDirectory(pvs[1]), 'shared/x');
});
