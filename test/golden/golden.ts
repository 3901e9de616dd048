// Golden cases: test/testdata/<case>.yaml (a pod or workload plus the PVCs,
// PVs, StorageClasses, Secrets, Namespace and ConfigMap it needs) →
// <case>.injected.yaml (the injected pod or workload, with the outcome and
// warnings as leading comments). Each case is rendered twice, through the pure
// injector and through the webhook, and both must equal the one golden file.
// Shared by the golden tests and the e2e suite.
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import fjp from 'fast-json-patch';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { parseAllDocuments, stringify } from 'yaml';
import type { Test } from 'tap';
import { configFromObjects, namespaceMode } from '../../src/config/options.js';
import { DenyError } from '../../src/contract/deny.js';
import { describePod } from '../../src/inject/inject.js';
import type { InjectOptions } from '../../src/inject/types.js';
import {
  describeObject,
  injectObjects,
  parseManifests,
  podTemplateOf,
  stringifyManifests,
  type ObjectResult,
} from '../../src/offline/inject-manifests.js';
import { ObjectView } from '../../src/resolve/object-view.js';
import { createMetrics } from '../../src/webhook/metrics.js';
import { buildServer, MUTATE_PATHS } from '../../src/webhook/server.js';

export const TESTDATA = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../testdata');
const INPUT_SUFFIX = '.yaml';
export const GOLDEN_SUFFIX = '.injected.yaml';
const UPDATE = process.env.UPDATE_GOLDEN === '1';

// ---- Case directories, shared by every golden layer -------------------------

/**
 * Checks a case directory and returns its case names: `<name>.yaml` inputs,
 * each with its `<name><goldenSuffix>`. An empty directory, a golden file
 * without its input or any other file fails (UPDATE_GOLDEN=1 deletes goldens
 * whose input is gone). Subdirectories are other layers' and not looked at.
 */
export function checkCaseDirectory(t: Test, dir: string, goldenSuffix: string): string[] {
  const files = readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => e.name)
    .sort();
  const names = files
    .filter((f) => f.endsWith(INPUT_SUFFIX) && !f.endsWith(goldenSuffix))
    .map((f) => f.slice(0, -INPUT_SUFFIX.length));
  const orphans = files.filter((f) =>
    f.endsWith(goldenSuffix) ? !names.includes(f.slice(0, -goldenSuffix.length)) : !f.endsWith(INPUT_SUFFIX),
  );
  if (UPDATE) {
    for (const f of orphans.filter((f) => f.endsWith(goldenSuffix))) rmSync(path.join(dir, f));
  }
  const left = UPDATE ? orphans.filter((f) => !f.endsWith(goldenSuffix)) : orphans;
  t.ok(names.length > 0, `${path.relative(TESTDATA, dir) || 'testdata'}: cases found (${names.length})`);
  t.same(left, [], 'no golden file without its input, and no other file');
  return names;
}

/** With UPDATE_GOLDEN=1 (`npm run golden:update`), the reference rendering of a case becomes its golden file. */
export function updateGolden(goldenPath: string, rendered: string): void {
  if (UPDATE) writeFileSync(goldenPath, rendered);
}

/** Rendered text against its golden file, both seen through `normalise` when given. */
export function checkGolden(
  t: Test,
  goldenPath: string,
  rendered: string,
  what: string,
  normalise = (text: string) => text,
): void {
  if (!existsSync(goldenPath)) {
    t.fail(`${path.basename(goldenPath)} is missing (run npm run golden:update)`);
    return;
  }
  t.equal(
    normalise(rendered),
    normalise(readFileSync(goldenPath, 'utf8')),
    `${what} equals ${path.basename(goldenPath)}`,
  );
}

/**
 * A golden text with its comment header as it is and every mapping's keys
 * sorted. Key order is not part of an admission result: a JSONPatch adds keys
 * at the end, and the API server stores the pod in its own field order.
 */
