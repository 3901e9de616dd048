// Golden-file tests for injection, after Istio's inject_test.go: every case in
// test/testdata runs through the pure injector and through the webhook
// (AdmissionReview → JSONPatch → applied), and both must equal the one golden
// file; each is injected again to show nothing changes. `npm run
// golden:update` rewrites the golden files; review the diff.
import t from 'tap';
import { injectObjects } from '../../src/offline/inject-manifests.js';
import {
  checkCaseDirectory,
  checkGolden,
  GOLDEN_SUFFIX,
  isWorkload,
  readCase,
  renderAdmission,
  renderGolden,
  sortedKeys,
  TESTDATA,
  updateGolden,
  webhookFor,
} from './golden.js';

for (const name of checkCaseDirectory(t, TESTDATA, GOLDEN_SUFFIX)) {
  const c = readCase(name);
  void t.test(name, async (t) => {
    const rendered = renderGolden(c);
    updateGolden(c.goldenPath, rendered);
    checkGolden(t, c.goldenPath, rendered, 'the pure injector');
    if (!rendered.startsWith('# denied')) {
      // Idempotency: injecting the injected workloads again changes nothing.
      const first = injectObjects(c.objects, c.options);
      const again = injectObjects(
        first.map((r) => r.object),
        c.options,
      );
      t.same(
        again.filter(isWorkload).map((r) => r.object),
        first.filter(isWorkload).map((r) => r.object),
        'injecting twice changes nothing',
      );
    }

    // The same case through the webhook, compared with the same golden file.
    const webhook = webhookFor(c);
    t.teardown(() => webhook.close());
    const { text, patched } = await renderAdmission(c, webhook);
    checkGolden(t, c.goldenPath, text, 'the admission path', sortedKeys);
    for (const pod of patched) {
      const again = await webhook.admit(pod);
      t.equal(again.result, 'skipped:already-injected', 'a patched pod sent again is skipped as already injected');
      t.notOk(again.patched, 'with no patch');
    }
  });
}
