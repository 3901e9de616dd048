// enableNativeSidecar unset: the API server's version decides (native sidecars are on by default from 1.29).
import t from 'tap';
import { parseGlobalConfig, serverHasNativeSidecars, withServerVersion } from '../../src/config/schema.js';

t.test('which servers run native sidecars by default', async (t) => {
  t.equal(serverHasNativeSidecars({ major: '1', minor: '29' }), true);
  t.equal(serverHasNativeSidecars({ major: '1', minor: '34' }), true);
  t.equal(serverHasNativeSidecars({ major: '1', minor: '28' }), false, '1.28: alpha, off by default');
  t.equal(serverHasNativeSidecars({ major: '1', minor: '27+' }), false, 'a provider suffix');
  t.equal(serverHasNativeSidecars({ major: '1', minor: '30+' }), true);
  t.equal(serverHasNativeSidecars({ major: '2', minor: '0' }), true);
  t.equal(serverHasNativeSidecars({ major: '', minor: '' }), undefined, 'unreadable');
});

t.test('unset follows the server; set by the ConfigMap stands', async (t) => {
  const unset = parseGlobalConfig('mountPodPatch: []');
  t.equal(unset.nativeSidecarSet, undefined);
  t.equal(withServerVersion(unset, { major: '1', minor: '28' }).enableNativeSidecar, false, 'old server: classic');
  t.equal(withServerVersion(unset, { major: '1', minor: '34' }).enableNativeSidecar, true);
  t.equal(withServerVersion(unset, undefined).enableNativeSidecar, true, 'no version known: the default');
  t.equal(withServerVersion(unset, { major: '1', minor: '34' }), unset, 'unchanged: the same object');
  for (const set of [true, false]) {
    const c = parseGlobalConfig(`enableNativeSidecar: ${set}`);
    t.equal(c.nativeSidecarSet, true);
    t.equal(withServerVersion(c, { major: '1', minor: set ? '28' : '34' }).enableNativeSidecar, set, `set ${set}`);
  }
});
