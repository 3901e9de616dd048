// Cache storage (issue 14 item 3): the attributes' parsers, ConfigMap cacheDirs, the templates and the volumes
// in each mode. The goldens cache-storage*, cache-dirs-configmap show whole pods; these pin the rules.
import t from 'tap';
import { parseCacheDirs } from '../../src/config/cache-dirs.js';
import { parseGlobalConfig } from '../../src/config/schema.js';
import { parseVolumeAttributes } from '../../src/contract/attributes.js';
import { renderMountTemplate } from '../../src/contract/mount-template.js';
import { DenyError } from '../../src/contract/deny.js';
import { cacheVolumes } from '../../src/mount/cache-volumes.js';
import { computeMountSettings } from '../../src/mount/settings.js';
import type { VolumeSource } from '../../src/mount/volume.js';

const source = (attributes: Record<string, string>, mountOptions: string[] = []): VolumeSource => ({
  pvName: 'pv-1',
  subdir: 'team/pv-1',
  readOnly: false,
  attributes,
  mountOptions,
  secret: { name: 's', keys: ['name', 'metaurl'], envNames: [], formatFlags: [] },
});
const settings = (attributes: Record<string, string>, mountOptions: string[] = [], config = '') =>
  computeMountSettings(source(attributes, mountOptions), undefined, { config: parseGlobalConfig(config) }, []);

t.test('templates: ${VOLUME_ID} and ${SUB_PATH}; the others refused with the reason', async (t) => {
  t.equal(renderMountTemplate('/c/${VOLUME_ID}/${SUB_PATH}', { volumeId: 'pv', subPath: 'a/b' }), '/c/pv/a/b');
  t.throws(() => renderMountTemplate('/c/${VOLUME_NAME}', { volumeId: 'pv', subPath: '' }), /Secret/);
  t.throws(() => renderMountTemplate('/c/${MOUNT_POINT}', { volumeId: 'pv', subPath: '' }), /into itself/);
  t.throws(() => renderMountTemplate('/c/${HOME}', { volumeId: 'pv', subPath: '' }), /no placeholder/);
  t.equal(renderMountTemplate('${.pvc.name}', { volumeId: 'pv', subPath: '' }), '${.pvc.name}', 'not this syntax');
});

