// Every object the project ships in manifests/ (both kustomizations) is one
// the real API server accepts: each is created with dryRun=All, which runs
// defaulting, validation and admission without storing anything.
import { KubernetesObjectApi, type KubernetesObject } from '@kubernetes/client-node';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { applyObjects, MANIFESTS, readManifest } from '../../src/local/components.js';
import { startControlPlane } from '../env/harness.js';

/** The files a kustomization lists, relative to manifests/. */
function kustomizationFiles(dir: string): string[] {
  const k = parse(readFileSync(path.join(MANIFESTS, dir, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
  return k.resources.map((r) => path.join(dir, r));
}

t.test("shipped manifests pass the API server's validation", async (t) => {
  const files = [...kustomizationFiles('.'), ...kustomizationFiles('node')];
  const yamlFiles = [
    ...readdirSync(MANIFESTS).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml'),
    ...readdirSync(path.join(MANIFESTS, 'node'))
      .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
      .map((f) => `node/${f}`),
  ];
  t.same(
    [...yamlFiles].sort(),
    [...files].map((f) => path.normalize(f)).sort(),
    'every manifest file is in a kustomization',
  );

  const cp = await startControlPlane(t);
  const admin = cp.adminKubeConfig();
  await applyObjects(admin, readManifest('namespace.yaml'));
  const api = KubernetesObjectApi.makeApiClient(admin);
  for (const file of files) {
    // The namespace itself was created for real above, so its namespaced objects can be tried.
    for (const obj of readManifest(file).filter((o) => o.kind !== 'Namespace')) {
      const what = `${file}: ${obj.kind} ${obj.metadata?.name}`;
      // As kustomize does: the kustomization's namespace for namespaced objects that name none.
      const body = {
        ...obj,
        metadata: { ...obj.metadata, namespace: obj.metadata?.namespace ?? 'juicefs-system' },
      } as KubernetesObject;
      await t.resolves(api.create(body, undefined, 'All'), what);
    }
  }
  // The dry run does validate: the node DaemonSet without privilege is refused (Bidirectional propagation needs it).
  const ds = readManifest('node/node.yaml').find((o) => o.kind === 'DaemonSet') as KubernetesObject & {
    spec: { template: { spec: { containers: { securityContext?: object }[] } } };
  };
  const unprivileged = structuredClone(ds);
  unprivileged.metadata!.namespace = 'juicefs-system';
  delete unprivileged.spec.template.spec.containers[0].securityContext;
  await t.rejects(api.create(unprivileged, undefined, 'All'), { code: 422 }, 'an invalid variant is refused');
});
