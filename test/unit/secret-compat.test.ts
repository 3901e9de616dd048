// Secrets as JuiceFS CSI users write them: key aliases, format flags as keys of their own, credentials in
// format-options, all reaching the format step through env, never through a pod's argv.
import t from 'tap';
import { normaliseSecretText, secretCopyData, summariseSecret } from '../../src/contract/secret-copy.js';
import { credentialsFromSecrets } from '../../src/juicefs/volume.js';
import { credentialValues, isCredentialName } from '../../src/mount/credentials.js';
import { formatCommand, formatFlagEnv } from '../../src/mount/format.js';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const text = (d: Record<string, string>) =>
  Object.fromEntries(Object.entries(d).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));

const source = {
  name: 'vol',
  metaurl: 'redis://meta:6379/1',
  storage: 's3',
  bucket: 'https://b.example',
  accesskey: 'AK-old-name',
  secretkey: 'SK-old-name',
  'block-size': '1024',
  compress: 'lz4',
  'trash-days': '3',
  'format-options': 'trash-days=7, session-token=TOKEN-123, hash-prefix, --shards=4',
};

t.test('aliases and format flags, normalised once', async (t) => {
  const n = normaliseSecretText(source);
  t.equal(n['access-key'], 'AK-old-name');
  t.equal(n['secret-key'], 'SK-old-name');
  t.notOk('accesskey' in n || 'secretkey' in n, 'the old names are read as the new ones');
  t.same(
    Object.fromEntries(Object.entries(n).filter(([k]) => k.startsWith('format.'))),
    {
      'format.block-size': '1024',
      'format.compress': 'lz4',
      'format.trash-days': '7',
      'format.session-token': 'TOKEN-123',
      'format.hash-prefix': 'true',
      'format.shards': '4',
    },
    'format-options wins over a key of its own (it comes later on the reference’s command line)',
  );
});

t.test('the format step reads every value through env', async (t) => {
  const data = Object.fromEntries(Object.entries(source).map(([k, v]) => [k, b64(v)]));
  const summary = summariseSecret(data);
  t.same(summary.formatFlags, ['block-size', 'compress', 'hash-prefix', 'session-token', 'shards', 'trash-days']);
  t.ok(summary.keys.includes('access-key') && summary.keys.includes('secret-key'));
  const step = formatCommand(summary.keys, summary.formatFlags);
  const argv = step.args.join(' ');
  for (const value of Object.values(source).filter((v) => !['s3'].includes(v)))
    t.notOk(argv.includes(value), `no Secret value in argv: ${value.slice(0, 12)}`);
  t.ok(step.args.includes('--session-token=$(JFS_FORMAT_SESSION_TOKEN)'));
  t.ok(step.args.includes('--hash-prefix=$(JFS_FORMAT_HASH_PREFIX)'));
  const copy = text(secretCopyData(data));
  for (const e of step.env) t.ok(e.key in copy, `the copy has ${e.key} for ${e.name}`);
  t.equal(copy['format.session-token'], 'TOKEN-123');
  t.same(
    step.env.filter((e) => e.name === 'ACCESS_KEY' || e.name === 'SECRET_KEY'),
    [
      { name: 'ACCESS_KEY', key: 'access-key' },
      { name: 'SECRET_KEY', key: 'secret-key' },
    ],
  );
  t.throws(() => formatCommand(['name'], ['cache-size']), /no flag of juicefs format/);
  t.throws(() => formatCommand(['name'], ['Bad_Flag']), /no flag of juicefs format/);
});

t.test('the broker answers the same values under the same env names', async (t) => {
  const data = Object.fromEntries(Object.entries(source).map(([k, v]) => [k, b64(v)]));
  const values = credentialValues(data);
  t.equal(values[formatFlagEnv('session-token')], 'TOKEN-123');
  t.equal(values.ACCESS_KEY, 'AK-old-name');
  t.equal(values.SECRET_KEY, 'SK-old-name');
  t.ok(isCredentialName('JFS_FORMAT_SESSION_TOKEN'));
  t.notOk(isCredentialName('JFS_FORMAT_NOT_A_FLAG'), 'only env vars of real format flags');
});

t.test("the controller's own format step", async (t) => {
  const c = credentialsFromSecrets(source);
  t.equal(c.accessKey, 'AK-old-name');
  t.equal(c.formatFlags['session-token'], 'TOKEN-123');
  t.equal(c.formatFlags['block-size'], '1024');
});
