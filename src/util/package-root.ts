// The installed package's own folder and version, found from this file the same
// way wherever it runs: a checkout (src/… under the test runner, or dist/src/…)
// or the image (/app/dist/src/…, with /app/package.json and /app/proto beside
// dist, as the Dockerfile copies them).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface PackageJson {
  name?: string;
  version?: string;
}

function findRoot(): { root: string; pkg: PackageJson } {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as PackageJson;
      if (pkg.name === 'jfs-sidecar') return { root: dir, pkg };
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('cannot find the jfs-sidecar package root (its package.json)');
    dir = parent;
  }
}

const found = findRoot();

/** The folder holding package.json, proto/ and dist/ (or src/). */
export const PACKAGE_ROOT = found.root;
/** package.json's version: the CLI's --version and the CSI plugin's vendor_version. */
export const PACKAGE_VERSION = found.pkg.version ?? '0.0.0';
