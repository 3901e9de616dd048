// The pure layers import only downwards: contract < config < mount < resolve < inject
// (DESIGN.md, "Where things live"), and never a shell or the harness.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';

const SRC = new URL('../../src/', import.meta.url).pathname;
const LAYERS = ['contract', 'config', 'mount', 'resolve', 'inject'];
// Known, with why: each should go when its reason does.
const ALLOWED = new Set([
  // InjectMode is moving down to contract/ (issue 10, item 1).
  'config/options.ts -> inject/types.js',
  // The one seam the webhook and the offline command share: resolution, then injection.
  'resolve/inject-with-view.ts -> inject/inject.js',
  'resolve/inject-with-view.ts -> inject/types.js',
]);

t.test('pure layers import only downwards', async (t) => {
  const wrong: string[] = [];
  for (const layer of LAYERS) {
    for (const file of readdirSync(path.join(SRC, layer)).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(path.join(SRC, layer, file), 'utf8');
      for (const m of text.matchAll(/from '(\.\.?\/[^']+)'/g)) {
        const target = path.relative(SRC, path.resolve(SRC, layer, m[1]));
        const targetLayer = target.split(path.sep)[0];
        const edge = `${layer}/${file} -> ${target}`;
        if (ALLOWED.has(edge)) continue;
        const rank = LAYERS.indexOf(targetLayer);
        if (rank < 0 || rank > LAYERS.indexOf(layer)) wrong.push(edge);
      }
    }
  }
  t.same(wrong, [], 'no import points up a layer or out to a shell');
});
