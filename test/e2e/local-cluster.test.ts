// `npm start` (jfs-sidecar local) as a newcomer runs it: the process prints
// KUBECONFIG=…, the examples apply, sidecar mode injects, Mount Pod mode
// publishes through one shared Mount Pod (node service + kubelet stand-in),
// and Ctrl-C leaves no process, mount or folder behind.
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { readMounts } from '../../src/juicefs/mounts.js';
import { applyObjects, CLI } from '../../src/local/components.js';
import { PACKAGE_ROOT as PROJECT_ROOT } from '../../src/util/package-root.js';
import { isPodReady, mountPointOf, referencesOf } from '../../src/node/mount-pod-plan.js';
import { parseManifests } from '../../src/offline/inject-manifests.js';
import { eventually } from '../env/harness.js';

t.setTimeout(15 * 60 * 1000);

const examples = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .flatMap((f) => parseManifests(readFileSync(path.join(dir, f), 'utf8'), f));

t.test(
  'npm start: the local cluster, both modes, clean stop',
  { skip: process.getuid?.() !== 0 ? 'Mount Pod mode needs root' : false },
  async (t) => {
    const child = spawn(process.execPath, [CLI, 'local'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOG_LEVEL: 'warn' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    t.teardown(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
      if (!t.passing()) t.comment(`npm start stderr (last lines):\n${stderr.split('\n').slice(-30).join('\n')}`);
    });

    const kubeconfig = await eventually(
      async () => /^KUBECONFIG=(.+)$/m.exec(stdout)?.[1],
      10 * 60 * 1000,
      'KUBECONFIG= printed',
    );
    const clusterDir = path.dirname(kubeconfig);
    t.match(stdout, /kubectl apply -f .*examples\/mount-pod-mode\//, 'the hint shows Mount Pod mode');
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);

    await applyObjects(kc, examples(path.join(PROJECT_ROOT, 'examples')));
    await applyObjects(kc, examples(path.join(PROJECT_ROOT, 'examples/mount-pod-mode')));

    await t.test('sidecar mode: PVC Bound, pod injected', async (t) => {
      await eventually(
        async () =>
          (await core.readNamespacedPersistentVolumeClaim({ name: 'data', namespace: 'demo' })).status?.phase ===
          'Bound',
        120_000,
        'demo/data Bound',
      );
      const app = await core.readNamespacedPod({ name: 'app', namespace: 'demo' });
      t.ok(
        [...(app.spec?.initContainers ?? []), ...(app.spec?.containers ?? [])].some((c) => c.name === 'jfs-mount'),
        'jfs-mount sidecar injected',
      );
    });

    let mountPoint: string | undefined;
    await t.test('Mount Pod mode: two pods share one Mount Pod, through the stand-in', async (t) => {
      for (const name of ['writer', 'reader']) {
        await eventually(
          async () => isPodReady(await core.readNamespacedPod({ name, namespace: 'demo-mp' })),
          180_000,
          `demo-mp/${name} Ready`,
        );
      }
      const pods: V1Pod[] = (
        await core.listNamespacedPod({
          namespace: 'juicefs-system',
          labelSelector: 'app.kubernetes.io/name=juicefs-mount',
        })
      ).items;
      t.equal(pods.length, 1, 'one Mount Pod');
      const targets = referencesOf(pods[0]);
      t.equal(targets.length, 2, 'a reference per app pod');
      for (const target of targets)
        t.ok(
          target.startsWith(path.join(clusterDir, 'kubelet/pods/')),
          `kubelet-shaped target under the cluster folder: ${target}`,
        );
      t.ok(
        readMounts().some((m) => m.mountPoint === targets[0] && m.fsType === 'fuse.juicefs'),
        'target is a JuiceFS mount',
      );
      mountPoint = mountPointOf(pods[0]);
    });

    child.kill('SIGINT');
    t.equal(await exited, 0, 'Ctrl-C stops it cleanly');
    t.notOk(existsSync(clusterDir), 'cluster folder removed');
    t.notOk(
      readMounts().some((m) => m.mountPoint.startsWith(clusterDir)),
      'no mount left under it',
    );
    t.ok(mountPoint, 'the Mount Pod had a mount point');
    t.notOk(
      readMounts().some((m) => m.mountPoint === mountPoint),
      `the Mount Pod's mount (${mountPoint}) is gone`,
    );
  },
);
