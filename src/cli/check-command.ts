// `jfs-sidecar check -f FILE… | --kubeconfig FILE [-o table|json]`: the migration check of src/offline/check.ts,
// on YAML files (or stdin) or on what a cluster holds. Exit code: 0 nothing refused, 1 something refused, 2 the
// input could not be read.
import { AdmissionregistrationV1Api, CoreV1Api, StorageV1Api, type KubernetesObject } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { CONFIG_MAP_NAME, CSI_DRIVER_NAME } from '../contract/keys.js';
import { loadKubeConfig } from '../k8s/kubeconfig.js';
import { checkObjects, REFERENCE_WEBHOOK_NAME, renderCheckTable, type CheckRow } from '../offline/check.js';
import { ManifestError, parseManifests } from '../offline/inject-manifests.js';
import type { CommandIo } from './inject-command.js';

export interface CheckCommandOptions {
  files: string[];
  kubeconfig?: string;
  output: 'table' | 'json';
}

/** The objects a cluster holds that a JuiceFS CSI user's migration concerns (Secrets: only those referenced). */
export async function clusterObjects(kubeconfig: string): Promise<KubernetesObject[]> {
  const kc = loadKubeConfig(kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const storage = kc.makeApiClient(StorageV1Api);
  const admission = kc.makeApiClient(AdmissionregistrationV1Api);
  const kind = <T extends KubernetesObject>(items: T[], k: string, apiVersion: string) =>
    items.map((o) => ({ ...o, kind: k, apiVersion }));
  const [cms, scs, pvs, pvcs, hooks] = await Promise.all([
    core.listConfigMapForAllNamespaces({ fieldSelector: `metadata.name=${CONFIG_MAP_NAME}` }),
    storage.listStorageClass(),
    core.listPersistentVolume(),
    core.listPersistentVolumeClaimForAllNamespaces(),
    admission.listMutatingWebhookConfiguration({ fieldSelector: `metadata.name=${REFERENCE_WEBHOOK_NAME}` }),
  ]);
  const classes = scs.items.filter((s) => s.provisioner === CSI_DRIVER_NAME);
  const volumes = pvs.items.filter((p) => p.spec?.csi?.driver === CSI_DRIVER_NAME);
  const classNames = new Set(classes.map((s) => s.metadata?.name));
  const volumeNames = new Set(volumes.map((p) => p.metadata?.name));
  const claims = pvcs.items.filter(
    (c) => classNames.has(c.spec?.storageClassName ?? '') || volumeNames.has(c.spec?.volumeName ?? ''),
  );
  const secretRefs = new Map<string, { namespace: string; name: string }>();
  const addRef = (namespace: string | undefined, name: string | undefined) => {
    if (namespace && name) secretRefs.set(`${namespace}/${name}`, { namespace, name });
  };
  for (const pv of volumes)
    addRef(pv.spec?.csi?.nodePublishSecretRef?.namespace, pv.spec?.csi?.nodePublishSecretRef?.name);
  for (const sc of classes) {
    const p = sc.parameters ?? {};
    addRef(p['csi.storage.k8s.io/node-publish-secret-namespace'], p['csi.storage.k8s.io/node-publish-secret-name']);
    addRef(p['csi.storage.k8s.io/provisioner-secret-namespace'], p['csi.storage.k8s.io/provisioner-secret-name']);
  }
  const secrets = await Promise.all(
    [...secretRefs.values()].map((r) =>
      core.readNamespacedSecret(r).then(
        (s) => ({ ...s, kind: 'Secret', apiVersion: 'v1' }),
        () => undefined,
      ),
    ),
  );
  return [
    ...kind(cms.items, 'ConfigMap', 'v1'),
    ...kind(classes, 'StorageClass', 'storage.k8s.io/v1'),
    ...kind(volumes, 'PersistentVolume', 'v1'),
    ...kind(claims, 'PersistentVolumeClaim', 'v1'),
    ...secrets.filter((s) => s !== undefined),
    ...kind(hooks.items, 'MutatingWebhookConfiguration', 'admissionregistration.k8s.io/v1'),
  ];
}

function render(rows: CheckRow[], output: CheckCommandOptions['output']): string {
  if (output === 'json') {
    const count = (s: CheckRow['status']) => rows.filter((r) => r.status === s).length;
    return `${JSON.stringify({ rows, honoured: count('honoured'), differs: count('differs'), refused: count('refused') }, null, 2)}\n`;
  }
  return renderCheckTable(rows);
}

/** Returns the exit code. */
export async function checkCommand(opts: CheckCommandOptions, io: CommandIo): Promise<number> {
  try {
    if (!opts.files.length && !opts.kubeconfig)
      throw new ManifestError('no input: give -f FILE (or -f - for standard input), or --kubeconfig FILE');
    const objects = [
      ...opts.files.flatMap((f) =>
        parseManifests(f === '-' ? io.readStdin() : readFileSync(f, 'utf8'), f === '-' ? 'stdin' : f),
      ),
      ...(opts.kubeconfig ? await clusterObjects(opts.kubeconfig) : []),
    ];
    const rows = checkObjects(objects);
    io.stdout(render(rows, opts.output));
    return rows.some((r) => r.status === 'refused') ? 1 : 0;
  } catch (err) {
    if (err instanceof ManifestError || (err as NodeJS.ErrnoException).code === 'ENOENT') {
      io.stderr(`error: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  }
}
