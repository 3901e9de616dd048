// manifests/after-admission.yaml recognises injected containers by name alone
// (a PodExecOptions carries no labels). The name pattern must cover every
// container the injector adds, in every golden case, and be the same in both
// policies; the e2e test security-after-admission.test.ts runs the policies.
import type { KubernetesObject, V1Pod, V1PodTemplateSpec } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { FORMAT_INIT_NAME, SIDECAR_NAME } from '../../src/contract/keys.js';
import { readManifest } from '../../src/local/components.js';
import { listCases } from '../golden/golden.js';

interface Policy extends KubernetesObject {
  spec: { variables?: { name: string; expression: string }[]; validations: { expression: string }[] };
}

const policies = readManifest('after-admission.yaml').filter(
  (o): o is Policy => o.kind === 'ValidatingAdmissionPolicy',
);
const updatePolicy = policies.find((p) => p.metadata?.name === 'jfs-sidecar-injected-pods')!;
const execPolicy = policies.find((p) => p.metadata?.name === 'jfs-sidecar-no-exec')!;
const variable = updatePolicy.spec.variables!.find((v) => v.name === 'injected')!.expression;
const pattern = /^'(.*)'$/.exec(variable)![1];
const injected = new RegExp(pattern);

// The CONNECT side is two policies: no exec into the injected containers, and the FUSE fd holder's own (the
// upgrader's one exec into it); together they cover the update policy's names, no more.
const holderExecPolicy = policies.find((p) => p.metadata?.name === 'jfs-sidecar-fd-holder-exec')!;
const quoted = (expr: string) => new RegExp(/matches\('([^']*)'\)/.exec(expr)![1]);
const connectPatterns = [
  quoted(execPolicy.spec.validations[0].expression),
  quoted(
    (holderExecPolicy.spec as unknown as { matchConditions: { expression: string }[] }).matchConditions[0].expression,
  ),
];

t.test('the CONNECT policies together use the update policy’s name pattern', async (t) => {
  for (const name of [
    'jfs-mount',
    'jfs-mount-3',
    'jfs-format',
    'jfs-credentials-1',
    'jfs-fd-holder',
    'jfs-fd-holder-1',
    'app',
    'jfs-fd-holderx',
    'jfs-mount-a',
    'my-jfs-fd-holder',
  ])
    t.equal(
      connectPatterns.some((p) => p.test(name)),
      injected.test(name),
      name,
    );
});

t.test('the pattern is the injector’s names and no others', async (t) => {
  for (const name of [
    SIDECAR_NAME,
    `${SIDECAR_NAME}-1`,
    `${SIDECAR_NAME}-12`,
    FORMAT_INIT_NAME,
    `${FORMAT_INIT_NAME}-2`,
  ])
    t.ok(injected.test(name), `${name} is injected`);
  for (const name of ['app', 'jfs', 'jfs-mountx', 'my-jfs-mount', 'jfs-mount-', 'jfs-mount-a', 'jfs-format-1-x'])
    t.notOk(injected.test(name), `${name} is not`);
});

function podSpecs(text: string): NonNullable<V1Pod['spec']>[] {
  return parseAllDocuments(text.replace(/^#.*\n/gm, ''))
    .map((d) => d.toJS() as KubernetesObject & { spec?: { template?: V1PodTemplateSpec } & V1Pod['spec'] })
    .filter((o) => o?.kind === 'Pod' || o?.spec?.template)
    .map((o) => (o.kind === 'Pod' ? o.spec! : o.spec!.template!.spec!));
}

const names = (spec: NonNullable<V1Pod['spec']>) => [
  ...(spec.initContainers ?? []).map((c) => c.name),
  ...spec.containers.map((c) => c.name),
];

t.test('every container a golden case adds matches the pattern', async (t) => {
  for (const c of listCases()) {
    const before = new Set(podSpecs(readFileSync(c.inputPath, 'utf8')).flatMap(names));
    const added = podSpecs(readFileSync(c.goldenPath, 'utf8'))
      .flatMap(names)
      .filter((n) => !before.has(n));
    for (const name of added) t.ok(injected.test(name), `${c.name}: ${name}`);
  }
});
