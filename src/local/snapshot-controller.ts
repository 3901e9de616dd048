// The cluster's half of VolumeSnapshots, which a distribution installs and
// this project does not ship: the snapshot CRDs and snapshot-controller (both
// from github.com/kubernetes-csi/external-snapshotter, the CRDs read from the
// Go module build.sh downloaded, the controller built by it), run here as a
// process with the admin's kubeconfig, as kube-controller-manager is.
import { CustomObjectsApi, type KubernetesObject } from '@kubernetes/client-node';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseManifests } from '../offline/inject-manifests.js';
import { PACKAGE_ROOT } from '../util/package-root.js';
import { applyObjects, ManagedProcess } from './components.js';
import { ensureBinaries, type ControlPlane } from './control-plane.js';

const SNAPSHOTTER_MODULE = path.join(PACKAGE_ROOT, 'test/env/go/csi-snapshotter');
const CLIENT_MODULE = 'github.com/kubernetes-csi/external-snapshotter/client/v8';
/**
 * The VolumeSnapshot kinds, and the group snapshot ones, which the controller does not offer but snapshot-controller
 * waits for at its start (about 25 s of retries without them).
 */
const CRD_FILES = /^(group)?snapshot\.storage\.k8s\.io_volume(group)?snapshot(classe|content)?s\.yaml$/;

/** The snapshot CRDs, as the pinned external-snapshotter's client module holds them. */
export function snapshotCrds(): KubernetesObject[] {
  const res = spawnSync('go', ['list', '-m', '-f', '{{.Dir}}', CLIENT_MODULE], {
    cwd: SNAPSHOTTER_MODULE,
    encoding: 'utf8',
  });
  const dir = res.stdout.trim();
  if (res.status !== 0 || !dir)
    throw new Error(`cannot find ${CLIENT_MODULE} (run test/env/build.sh snapshot-controller): ${res.stderr}`);
  const crdDir = path.join(dir, 'config/crd');
  const files = readdirSync(crdDir).filter((f) => CRD_FILES.test(f));
  if (files.length !== 6) throw new Error(`expected 6 snapshot CRDs in ${crdDir}, found ${files.join(', ')}`);
  return files.flatMap((f) => parseManifests(readFileSync(path.join(crdDir, f), 'utf8'), f));
}

/** Applies the CRDs, waits until they are served, and starts snapshot-controller. */
export async function startSnapshotController(cp: ControlPlane, logFile: string): Promise<ManagedProcess> {
  const bins = ensureBinaries(['snapshot-controller']);
  const admin = cp.adminKubeConfig();
  await applyObjects(admin, snapshotCrds());
  // A new CRD is served a moment after it is created.
  const custom = admin.makeApiClient(CustomObjectsApi);
  for (let waited = 0; ; waited += 200) {
    const served = await custom
      .listClusterCustomObject({ group: 'snapshot.storage.k8s.io', version: 'v1', plural: 'volumesnapshotclasses' })
      .then(
        () => true,
        () => false,
      );
    if (served) break;
    if (waited > 30_000) throw new Error('the snapshot CRDs were not served within 30 s');
    await sleep(200);
  }
  return new ManagedProcess(
    bins['snapshot-controller'],
    [`--kubeconfig=${cp.adminKubeconfigPath}`, '--leader-election=false', '--v=2'],
    logFile,
    true,
  ).start();
}