t.test("the attributes' parsers", async (t) => {
  const a = parseVolumeAttributes({
    'juicefs/mount-cache-pvc': ' a, cache-${VOLUME_ID} ,',
    'juicefs/mount-cache-emptydir': 'Memory:1Gi',
    'juicefs/mount-cache-inline-volume': '[{"driver":"d.example.com","volumeAttributes":{"x":"1"}}]',
    'juicefs/host-path': '/etc/hosts, /d/${VOLUME_ID}',
  });
  t.same(a.cachePvc, ['a', 'cache-${VOLUME_ID}']);
  t.same(a.cacheEmptyDir, { medium: 'Memory', sizeLimit: '1Gi' });
  t.same(parseVolumeAttributes({ 'juicefs/mount-cache-emptydir': ':5Gi' }).cacheEmptyDir, { sizeLimit: '5Gi' });
  t.same(a.cacheInlineVolume, [{ driver: 'd.example.com', volumeAttributes: { x: '1' } }]);
  t.same(a.hostPath, ['/etc/hosts', '/d/${VOLUME_ID}']);
  const bad: [string, string, RegExp][] = [
    ['juicefs/mount-cache-pvc', 'Bad_Name', /no PVC name/],
    ['juicefs/mount-cache-emptydir', 'Disk', /medium/],
    ['juicefs/mount-cache-emptydir', 'Memory:-1Gi', /positive quantity/],
    ['juicefs/mount-cache-emptydir', 'a:b:c', /medium:sizeLimit/],
    ['juicefs/mount-cache-inline-volume', '{"driver":"x"}', /JSON list/],
    ['juicefs/mount-cache-inline-volume', '[{"driver":"csi.juicefs.com"}]', /JuiceFS volume cannot be the cache/],
    ['juicefs/mount-cache-inline-volume', '[{"driver":"d","hostPath":"/"}]', /field "hostPath"/],
    ['juicefs/mount-cache-inline-volume', '[{"driver":"d","readOnly":true}]', /read-only/],
    ['juicefs/host-path', 'relative/p', /absolute/],
    ['juicefs/host-path', '/a/../etc', /"\.\."/],
    ['juicefs/host-path', '/a/$(JFS_METAURL)', /\$\(/],
    ['juicefs/host-path', '/a/${MOUNT_POINT}', /into itself/],
  ];
  for (const [key, value, re] of bad) t.throws(() => parseVolumeAttributes({ [key]: value }), re, `${key}: ${value}`);
});

t.test('ConfigMap cacheDirs: the four types, an invalid entry names itself', async (t) => {
  t.same(
    parseCacheDirs(
      [
        { type: 'HostPath', path: '/c/${VOLUME_ID}' },
        { type: 'PVC', name: 'p' },
        { type: 'EmptyDir', medium: 'Memory', sizeLimit: '1Gi' },
        { type: 'Ephemeral', storage: '30Gi' },
      ],
      'w',
    ),
    [
      { type: 'HostPath', path: '/c/${VOLUME_ID}' },
      { type: 'PVC', name: 'p' },
      { type: 'EmptyDir', medium: 'Memory', sizeLimit: '1Gi' },
      { type: 'Ephemeral', storage: '30Gi', accessModes: ['ReadWriteOnce'] },
    ],
  );
  const refused: [unknown, RegExp][] = [
    [[{ type: 'NFS' }], /w\[0\]\.type.*HostPath, PVC, EmptyDir, Ephemeral/],
    [[{ type: 'HostPath' }], /w\[0\]\.path: required/],
    [[{ type: 'PVC', name: 'p', path: '/x' }], /w\[0\]\.path: not a field of a PVC entry/],
    [[{ type: 'Ephemeral' }], /w\[0\]\.storage: required/],
    [[{ type: 'Ephemeral', storage: '1Gi', accessModes: ['ReadOnlyMany'] }], /accessModes/],
    [[{ type: 'HostPath', path: '/a/../b' }], /"\.\."/],
    ['x', /expected a list/],
  ];
  for (const [raw, re] of refused) t.throws(() => parseCacheDirs(raw, 'w'), re);
  // Through the schema: the bad entry alone is refused, and the issue names the field (ADR 0020).
  const missingName = parseGlobalConfig('mountPodPatch:\n  - cacheDirs: [{type: PVC}]\n');
  t.same(missingName.mountPodPatch, [], 'through the schema: the entry is not applied');
  t.match(
    missingName.issues,
    [
      {
        path: 'mountPodPatch[0].cacheDirs[0].name',
        effect: 'entry-refused',
        message: /^mountPodPatch\[0\]\.cacheDirs\[0\]\.name: a PVC name is required for PVC/,
      },
    ],
    'through the schema, naming the entry',
  );
  const byLabels = parseGlobalConfig(
    'mountPodPatch:\n  - pvcSelector: {matchLabels: {a: b}}\n    cacheDirs: [{type: HostPath, path: /x}]\n',
  );
  t.same(byLabels.mountPodPatch, [], 'a host folder is never selectable by PVC labels (ADR 0005)');
  t.match(byLabels.issues, [
    {
      path: 'mountPodPatch[0].cacheDirs',
      effect: 'entry-refused',
      message: /an entry whose pvcSelector matches PVC labels/,
    },
  ]);
});

t.test('the settings: order, default, templates, the last patch with cacheDirs, memory', async (t) => {
  t.same(settings({}).cacheDirs, ['/var/jfsCache'], 'the default');
  t.same(settings({}, ['cache-dir=memory']).cache, [], 'memory alone: no volume');
  const s = settings(
    { 'juicefs/mount-cache-pvc': 'c-${VOLUME_ID}', 'juicefs/host-path': '/h/${SUB_PATH},/var/c/pv-1' },
    ['cache-dir=/var/c/${VOLUME_ID}:memory'],
  );
  t.same(s.cacheDirs, ['/var/jfsCache-0', '/var/c/pv-1', 'memory']);
  t.same(s.cache[0], { kind: 'pvc', path: '/var/jfsCache-0', claimName: 'c-pv-1' });
  t.same(s.hostPaths, ['/h/team/pv-1'], 'a host path that is a cache folder already is mounted once');
  const config =
    'mountPodPatch:\n  - cacheDirs: [{type: PVC, name: first}]\n  - cacheDirs: [{type: EmptyDir}, {type: PVC, name: last}]\n';
  const p = settings({ 'juicefs/mount-cache-emptydir': 'Memory' }, [], config);
  t.same(
    p.cache.map((c) => c.kind + ':' + (c.kind === 'pvc' ? c.claimName : (c.kind === 'emptyDir' && c.medium) || '')),
    ['pvc:last', 'emptyDir:'],
    "the last entry's cacheDirs; its EmptyDir over the attribute's",
  );
  t.throws(() => settings({}, ['cache-dir=/a:/a/']), DenyError);
  t.throws(() => settings({}, ['cache-dir=/a:/a/']), /distinct absolute paths/);
});

t.test('volumes: the modes', async (t) => {
  const s = settings({ 'juicefs/host-path': '/etc/hosts' }, ['cache-dir=/c']);
  const names = { cacheName: (i: number) => `c${i}`, hostPathName: (i: number) => `h${i}` };
  const host = cacheVolumes(s, { host: 'hostPath', ...names });
  t.same(host.volumes, [
    { name: 'c0', hostPath: { path: '/c', type: 'DirectoryOrCreate' } },
    { name: 'h0', hostPath: { path: '/etc/hosts' } },
  ]);
  const srv = cacheVolumes(s, { host: 'serverless', ...names });
  t.same(srv.volumes, [{ name: 'c0', emptyDir: {} }], 'serverless: no host path at all');
  t.match(srv.warnings[0], /left out/);
  const eph = settings({}, [], 'mountPodPatch:\n  - cacheDirs: [{type: Ephemeral, storage: 1Gi}]\n');
  const mp = cacheVolumes(eph, { host: 'hostPath', nodeName: 'n1', ...names });
  t.equal(
    mp.volumes[0].ephemeral?.volumeClaimTemplate?.metadata?.annotations?.['volume.kubernetes.io/selected-node'],
    'n1',
    "a Mount Pod's ephemeral cache PVC is for its node (it bypasses the scheduler)",
  );
});
