// `kubectl jfs upgrade` on the real node, through the plugin as a user runs it: one pod's sidecar upgraded in
// place and watched to Completed (no TTY: one line per change), a rollout by label created, paused, resumed and
// watched to the end, and --recreate on a sidecar pod refused with the reason.
// The real controller (--upgrades) reconciles the JuiceFSUpgrade objects the plugin creates.
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import { applyObjects, readManifest } from '../../src/local/components.js';
import { ensureBinaries } from '../../src/local/control-plane.js';
import { MOUNT_IMAGE, PREVIOUS_MOUNT_IMAGE } from '../../src/local/images.js';
import { ATTR } from '../../src/contract/keys.js';
import { normalizeImage } from '../../src/upgrade/clients.js';
import { appPod, createPod, makeNamespace, podWhen, setGlobalConfig, startSuiteWorld } from '../env/real-node-world.js';

t.setTimeout(25 * 60 * 1000);
const execFileP = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const PLUGIN = path.join(ROOT, 'dist/src/cli/kubectl-jfs.js');
const NS = 'jfs-cli-upgrade';
const OLD_SC = 'juicefs-sc-prev';

const w = await startSuiteWorld(t, { nodePlugin: false, controllerArgs: ['--upgrades'] });
if (w) {
  const kubectl = ensureBinaries(['kubectl']).kubectl;
  const bin = mkdtempSync(path.join(tmpdir(), 'jfs-kubectl-plugin-'));
  t.teardown(() => rmSync(bin, { recursive: true, force: true }));
  chmodSync(PLUGIN, 0o755);
  symlinkSync(PLUGIN, path.join(bin, 'kubectl-jfs'));
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, KUBECONFIG: w.cp.adminKubeconfigPath };
  const jfs = async (...args: string[]) => {
    try {
      const r = await execFileP(kubectl, ['jfs', ...args], { env, timeout: 600_000, maxBuffer: 16 << 20 });
      return { code: 0, out: r.stdout, err: r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : -1, out: e.stdout ?? '', err: e.stderr ?? '' };
    }
  };
  const isReady = (p: V1Pod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
  const clientImage = async (name: string) =>
    (await w.core.readNamespacedPod({ namespace: NS, name })).status?.initContainerStatuses?.find(
      (s) => s.name === 'jfs-mount',
    )?.image;

  const setUp = async () => {
    await applyObjects(w.kc, [...readManifest('upgrade-crd.yaml'), ...readManifest('after-admission.yaml')]);
    const sc = readManifest('storageclass-example.yaml').find((o) => o.kind === 'StorageClass') as KubernetesObject & {
      parameters?: Record<string, string>;
    };
    await applyObjects(w.kc, [
      {
        ...sc,
        metadata: { name: OLD_SC },
        parameters: {
          ...sc.parameters,
          [ATTR.cpuRequest]: '50m',
          [ATTR.memoryRequest]: '64Mi',
          [ATTR.mountImage]: PREVIOUS_MOUNT_IMAGE,
        },
      } as KubernetesObject,
    ]);
    await setGlobalConfig(w, (text) => text.replace(/upgradeReadinessGate: \w+/, 'upgradeReadinessGate: true'));
    await makeNamespace(w, NS, 'sidecar', ['data'], OLD_SC);
    for (const name of ['web-0', 'web-1', 'web-2']) {
      const pod = appPod(NS, name, ['data']);
      pod.metadata!.labels = { app: 'web' };
      await createPod(w, pod);
    }
    for (const name of ['web-0', 'web-1', 'web-2']) await podWhen(w, NS, name, isReady, 240_000, `${name} Ready`, 500);
  };
  const ready = await setUp().then(
    () => true,
    (err: Error) => {
      t.fail(`setup: ${err.message}`);
      return false;
    },
  );
  if (ready) {
    t.test('upgrade POD: one sidecar, watched to Completed', async (t) => {
      t.equal(await clientImage('web-0'), normalizeImage(PREVIOUS_MOUNT_IMAGE), 'web-0 starts on the previous client');
      const r = await jfs('upgrade', 'web-0', '-n', NS, '--image', MOUNT_IMAGE, '--name', 'one-pod');
      t.comment(`$ kubectl jfs upgrade web-0 -n ${NS} --image ${MOUNT_IMAGE}\n${r.err}${r.out}`);
      t.equal(r.code, 0, 'exit 0: Completed');
      t.match(r.err, /juicefsupgrade\.jfs-sidecar\.juicefs\.com\/one-pod created/);
      t.match(
        r.err,
        new RegExp(`${NS}/web-0 Succeeded`),
        'a line when the pod succeeded (no TTY: one line per change)',
      );
      t.match(r.err, /\[#+\] 1\/1 upgraded/, 'the progress bar');
      t.match(r.out, /juicefsupgrade\/one-pod Completed/);
      t.equal(await clientImage('web-0'), normalizeImage(MOUNT_IMAGE), 'web-0 runs the new client');
      t.equal(await clientImage('web-1'), normalizeImage(PREVIOUS_MOUNT_IMAGE), 'web-1 untouched');
      const st = await jfs('upgrade', 'status', 'one-pod', '-o', 'json');
      const u = (JSON.parse(st.out) as { items: { spec: { selector: unknown } }[] }).items[0];
      t.same(
        u.spec.selector,
        { namespaces: [NS], podSelector: { matchLabels: { 'jfs-sidecar.juicefs.com/upgrade-pod': 'one-pod' } } },
        'one pod, selected by the label the plugin put on it',
      );
    });

    t.test('upgrade -l: created, paused, resumed, watched to the end', async (t) => {
      const c = await jfs(
        'upgrade',
        '-l',
        'app=web',
        '-n',
        NS,
        '--image',
        MOUNT_IMAGE,
        '--max-unavailable',
        '1',
        '--name',
        'roll',
        '--no-watch',
      );
      t.equal(c.code, 0, c.err);
      const p = await jfs('upgrade', 'pause', 'roll');
      t.match(p.out, /juicefsupgrade\/roll paused/);
      const s = await jfs('upgrade', 'status', 'roll');
      t.match(s.out, /^roll {2}sidecar → \S+ {2}\S+ \(paused\)/m, 'status shows the pause');
      const r = await jfs('upgrade', 'resume', 'roll');
      t.match(r.out, /juicefsupgrade\/roll resumed/);
      const wch = await jfs('upgrade', 'status', 'roll', '-w');
      t.comment(`$ kubectl jfs upgrade status roll -w\n${wch.err}${wch.out}`);
      t.equal(wch.code, 0, 'Completed');
      t.match(wch.out, /juicefsupgrade\/roll Completed/);
      for (const name of ['web-1', 'web-2'])
        t.equal(await clientImage(name), normalizeImage(MOUNT_IMAGE), `${name} upgraded`);
    });

    t.test('--recreate on a sidecar pod: said plainly (the Mount Pod kinds replace Mount Pod clients)', async (t) => {
      const r = await jfs('upgrade', 'web-1', '-n', NS, '--recreate', '--image', MOUNT_IMAGE, '--name', 'recreate');
      t.comment(r.err);
      t.equal(r.code, 1);
      t.match(r.err, /runs its client as a sidecar: upgrade it in place \(no --recreate or --binary/);
      const bad = await jfs('upgrade', 'web-1', '-n', NS, '--recreate', '--binary');
      t.match(bad.err, /--recreate and --binary exclude each other/);
      const none = await jfs('upgrade', 'nope', '-n', NS);
      t.match(none.err, /pod jfs-cli-upgrade\/nope not found/);
    });
  }
}
