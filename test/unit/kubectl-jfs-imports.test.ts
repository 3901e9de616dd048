// The kubectl plugin's import graph stays small: from src/cli/kubectl-jfs.ts, static and dynamic imports reach
// only its own folder and the pure modules below it, never the webhook, controller, node, harness or their
// adapters (a plugin should start fast and carry nothing it does not run).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import ts from 'typescript';

const ROOT = path.resolve(import.meta.dirname, '../..');
const ENTRY = 'src/cli/kubectl-jfs.ts';
/** Folders the plugin may load, and the one adapter file it uses (the API's status codes). */
const ALLOWED = ['kubectl', 'diagnose', 'upgrade', 'contract', 'util', 'config'];
const ALLOWED_FILES = [ENTRY, 'src/k8s/errors.ts'];

function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(path.join(ROOT, file), 'utf8'), true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((s) => s.startsWith('.'))
    .map((s) => path.relative(ROOT, path.resolve(path.dirname(path.join(ROOT, file)), s)).replace(/\.js$/, '.ts'))
    .filter((f) => existsSync(path.join(ROOT, f)));
}

t.test('kubectl-jfs loads only src/kubectl/ and the pure modules', async (t) => {
  const seen = new Set<string>();
  const next = [ENTRY];
  while (next.length) {
    const f = next.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    next.push(...importsOf(f));
  }
  const outside = [...seen].filter(
    (f) => !ALLOWED_FILES.includes(f) && !ALLOWED.includes(/^src\/([^/]+)\//.exec(f)?.[1] ?? ''),
  );
  t.same(outside, [], 'no file of the other shells or their adapters');
  t.ok(seen.has('src/diagnose/diagnose.ts'), 'the diagnosis core is loaded (the walk is sound)');
});