export function sortedKeys(text: string): string {
  const header = /^(#.*\n)*/.exec(text)![0];
  const docs = parseAllDocuments(text.slice(header.length)).map((d) => d.toJS() as unknown);
  return header + docs.map((d) => stringify(d, { sortMapEntries: true, lineWidth: 0 })).join('---\n');
}

// ---- Injection cases --------------------------------------------------------

export interface GoldenCase {
  name: string;
  inputPath: string;
  goldenPath: string;
  objects: KubernetesObject[];
  options: InjectOptions;
}

export function readCase(name: string): GoldenCase {
  const inputPath = path.join(TESTDATA, `${name}${INPUT_SUFFIX}`);
  const objects = parseManifests(readFileSync(inputPath, 'utf8'), path.basename(inputPath));
  const ns = objects.find((o) => o.kind === 'Namespace');
  return {
    name,
    inputPath,
    goldenPath: path.join(TESTDATA, `${name}${GOLDEN_SUFFIX}`),
    objects,
    options: {
      mode: namespaceMode(ns) ?? 'sidecar',
      config: configFromObjects(objects),
      broker: GOLDEN_BROKER,
      projectImage: GOLDEN_BROKER.image,
    },
  };
}

/** The credential broker every case may use (a volume with juicefs/credentials: broker, ADR 0010). */
export const GOLDEN_BROKER = {
  url: 'https://jfs-sidecar-credentials.juicefs-system.svc:8444',
  image: 'jfs-sidecar:golden',
  caPem: '-----BEGIN CERTIFICATE-----\ngolden test CA\n-----END CERTIFICATE-----\n',
};

/** The cases, by their input files (for the e2e suite; the golden test checks the directory too). */
export function listCases(): GoldenCase[] {
  return readdirSync(TESTDATA)
    .filter((f) => f.endsWith(INPUT_SUFFIX) && !f.endsWith(GOLDEN_SUFFIX))
    .sort()
    .map((f) => readCase(f.slice(0, -INPUT_SUFFIX.length)));
}

/** The header and documents of a golden file, from each workload's outcome. */
function render(entries: { object: KubernetesObject; outcome: string; warnings: string[] }[]): string {
  const header = entries.flatMap(({ object, outcome, warnings }) => [
    `# ${object.kind} ${object.metadata?.name ?? object.metadata?.generateName}: ${outcome}`,
    ...warnings.map((w) => `# warning: ${w}`),
  ]);
  return `${header.join('\n')}\n${stringifyManifests(entries.map((e) => e.object))}`;
}

const denial = (code: string, message: string) => `# denied (${code}): ${message}\n`;

/** The workloads (pods and pod templates) of a case, which the golden file holds. */
export function isWorkload(result: ObjectResult): boolean {
  return result.outcome !== undefined;
}

/** The pure path: the offline injector over the case's objects. */
export function renderGolden(c: GoldenCase): string {
  let results: ObjectResult[];
  try {
    results = injectObjects(c.objects, c.options);
  } catch (err) {
    if (err instanceof DenyError) return denial(err.code, err.message);
    throw err;
  }
  return render(
    results.filter(isWorkload).map(({ object, outcome: o }) => ({
      object,
      outcome: o!.kind === 'injected' ? 'injected' : `skipped (${o!.code})`,
      warnings: o!.warnings,
    })),
  );
}

// ---- The admission path -----------------------------------------------------

/**
 * The pod the API server sends the webhook for an object: a Pod as it is; for
 * a workload, the pod its controller creates from the template (the webhook
 * only sees pods: a Deployment's ReplicaSet creates `<name>-…` pods carrying
 * the template's metadata and spec). API-server defaulting is left to e2e.
 */
function admittedPod(object: KubernetesObject): V1Pod | undefined {
  if (object.kind === 'Pod') return structuredClone(object);
  const template = podTemplateOf(object);
  if (!template) return undefined;
  const namespace = object.metadata?.namespace ?? 'default';
  const metadata = { ...template.metadata, generateName: `${object.metadata?.name}-`, namespace };
  return structuredClone({ apiVersion: 'v1', kind: 'Pod', metadata, spec: template.spec });
}

/** The object as the golden file shows it: the patched Pod, or the workload with the patched pod as its template. */
function withPod(object: KubernetesObject, pod: V1Pod): KubernetesObject {
  if (object.kind === 'Pod') return pod;
  const copy = structuredClone(object);
  const { generateName: _name, namespace: _ns, ...metadata } = pod.metadata ?? {};
  const template = podTemplateOf(copy)!;
  template.metadata = metadata;
  template.spec = pod.spec;
  return copy;
}

export interface Admitted {
  /** The admission result label: injected, skipped:<code>, denied:<code>, … */
  result: string;
  /** The pod with the response's JSONPatch applied (the pod as sent when there is none). */
  pod: V1Pod;
  patched: boolean;
  message?: string;
  warnings: string[];
}

/** The webhook's HTTP server for one case, on the path the namespace's mode is registered for. */
export function webhookFor(c: GoldenCase) {
  const metrics = createMetrics(false);
  const app = buildServer({
    view: new ObjectView(c.objects),
    config: () => c.options.config,
    broker: c.options.broker,
    projectImage: c.options.projectImage,
    ready: () => true,
    onError: 'deny',
    log: pino({ level: 'silent' }),
    metrics,
  });
  const url = Object.keys(MUTATE_PATHS).find((p) => MUTATE_PATHS[p] === c.options.mode)!;
  let n = 0;
  return {
    async admit(pod: V1Pod): Promise<Admitted> {
      const uid = `${c.name}-${++n}`;
      metrics.admissions.reset();
      const payload = {
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: {
          uid,
          kind: { group: '', version: 'v1', kind: 'Pod' },
          operation: 'CREATE',
          namespace: pod.metadata?.namespace ?? 'default',
          object: pod,
        },
      };
      const res = await app.inject({ method: 'POST', url, payload });
      if (res.statusCode !== 200) throw new Error(`webhook answered ${res.statusCode}: ${res.body}`);
      const { response } = res.json<{ response: Record<string, unknown> & { uid: string } }>();
      if (response.uid !== uid) throw new Error(`response uid ${response.uid} is not the request's ${uid}`);
      // The skip or denial code is not in the response; the admission metric is labelled with it.
      const [counted] = (await metrics.admissions.get()).values;
      const patch = response.patch as string | undefined;
      const sent = JSON.parse(JSON.stringify(pod)) as V1Pod;
      return {
        result: String(counted?.labels.result),
        pod: patch ? fjp.applyPatch(sent, JSON.parse(Buffer.from(patch, 'base64').toString())).newDocument : sent,
        patched: patch !== undefined,
        message: (response.status as { message?: string } | undefined)?.message,
        warnings: (response.warnings as string[] | undefined) ?? [],
      };
    },
    close: () => app.close(),
  };
}

/**
 * The admission path: every pod and workload of the case through the webhook,
 * rendered as a golden file. Returns the text and the patched pods (for the
 * idempotency check).
 */
export async function renderAdmission(
  c: GoldenCase,
  webhook: ReturnType<typeof webhookFor>,
): Promise<{ text: string; patched: V1Pod[] }> {
  const entries: { object: KubernetesObject; outcome: string; warnings: string[] }[] = [];
  const patched: V1Pod[] = [];
  for (const object of c.objects) {
    const pod = admittedPod(object);
    if (!pod) continue;
    const a = await webhook.admit(pod);
    const [kind, code] = a.result.split(':');
    if (kind === 'denied') {
      // The webhook names the pod it was sent; the golden file names the object of the case.
      const prefix = `jfs-sidecar [${code}]: ${describePod(pod)}: `;
      const reason = a.message?.startsWith(prefix) ? a.message.slice(prefix.length) : a.message;
      return { text: denial(code, `${describeObject(object)}: ${reason}`), patched };
    }
    if (a.patched) patched.push(a.pod);
    entries.push({
      object: a.patched ? withPod(object, a.pod) : object,
      outcome: kind === 'skipped' ? `skipped (${code})` : a.result,
      warnings: a.warnings,
    });
  }
  return { text: render(entries), patched };
}
