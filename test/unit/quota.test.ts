// Quotas: who sets one (the controller in CreateVolume, or the sidecar at its mount for a PV the controller did
// not), and the reference's switches enableSetQuota / enableControllerSetQuota.
import t from 'tap';
import { parseGlobalConfig } from '../../src/config/schema.js';
import { computeMountSettings } from '../../src/mount/settings.js';
import type { PvcIdentity, VolumeSource } from '../../src/mount/volume.js';

const source = (extra: Partial<VolumeSource> = {}): VolumeSource => ({
  pvName: 'pv-1',
  subdir: 'pv-1',
  readOnly: false,
  attributes: {},
  mountOptions: [],
  secret: { name: 's', keys: ['name', 'metaurl'], envNames: [], formatFlags: [] },
  ...extra,
});
const claim = (requestBytes?: number): PvcIdentity => ({
  name: 'data',
  namespace: 'apps',
  labels: {},
  annotations: {},
  ...(requestBytes !== undefined && { requestBytes }),
});
const quota = (volume: VolumeSource, pvc: PvcIdentity | undefined, config = '') =>
  computeMountSettings(volume, pvc, { config: parseGlobalConfig(config) }, []).quota;
const GIB = 2 ** 30;

t.test('the sidecar sets a quota on a PV the controller set none on', async (t) => {
  t.same(quota(source(), claim(3 * GIB)), { path: '/pv-1', gib: 3 }, 'a static PV: its PVC request');
  t.same(quota(source(), claim(1.5 * GIB)), { path: '/pv-1', gib: 2 }, 'whole GiB rounded up, as the controller');
  t.same(quota(source(), claim(10)), { path: '/pv-1', gib: 1 }, 'at least 1 GiB');
  t.same(
    quota(source({ mountOptions: ['subdir=team-x'] }), claim(GIB)),
    { path: '/team-x/pv-1', gib: 1 },
    'on the directory mounted: under the subdir option',
  );
  t.equal(quota(source({ attributes: { 'juicefs/controller-quota-set': 'true' } }), claim(GIB)), undefined, 'marked');
  t.equal(quota(source({ subdir: undefined }), claim(GIB)), undefined, 'a PV of the whole volume: none');
  t.equal(quota(source(), claim()), undefined, 'no request: none');
  t.equal(quota(source(), undefined), undefined, 'no PVC: none');
  t.equal(quota(source(), claim(GIB), 'enableSetQuota: false'), undefined, 'quotas off');
});

t.test('a PV still to be provisioned: the controller sets it, unless told not to', async (t) => {
  t.equal(quota(source({ provisioning: true }), claim(GIB)), undefined);
  t.same(
    quota(source({ provisioning: true }), claim(GIB), 'enableControllerSetQuota: false'),
    { path: '/pv-1', gib: 1 },
    'enableControllerSetQuota: false: the sidecar',
  );
  t.equal(
    quota(source({ provisioning: true }), claim(GIB), 'enableControllerSetQuota: false\nenableSetQuota: false'),
    undefined,
  );
});

t.test('the switches parse, and false is honoured rather than refused', async (t) => {
  const c = parseGlobalConfig('enableSetQuota: false\nenableControllerSetQuota: false');
  t.same([c.enableSetQuota, c.enableControllerSetQuota, c.issues], [false, false, []]);
  const d = parseGlobalConfig('');
  t.same([d.enableSetQuota, d.enableControllerSetQuota], [true, true], 'both on by default');
});
