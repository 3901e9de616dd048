// The reference driver's environment names, read as ours.
import t from 'tap';
import { aliasedEnv } from '../../src/contract/env-aliases.js';

t.test('the mount image under the reference names', async (t) => {
  t.same(aliasedEnv({ JUICEFS_MOUNT_IMAGE: 'a:1' }), { JFS_MOUNT_IMAGE: 'a:1' });
  t.same(
    aliasedEnv({ JUICEFS_MOUNT_IMAGE: 'a:1', JUICEFS_CE_MOUNT_IMAGE: 'ce:2' }),
    { JFS_MOUNT_IMAGE: 'ce:2' },
    'CE first',
  );
  t.same(aliasedEnv({ JFS_MOUNT_IMAGE: 'ours:3', JUICEFS_CE_MOUNT_IMAGE: 'ce:2' }), {}, 'ours wins');
  t.same(aliasedEnv({ JUICEFS_CE_MOUNT_IMAGE: '' }), {}, 'an empty one sets nothing');
  t.same(aliasedEnv({}), {});
});
