// Golden files for the Mount Pod plan, the builder's second output: every case
// in test/testdata/mount-pod. `npm run golden:update` rewrites them too.
import t from 'tap';
import { checkCaseDirectory, checkGolden, updateGolden } from './golden.js';
import {
  MOUNT_POD_GOLDEN_SUFFIX,
  MOUNT_POD_TESTDATA,
  readMountPodCase,
  renderMountPodGolden,
} from './mount-pod-golden.js';

for (const name of checkCaseDirectory(t, MOUNT_POD_TESTDATA, MOUNT_POD_GOLDEN_SUFFIX)) {
  void t.test(name, (t) => {
    const c = readMountPodCase(name);
    const rendered = renderMountPodGolden(c);
    updateGolden(c.goldenPath, rendered);
    checkGolden(t, c.goldenPath, rendered, 'the Mount Pod plan');
    t.end();
  });
}
