// Golden cases: test/testdata/<case>.yaml (a pod or workload plus the PVCs,
// PVs, StorageClasses, Secrets, Namespace and ConfigMap it needs) →
// <case>.injected.yaml (the injected pod or workload, with the outcome and
// warnings as leading comments). Shared by the golden test and the e2e suite.
import type { KubernetesObject } from '@kubernetes/client-node';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configFromObjects, namespaceMode } from '../../src/config/options.js';
import { DenyError } from '../../src/contract/deny.js';
import type { InjectOptions } from '../../src/inject/types.js';
import {
  injectObjects,
  parseManifests,
  stringifyManifests,
  type ObjectResult,
} from '../../src/offline/inject-manifests.js';

export const TESTDATA = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../testdata');
const INPUT_SUFFIX = '.yaml';
const GOLDEN_SUFFIX = '.injected.yaml';

export interface GoldenCase {
  name: string;
  inputPath: string;
  goldenPath: string;
  objects: KubernetesObject[];
  options: InjectOptions;
}

export function listCases(): GoldenCase[] {
  return readdirSync(TESTDATA)
    .filter((f) => f.endsWith(INPUT_SUFFIX) && !f.endsWith(GOLDEN_SUFFIX))
    .sort()
    .map((f) => {
      const name = f.slice(0, -INPUT_SUFFIX.length);
      const inputPath = path.join(TESTDATA, f);
      const objects = parseManifests(readFileSync(inputPath, 'utf8'), f);
      const ns = objects.find((o) => o.kind === 'Namespace');
      return {
        name,
        inputPath,
        goldenPath: path.join(TESTDATA, `${name}${GOLDEN_SUFFIX}`),
        objects,
        options: { mode: namespaceMode(ns) ?? 'sidecar', config: configFromObjects(objects) },
      };
    });
}

/** Golden files whose input is gone: stale, and a failure. */
export function orphanGoldens(): string[] {
  const inputs = new Set(listCases().map((c) => c.name));
  return readdirSync(TESTDATA)
    .filter((f) => f.endsWith(GOLDEN_SUFFIX))
    .map((f) => f.slice(0, -GOLDEN_SUFFIX.length))
    .filter((n) => !inputs.has(n));
}

/** The workloads (pods and pod templates) of a case, which the golden file holds. */
export function isWorkload(result: ObjectResult): boolean {
  return result.outcome !== undefined;
}

export function renderGolden(c: GoldenCase): string {
  let results: ObjectResult[];
  try {
    results = injectObjects(c.objects, c.options);
  } catch (err) {
    if (err instanceof DenyError) return `# denied (${err.code}): ${err.message}\n`;
    throw err;
  }
  const header: string[] = [];
  const workloads = results.filter(isWorkload);
  for (const r of workloads) {
    const o = r.outcome!;
    header.push(
      `# ${r.object.kind} ${r.object.metadata?.name ?? r.object.metadata?.generateName}: ${o.kind === 'injected' ? 'injected' : `skipped (${o.code})`}`,
    );
    for (const w of o.warnings) header.push(`# warning: ${w}`);
  }
  return `${header.join('\n')}\n${stringifyManifests(workloads.map((r) => r.object))}`;
}
