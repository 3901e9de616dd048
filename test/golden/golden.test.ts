// Golden-file tests for injection. `npm run golden:update` rewrites the
// golden files; review the diff.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import fjp from 'fast-json-patch';
import { pino } from 'pino';
import t from 'tap';
import { ObjectView } from '../../src/resolve/object-view.js';
import { review } from '../../src/webhook/admission.js';
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

// The same cases through the webhook path: AdmissionReview → JSONPatch → applied pod.
for (const c of cases) {
  const pod = c.objects.find((o) => o.kind === 'Pod');
  if (!pod) continue;
  t.test(`${c.name} (admission path)`, async (t) => {
    const namespace = pod.metadata?.namespace ?? 'default';
    const body = {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid: `uid-${c.name}`,
        kind: { group: '', version: 'v1', kind: 'Pod' },
        operation: 'CREATE',
        namespace,
        object: pod,
      },
    };
    const result = review(body, {
      view: new ObjectView(c.objects),
      options: () => c.options,
      onError: 'deny',
      log: pino({ level: 'silent' }),
    });
    if (result.kind !== 'review') throw new Error(result.message);
    const { response } = result.review;
    t.equal(response.uid, `uid-${c.name}`);
    const golden = readFileSync(c.goldenPath, 'utf8');
    if (golden.startsWith('# denied')) {
      t.equal(response.allowed, false, 'denied');
      t.match(
        response.status?.message ?? '',
        golden.replace(/^# denied \(([^)]+)\): Pod [^:]+: /, '').trim(),
        'same denial message',
      );
      return;
    }
    t.equal(response.allowed, true);
    const patched = response.patch
      ? fjp.applyPatch(structuredClone(pod), JSON.parse(Buffer.from(response.patch, 'base64').toString())).newDocument
      : pod;
    const expected = injectObjects(c.objects, c.options).find((r) => r.object.kind === 'Pod')!.object;
    t.same(patched, expected, 'patched pod equals the pure injector output');
  });
}
