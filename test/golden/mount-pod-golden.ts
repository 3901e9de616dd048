// Mount Pod goldens: test/testdata/mount-pod/<case>.yaml (a JuiceFS PV, its
// node-publish Secret and optionally the juicefs-csi-driver-config ConfigMap)
// → <case>.mount-pod.yaml: the plan the node makes when a pod on it publishes
// the PV in Mount Pod mode (the Mount Pod with its hash, labels and
// annotations, its host mount point, and the cache cleanup Job when the PV
// asks for one), or the denial.
import type {
  KubernetesObject,
  V1ConfigMap,
  V1Node,
  V1Job,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1Secret,
} from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { configFromObjects } from '../../src/config/options.js';
import { ATTR, SYSTEM_NAMESPACE } from '../../src/contract/keys.js';
import { mountPodSecretName, summariseSecret } from '../../src/contract/secret-copy.js';
import { DenyError } from '../../src/contract/deny.js';
import { parseManifests, stringifyManifests } from '../../src/offline/inject-manifests.js';
import { planCleanCacheJob, wantsCacheCleanup } from '../../src/node/clean-cache.js';
import { planMountPod } from '../../src/node/mount-pod-plan.js';
import { inheritanceOf } from '../../src/node/mount-pod-inherit.js';
import { pvcIdentity } from '../../src/resolve/resolve.js';
import { TESTDATA } from './golden.js';

export const MOUNT_POD_TESTDATA = path.join(TESTDATA, 'mount-pod');
export const MOUNT_POD_GOLDEN_SUFFIX = '.mount-pod.yaml';

/** Where the node runs its Mount Pods in these cases (the CLI's default namespace). */
const NODE = { name: 'node-1', namespace: SYSTEM_NAMESPACE };

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

/** What the kubelet sends in NodePublishVolume for a case's PV (the fields the Mount Pod manager reads). */
interface PublishRequest {
  volumeId: string;
  readOnly: boolean;
  volumeContext: Record<string, string>;
  mountFlags: string[];
  secrets: Record<string, string>;
}

function publishRequestOf(objects: KubernetesObject[]): PublishRequest {
  const pv = objects.find((o) => o.kind === 'PersistentVolume') as V1PersistentVolume;
  const csi = pv.spec!.csi!;
  const ref = csi.nodePublishSecretRef!;
  const secret = objects.find(
    (o) => o.kind === 'Secret' && o.metadata?.name === ref.name && o.metadata?.namespace === ref.namespace,
  ) as V1Secret;
  const modes = pv.spec!.accessModes ?? [];
  return {
    volumeId: csi.volumeHandle,
    // A ReadOnlyMany-only PV is published MULTI_NODE_READER_ONLY, which the node service takes as read-only.
    readOnly: csi.readOnly === true || (modes.length > 0 && modes.every((m) => m === 'ReadOnlyMany')),
    volumeContext: csi.volumeAttributes ?? {},
    mountFlags: pv.spec!.mountOptions ?? [],
    secrets: {
      ...Object.fromEntries(
        Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]),
      ),
      ...secret.stringData,
    },
  };
}

/**
 * The one place these goldens call product code: what the Mount Pod manager
 * (src/node/mount-pods.ts `publish`) does with a publish request before it
 * writes to the API, with the ConfigMap among the objects of its namespace.
 */
function planPublish(
  req: PublishRequest,
  claim: V1PersistentVolumeClaim | undefined,
  nodeObjects: KubernetesObject[],
  allObjects: KubernetesObject[],
): Omit<Planned, 'pvName'> {
  const data = Object.fromEntries(Object.entries(req.secrets).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
  const secretName = mountPodSecretName(req.volumeId, data);
  // The node service's own pod (a Pod of its namespace among the case's objects), its Node and env (a ConfigMap
  // named node-env stands for the env of its container), as the node service reads them at start.
  const nodePod = nodeObjects.find((o): o is V1Pod => o.kind === 'Pod');
  // A case's Node of this name: its labels (mountPodPatch nodeSelectors) and hostname label (enableNodeSelector).
  const node = allObjects.find((o): o is V1Node => o.kind === 'Node' && o.metadata?.name === NODE.name);
  const env = (nodeObjects.find((o) => o.kind === 'ConfigMap' && o.metadata?.name === 'node-env') as V1ConfigMap)?.data;
  const plan = planMountPod({
    nodeName: NODE.name,
    inherit: inheritanceOf(nodePod, node, env ?? {}).inheritance,
    namespace: NODE.namespace,
    volume: {
      pvName: req.volumeId,
      subdir: req.volumeContext[ATTR.subPath],
      readOnly: req.readOnly,
      attributes: req.volumeContext,
      mountOptions: req.mountFlags,
      secret: { name: secretName, ...summariseSecret(data) },
    },
    claim: claim ? pvcIdentity(claim) : undefined,
    options: { config: configFromObjects(nodeObjects) },
    node: node ? { labels: node.metadata?.labels ?? {} } : undefined,
  });
  return { ...plan, cleanup: wantsCacheCleanup(plan.pod) ? planCleanCacheJob(plan.pod) : undefined };
}

/** The PVC the PV's claimRef names, among the case's objects (as the node reads it from the API). */
function claimOf(objects: KubernetesObject[]): V1PersistentVolumeClaim | undefined {
  const pv = objects.find((o) => o.kind === 'PersistentVolume') as V1PersistentVolume;
  const ref = pv.spec?.claimRef;
  return objects.find(
    (o): o is V1PersistentVolumeClaim =>
      o.kind === 'PersistentVolumeClaim' &&
      o.metadata?.name === ref?.name &&
      o.metadata?.namespace === ref?.namespace &&
      (!ref?.uid || o.metadata?.uid === ref.uid),
  );
}

function planCase(objects: KubernetesObject[]): Planned {
  const pvName = objects.find((o) => o.kind === 'PersistentVolume')!.metadata!.name!;
  const nodeObjects = objects.filter((o) => o.metadata?.namespace === NODE.namespace);
  return { pvName, ...planPublish(publishRequestOf(objects), claimOf(objects), nodeObjects, objects) };
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
