// Mount options as JuiceFS CSI users write them (for the reference driver's mount.juicefs), read the same way here.
import t from 'tap';
import { parseGlobalConfig } from '../../src/config/schema.js';
import { DenyError } from '../../src/contract/deny.js';
import { mountFlags } from '../../src/mount/containers.js';
import { optionKind, renderOptions } from '../../src/mount/mount-options.js';
import { computeMountSettings } from '../../src/mount/settings.js';
import type { PvcIdentity, VolumeSource } from '../../src/mount/volume.js';

const config = parseGlobalConfig('');
const claim: PvcIdentity = { name: 'data', namespace: 'team-a', labels: {}, annotations: {} };
function settings(mountOptions: string[], attributes: Record<string, string> = {}) {
  const source: VolumeSource = {
    pvName: 'pv-1',
    subdir: 'pv-1',
    readOnly: false,
    attributes,
    mountOptions,
    secret: { name: 's', keys: ['metaurl'], envNames: [], formatFlags: [] },
  };
  return computeMountSettings(source, claim, { config }, []);
}
const valueOf = (s: ReturnType<typeof settings>, key: string) => s.options.find((o) => o.key === key)?.value;

t.test('which options are flags, which FUSE options', async (t) => {
  for (const flag of ['cache-size', 'writeback', 'buffer-size', 'debug', 'attrcacheto', 'entrycacheto'])
    t.equal(optionKind(flag), 'flag', flag);
  for (const fuse of ['nonempty', 'allow_other', 'fsname', 'subtype', 'default_permissions', 'f', 'v'])
    t.equal(optionKind(fuse), 'fuse', fuse);
  for (const dropped of ['_netdev', 'rw', 'defaults', 'remount', 'background', 'd'])
    t.equal(optionKind(dropped), 'dropped', dropped);
  t.equal(optionKind('cache-sise'), 'unknown', 'a dashed key that is no flag');
});

t.test('rendered as mount.juicefs would run them', async (t) => {
  const s = settings([
    'nonempty',
    'fsname=team',
    'attrcacheto=2',
    'direntrycacheto=3',
    'entrycacheto=1',
    '_netdev',
    'background',
    'debug',
    'cache-size=2048',
  ]);
  t.same(renderOptions(s.options), [
    '--attr-cache=2',
    '--dir-entry-cache=3',
    '--entry-cache=1',
    '--debug',
    '--cache-size=2048',
    '-o',
    'nonempty,fsname=team,debug',
  ]);
  t.same(s.warnings, [
    'PersistentVolume pv-1: mount option "_netdev" ignored',
    'PersistentVolume pv-1: mount option "background" ignored',
  ]);
  t.throws(() => settings(['cache-sise=1']), DenyError);
});

t.test("the volume's own metrics address", async (t) => {
  const s = settings(['metrics=0.0.0.0:9600']);
  t.same(s.metrics, { address: '0.0.0.0:9600', port: 9600 });
  t.ok(mountFlags(s, 9567).includes('--metrics=0.0.0.0:9600'), 'used instead of the injector’s port');
  t.same(settings([':9601'.replace(/^/, 'metrics=')]).metrics, { address: ':9601', port: 9601 }, ':port form');
  t.same(settings(['metrics=[::1]:9602']).metrics, { address: '[::1]:9602', port: 9602 });
  t.notOk(settings([]).metrics, 'none: the injector’s port');
  t.ok(mountFlags(settings([]), 9568).includes('--metrics=0.0.0.0:9568'));
  for (const bad of ['metrics=9600', 'metrics=host:0', 'metrics=host:70000', 'metrics=a b:1', 'metrics'])
    t.throws(() => settings([bad]), DenyError, bad);
});

t.test('buffer-size: a share of the memory limit, and never above it', async (t) => {
  // The default memory limit is 5Gi (5120 MiB).
  t.equal(valueOf(settings(['buffer-size=50%']), 'buffer-size'), '2560');
  t.equal(valueOf(settings(['buffer-size=0.1%']), 'buffer-size'), '6', 'rounded up to a whole MiB');
  const over = settings(['buffer-size=150%']);
  t.equal(valueOf(over, 'buffer-size'), '5120');
  t.match(over.warnings.join('\n'), /above 100 %/);
  t.equal(valueOf(settings(['buffer-size=20%'], { 'juicefs/mount-memory-limit': '1Gi' }), 'buffer-size'), '205');
  const big = settings(['buffer-size=8000']);
  t.equal(valueOf(big, 'buffer-size'), '5120', 'a size above the limit is lowered to it');
  t.match(big.warnings.join('\n'), /above the memory limit/);
  t.equal(valueOf(settings(['buffer-size=300']), 'buffer-size'), '300', 'within the limit: as written');
  t.throws(
    () => settings(['buffer-size=10%'], { 'juicefs/mount-memory-limit': '0' }),
    /share of the memory limit, and there is none/,
    'no limit to take a share of',
  );
  t.equal(valueOf(settings(['buffer-size=900'], { 'juicefs/mount-memory-limit': '0' }), 'buffer-size'), '900');
});

t.test("the controller's rendering of templated StorageClass mountOptions replaces the PV's copy", async (t) => {
  const s = settings(['cache-size=${.pvc.annotations.size}'], {
    'juicefs/rendered-mount-options': '["cache-size=2048","writeback"]',
  });
  t.same(
    s.options.map((o) => `${o.key}=${o.value ?? ''}`),
    ['cache-size=2048', 'writeback='],
  );
  t.throws(() => settings([], { 'juicefs/rendered-mount-options': 'cache-size=1' }), /JSON list of strings/);
  t.throws(() => settings([], { 'juicefs/rendered-mount-options': '[1]' }), /JSON list of strings/);
});
