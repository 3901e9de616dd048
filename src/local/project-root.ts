// The project's root folder, found from this file whether it runs compiled
// (dist/src/…) or from source (src/…, under the test runner).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'jfs-sidecar')
      return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('cannot find the jfs-sidecar package root');
    dir = parent;
  }
}

export const PROJECT_ROOT = findRoot();
export const PACKAGE_VERSION = (
  JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }
).version;
