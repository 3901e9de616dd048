// Golden-file tests for injection. `npm run golden:update` rewrites the
// golden files; review the diff.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { injectObjects } from '../../src/offline/inject-manifests.js';
import { isWorkload, listCases, orphanGoldens, renderGolden } from './golden.js';

const update = process.env.UPDATE_GOLDEN === '1';
const cases = listCases();

t.ok(cases.length >= 12, `golden cases are discovered (${cases.length})`);
t.same(orphanGoldens(), [], 'no golden file without its input');

for (const c of cases) {
  t.test(c.name, async (t) => {
    const rendered = renderGolden(c);
    if (update) writeFileSync(c.goldenPath, rendered);
    t.ok(existsSync(c.goldenPath), `golden file exists (run npm run golden:update)`);
    t.equal(rendered, readFileSync(c.goldenPath, 'utf8'), 'output equals the golden file');

    if (rendered.startsWith('# denied')) return;
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
  });
}
