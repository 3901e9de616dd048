// Mount Pod goldens: test/testdata/mount-pod/<case>.yaml (a JuiceFS PV, its
// node-publish Secret and optionally the juicefs-csi-driver-config ConfigMap)
// → <case>.mount-pod.yaml: the plan the node makes when a pod on it publishes
// the PV in Mount Pod mode (the Mount Pod with its hash, labels and
// annotations, its host mount point, and the cache cleanup Job when the PV
// asks for one), or the denial.
import type { KubernetesObject, V1Job, V1PersistentVolume, V1Pod, V1Secret } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { configFromObjects } from '../../src/config/options.js';
import { ATTR } from '../../src/contract/keys.js';
import { summariseSecret } from '../../src/contract/secret-copy.js';
import { DenyError } from '../../src/inject/errors.js';
import { parseManifests, stringifyManifests } from '../../src/offline/inject-manifests.js';
import { planCleanCacheJob, wantsCacheCleanup } from '../../src/node/clean-cache.js';
import { planMountPod } from '../../src/node/mount-pod.js';
import { TESTDATA } from './golden.js';

export const MOUNT_POD_TESTDATA = path.join(TESTDATA, 'mount-pod');
export const MOUNT_POD_GOLDEN_SUFFIX = '.mount-pod.yaml';

/** Where the node runs its Mount Pods in these cases (the CLI's default namespace). */
const NODE = { name: 'node-1', namespace: 'juicefs-system' };

export interface MountPodCase {
  name: string;
  goldenPath: string;
  objects: KubernetesObject[];
}

export function readMountPodCase(name: string): MountPodCase {
  const file = path.join(MOUNT_POD_TESTDATA, `${name}.yaml`);
  return {
    name,
    goldenPath: path.join(MOUNT_POD_TESTDATA, `${name}${MOUNT_POD_GOLDEN_SUFFIX}`),
    objects: parseManifests(readFileSync(file, 'utf8'), path.basename(file)),
  };
}

interface Planned {
  pvName: string;
  pod: V1Pod;
  hash: string;
  mountPoint: string;
  warnings: string[];
  cleanup?: V1Job;
}

/**
 * The one place these goldens call product code. The PV's CSI source becomes
 * what the kubelet sends in NodePublishVolume (volume_context = its
 * volumeAttributes, mount_flags = its mountOptions, read-only for a
 * ReadOnlyMany-only PV, the Secret's values), which the Mount Pod manager
 * (src/node/mount-pods.ts `publish`) turns into the plan's input.
 */
function planCase(objects: KubernetesObject[]): Planned {
  const pv = objects.find((o) => o.kind === 'PersistentVolume') as V1PersistentVolume;
  const csi = pv.spec!.csi!;
  const ref = csi.nodePublishSecretRef!;
  const source = objects.find(
    (o) => o.kind === 'Secret' && o.metadata?.name === ref.name && o.metadata?.namespace === ref.namespace,
  ) as V1Secret;
  const secrets: Record<string, string> = {
    ...Object.fromEntries(Object.entries(source.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()])),
    ...source.stringData,
  };
  const modes = pv.spec!.accessModes ?? [];
  const readOnly = csi.readOnly === true || (modes.length > 0 && modes.every((m) => m === 'ReadOnlyMany'));
  const volumeContext = csi.volumeAttributes ?? {};

  // As MountPodManager.ensureSecret names the Secret copy it makes in its namespace (not exported).
  const data = Object.fromEntries(Object.entries(secrets).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
  const digest = createHash('sha256')
    .update(JSON.stringify(Object.entries(data).sort()))
    .digest('hex')
    .slice(0, 8);
  const secretName = `juicefs-${csi.volumeHandle}`.slice(0, 230).replace(/[^a-z0-9.-]/g, '-') + `-${digest}-secret`;

  const plan = planMountPod({
    nodeName: NODE.name,
    namespace: NODE.namespace,
    volume: {
      podVolumeName: 'data',
      pvcName: '',
      pvcLabels: {},
      pvcAnnotations: {},
      pvName: csi.volumeHandle,
      subdir: volumeContext[ATTR.subPath],
      readOnly,
      attributes: volumeContext,
      mountOptions: pv.spec!.mountOptions ?? [],
      secret: { name: secretName, ...summariseSecret(data) },
    },
    // The manager reads the ConfigMap of its own namespace.
    options: {
      mode: 'sidecar',
      config: configFromObjects(objects.filter((o) => o.metadata?.namespace === NODE.namespace)),
    },
  });
  return {
    ...plan,
    pvName: pv.metadata!.name!,
    cleanup: wantsCacheCleanup(plan.pod) ? planCleanCacheJob(plan.pod) : undefined,
  };
}

export function renderMountPodGolden(c: MountPodCase): string {
  let p: Planned;
  try {
    p = planCase(c.objects);
  } catch (err) {
    if (err instanceof DenyError) return `# denied (${err.code}): ${err.message}\n`;
    throw err;
  }
  const header = [
    `# Mount Pod of PersistentVolume ${p.pvName} on ${NODE.name}: hash ${p.hash}, mount point ${p.mountPoint}`,
    ...p.warnings.map((w) => `# warning: ${w}`),
    ...(p.cleanup ? ['# its deletion runs the cache cleanup Job that follows it'] : []),
  ];
  return `${header.join('\n')}\n${stringifyManifests(p.cleanup ? [p.pod, p.cleanup] : [p.pod])}`;
}
