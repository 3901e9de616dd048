// The validating webhook's rules (src/resolve/validation.ts).
import type { V1PersistentVolume, V1Secret } from '@kubernetes/client-node';
import t from 'tap';
import { metaurlProblem, validatePv, validateSecret } from '../../src/resolve/validation.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const secret = (data: Record<string, string>, extra: Partial<V1Secret> = {}): V1Secret => ({
  metadata: { name: 's', namespace: 'ns' },
  type: 'Opaque',
  data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
  ...extra,
});
const pv = (name: string, handle: string, attributes: Record<string, string> = {}): V1PersistentVolume => ({
  metadata: { name },
  spec: { csi: { driver: 'csi.juicefs.com', volumeHandle: handle, volumeAttributes: attributes } },
});

t.test('metaurls juicefs can open', async (t) => {
  for (const ok of [
    'redis://:pw@redis:6379/1',
    'rediss://r:6379',
    'sqlite3:///var/jfs/a.db',
    'mysql://u:p@(db:3306)/juicefs',
    'postgres://u@db:5432/jfs',
    'tikv://pd:2379/jfs',
    'etcd://e:2379/jfs',
    'redis-host:6379/1',
  ])
    t.equal(metaurlProblem(ok), undefined, ok);
  t.match(metaurlProblem('postgresql://db/jfs'), /"postgresql" is no metadata engine/);
  t.match(metaurlProblem('http://db'), /"http"/);
  t.match(metaurlProblem('redis://'), /no address/);
  t.match(metaurlProblem(' redis://a'), /white space/);
  t.match(metaurlProblem('://a'), /no scheme/);
});

t.test('Secrets', async (t) => {
  t.same(validateSecret(secret({ metaurl: 'redis://r/1', envs: '{TZ: Asia/Shanghai}' })), { warnings: [] });
  t.match(validateSecret(secret({ metaurl: 'postgresql://x' })).denied, /Secret ns\/s: metaurl scheme "postgresql"/);
  t.match(validateSecret(secret({ name: 'x' })).denied, /neither "metaurl" nor "token"/);
  t.match(validateSecret(secret({ metaurl: 'redis://r' }, { type: 'kubernetes.io/tls' })).denied, /Opaque/);
  t.match(validateSecret(secret({ metaurl: 'redis://r', envs: '[1' })).denied, /envs/);
  t.match(
    validateSecret(secret({ metaurl: 'redis://r', envs: '{LD_PRELOAD: /x.so, TZ: UTC}' })).denied,
    /variable "LD_PRELOAD" may not be set/,
  );
  t.match(validateSecret(secret({ token: 't', name: 'v' })), { denied: undefined, warnings: [/Enterprise Edition/] });
  t.match(validateSecret(secret({ metaurl: 'redis://r', configs: '{a: /b}' })).warnings, [/configs/]);
  const viaStringData = validateSecret({ ...secret({}), stringData: { metaurl: 'mysql://u@(h)/d' } });
  t.same(viaStringData, { warnings: [] }, 'stringData counts, as the API server merges it');
});

t.test('PVs', async (t) => {
  const existing = [
    pv('a', 'vol-1'),
    { ...pv('other', 'vol-2'), spec: { csi: { driver: 'x.csi.io', volumeHandle: 'vol-2' } } },
  ];
  t.match(validatePv(pv('b', 'vol-1'), existing).denied, /volumeHandle "vol-1" is already PersistentVolume a's/);
  t.same(validatePv(pv('a', 'vol-1'), existing), { warnings: [] }, 'the same PV (a retried create) is no twin');
  t.same(validatePv(pv('c', 'vol-2'), existing), { warnings: [] }, "another driver's handle");
  t.match(validatePv(pv('d', 'vol-4', { subPath: '../../etc' }), existing).denied, /escapes the volume/);
  t.match(validatePv(pv('e', 'vol-5', { 'juicefs/mount-cpu-limit': 'lots' }), existing), {
    denied: undefined,
    warnings: [/PersistentVolume e: .*pods using it will be refused/],
  });
  t.same(validatePv({ metadata: { name: 'n' }, spec: { nfs: { server: 's', path: '/' } } }, existing), {
    warnings: [],
  });
});
