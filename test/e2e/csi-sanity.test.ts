// csi-sanity, the CSI peer test suite, in full: Identity, Controller and Node
// on one socket (`controller --node-id`, as a combined driver), run as root
// with real mounts: a real JuiceFS volume, a real control plane, and the real
// node (kubelet + containerd, without the node plugin DaemonSet: this process
// is the node's driver) running the Mount Pods.
import { CoreV1Api } from '@kubernetes/client-node';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { stringify } from 'yaml';
import { pino } from 'pino';
import { applyObjects, ManagedProcess, readManifest, waitForSocket } from '../../src/local/components.js';
import { ControlPlane, ensureBinaries } from '../../src/local/control-plane.js';
import { startRealNodeStack } from '../../src/local/real-node-stack.js';
import { REGISTRY_DIR, SNAPSHOT_REGISTRY_DIR } from '../../src/controller/registry.js';
import { readMounts } from '../../src/juicefs/mounts.js';
import { detachMountsUnder } from '../../src/local/mounts.js';
import { eventually } from '../env/harness.js';
import { makeRealNodeVolume, SMALL_MOUNT_POD, VOLUME_PARENT } from '../env/real-node-harness.js';
import { setTimeout as sleep } from 'node:timers/promises';

const NS = 'juicefs-system';

t.setTimeout(20 * 60 * 1000);

t.test(
  'csi-sanity: Identity, Controller and Node services',
  { skip: process.getuid?.() !== 0 ? 'real mounts need root' : false },
  async (t) => {
    const bins = ensureBinaries(['csi-sanity', 'juicefs']);
    // kube-controller-manager creates the default ServiceAccount Mount Pods run as.
    const cp = await ControlPlane.start({ controllerManager: true, scheduler: true });
    process.once('exit', () => cp.killNow());
    const admin = cp.adminKubeConfig();
    await applyObjects(admin, [...readManifest('namespace.yaml'), ...readManifest('csidriver.yaml')]);
    const madeParent = mkdirSync(VOLUME_PARENT, { recursive: true }) !== undefined;
    // Under /var/jfsCache: the Mount Pods open its SQLite file at the same path.
    const vol = makeRealNodeVolume('sanity');
    const dir = mkdtempSync(path.join(tmpdir(), 'jfs-sanity-'));
    const stack = await startRealNodeStack(cp, { dir, log: pino({ level: 'warn' }), nodePlugin: false });
    const NODE = stack.node.nodeName;
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
    // In order: the driver unpublishes nothing on stop, the node drains its pods through the API server.
    t.teardown(async () => {
      if (!t.passing()) t.comment(`driver log:\n${driver.log(60)}\nnode logs:\n${stack.node.logs(40)}`);
      await driver.stop();
      detachMountsUnder(dir); // a failed test may leave a target mounted: never recurse into it
      await stack.stop();
      if (!t.passing()) t.comment(`control plane logs:\n${cp.logs(60)}`);
      await cp.stop();
      rmSync(dir, { recursive: true, force: true });
      rmSync(vol.dir, { recursive: true, force: true });
      rmSync(path.join(VOLUME_PARENT, vol.uuid), { recursive: true, force: true });
      // Only if this run made it and it is empty (another node user, e.g. `npm start`, may be using it).
      if (madeParent) {
        try {
          rmdirSync(VOLUME_PARENT);
        } catch {
          t.comment(`${VOLUME_PARENT} left: not empty`);
        }
      }
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
            'CreateSnapshotSecret',
            'DeleteSnapshotSecret',
            'ListSnapshotsSecret',
          ].map((k) => [k, secrets]),
        ),
      ),
    );
    // StorageClass parameters of the test volumes: small Mount Pods (the node has 2 CPUs).
    const paramsFile = path.join(dir, 'params.yaml');
    writeFileSync(paramsFile, stringify(SMALL_MOUNT_POD));
    const res = await new Promise<{ status: number | null; out: string }>((resolve) => {
      const child = spawn(
        bins['csi-sanity'],
        [
          `--csi.endpoint=${sock}`,
          `--csi.secrets=${secretsFile}`,
          `--csi.testvolumeparameters=${paramsFile}`,
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
    // The snapshot specs run once the controller advertises CREATE_DELETE_SNAPSHOT and LIST_SNAPSHOTS.
    for (const spec of [
      'should create volume from an existing source snapshot',
      'should return next token when a limited number of entries are requested',
      'should fail when requesting to create a snapshot with already existing name and different source volume ID',
    ]) {
      t.notMatch(out, new RegExp(`\\[SKIPPED\\].*${spec}`), `snapshot spec ran: ${spec}`);
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
    t.notOk(controllerLog.includes(vol.metaurl), 'no secret value (not even the metaurl) in the controller log');

    // Everything csi-sanity created it also deleted: no directory is left in the volume but the registry.
    await sleep(6000); // the controller's mount lingers 5 s
    const mnt = mkdtempSync(path.join(tmpdir(), 'jfs-sanity-mnt-'));
    vol.run(['mount', '-d', '--no-usage-report', `--cache-dir=${vol.dir}/host-cache`, vol.metaurl, mnt]);
    try {
      t.same(
        readdirSync(mnt).filter((e) => e !== '.trash' && e !== '.stats' && e !== '.config' && e !== '.accesslog'),
        [REGISTRY_DIR.split('/')[0]],
        'only the registry is left at the root',
      );
      t.same(readdirSync(path.join(mnt, REGISTRY_DIR)), [], 'no volume record is left');
      t.same(
        readdirSync(path.join(mnt, SNAPSHOT_REGISTRY_DIR)),
        [],
        'no snapshot record is left (and no .snapshots folder, by the line above)',
      );
    } finally {
      vol.run(['umount', mnt]);
      rmSync(mnt, { recursive: true, force: true });
    }
  },
);
