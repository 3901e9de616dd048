// csi-sanity, the CSI peer test suite, in full: Identity, Controller and Node
// on one socket (`controller --node-id`, as a combined driver), run as root
// with real mounts: a real JuiceFS volume, a real control plane for the Mount
// Pods, and the kubelet stand-in running them with the real client and FUSE.
import { CoreV1Api } from '@kubernetes/client-node';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { stringify } from 'yaml';
import { pino } from 'pino';
import { applyObjects, ManagedProcess, readManifest, waitForSocket } from '../../src/local/components.js';
import { ensureBinaries } from '../../src/local/control-plane.js';
import { KubeletStandIn } from '../../src/local/kubelet-standin.js';
import { REGISTRY_DIR } from '../../src/controller/registry.js';
import { readMounts } from '../../src/juicefs/mounts.js';
import { detachMountsUnder } from '../../src/local/mounts.js';
import { eventually, startControlPlane } from '../env/harness.js';
import { makeVolume, withFuseMount } from '../env/juicefs.js';
import { setTimeout as sleep } from 'node:timers/promises';

const NODE = 'sanity-node';
const NS = 'juicefs-system';

t.setTimeout(20 * 60 * 1000);

t.test(
  'csi-sanity: Identity, Controller and Node services',
  { skip: process.getuid?.() !== 0 ? 'real mounts need root' : false },
  async (t) => {
    const bins = ensureBinaries(['csi-sanity', 'juicefs']);
    // kube-controller-manager creates the default ServiceAccount Mount Pods run as.
    const cp = await startControlPlane(t, { controllerManager: true });
    const admin = cp.adminKubeConfig();
    await applyObjects(admin, [
      ...readManifest('namespace.yaml'),
      { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } },
    ]);
    const vol = makeVolume('sanity');
    const dir = mkdtempSync(path.join(tmpdir(), 'jfs-sanity-'));
    const sock = path.join(dir, 'csi.sock');
    const driver = ManagedProcess.cli(
      [
        'controller',
        `--endpoint=unix://${sock}`,
        `--juicefs=${bins.juicefs}`,
        `--state-dir=${dir}/state`,
        `--kubeconfig=${cp.adminKubeconfigPath}`,
        `--node-id=${NODE}`,
        `--leader-election-namespace=${NS}`,
        '--check-interval=1s',
      ],
      path.join(dir, 'driver.log'),
    ).start();
    // Playing kubelet for NODE's Mount Pods (there is no kubelet here).
    const standIn = new KubeletStandIn({
      kubeConfig: admin,
      nodeName: NODE,
      juicefsBinary: bins.juicefs,
      logDir: dir,
      log: pino({ level: 'warn' }),
    });
    await standIn.start();
    t.teardown(async () => {
      if (!t.passing()) t.comment(`driver log:\n${driver.log(60)}`);
      await driver.stop();
      await standIn.close();
      detachMountsUnder(dir); // a failed test may leave a target mounted: never recurse into it
      rmSync(dir, { recursive: true, force: true });
      vol.remove();
    });
    await waitForSocket(sock);
    const core = admin.makeApiClient(CoreV1Api);
    await eventually(
      () => core.readNamespacedServiceAccount({ name: 'default', namespace: NS }),
      30_000,
      'default ServiceAccount',
    );

    const secrets = vol.secrets;
    const secretsFile = path.join(dir, 'secrets.yaml');
    writeFileSync(
      secretsFile,
      stringify(
        Object.fromEntries(
          [
            'CreateVolumeSecret',
            'DeleteVolumeSecret',
            'ControllerValidateVolumeCapabilitiesSecret',
            'ControllerExpandVolumeSecret',
            'NodePublishVolumeSecret',
          ].map((k) => [k, secrets]),
        ),
      ),
    );
    // Asynchronously: this process runs the stand-in the Mount Pods need while csi-sanity runs.
    const res = await new Promise<{ status: number | null; out: string }>((resolve) => {
      const child = spawn(
        bins['csi-sanity'],
        [
          `--csi.endpoint=${sock}`,
          `--csi.secrets=${secretsFile}`,
          `--csi.mountdir=${dir}/mnt`,
          `--csi.stagingdir=${dir}/staging`,
          '--ginkgo.no-color',
          '--ginkgo.timeout=15m',
        ],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      child.on('exit', (status) => resolve({ status, out }));
    });
    const out = res.out;
    const summary = out.split('\n').filter((l) => /^Ran \d+ of \d+ Specs|SUCCESS!|FAIL!|\[FAIL\]/.test(l.trim()));
    t.comment(`csi-sanity summary:\n${summary.join('\n')}`);
    t.equal(res.status, 0, 'csi-sanity passes');
    const ran = /Ran (\d+) of/.exec(out);
    t.ok(ran && Number(ran[1]) >= 35, `csi-sanity ran the controller and node specs (${ran?.[1]})`);
    t.match(out, /SUCCESS!/);
    for (const spec of [
      'should work',
      'should be idempotent',
      'should remove target path',
      'should fail when volume does not exist on the specified path',
    ]) {
      t.notMatch(out, new RegExp(`\\[SKIPPED\\].*${spec}`), `node spec ran: ${spec}`);
    }

    // Everything csi-sanity published it also unpublished: no target, and (references gone) no Mount Pod left.
    t.notOk(
      readMounts().some((m) => m.mountPoint.startsWith(`${dir}/mnt`)),
      'no target left mounted',
    );
    await eventually(
      async () =>
        (await core.listNamespacedPod({ namespace: NS, labelSelector: 'app.kubernetes.io/name=juicefs-mount' })).items
          .length === 0,
      60_000,
      'every Mount Pod deleted',
    );

    const controllerLog = driver.log(100_000);
    t.notOk(controllerLog.includes(vol.bucket), 'no secret value in the controller log');
    t.notOk(controllerLog.includes(vol.metaurl), 'not even the metaurl');

    // Everything csi-sanity created it also deleted: no directory is left in the volume but the registry.
    await sleep(6000); // the controller's mount lingers 5 s
    await withFuseMount(vol, (mnt) => {
      t.same(
        readdirSync(mnt).filter((e) => e !== '.trash' && e !== '.stats' && e !== '.config' && e !== '.accesslog'),
        [REGISTRY_DIR.split('/')[0]],
        'only the registry is left at the root',
      );
      t.same(readdirSync(path.join(mnt, REGISTRY_DIR)), [], 'no volume record is left');
    });
  },
);
