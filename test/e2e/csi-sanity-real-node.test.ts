// csi-sanity's Identity and Node specs on the real node, against the socket of
// the node plugin (the shipped DaemonSet's pod, registered with the kubelet),
// whose Mount Pods the kubelet runs. The specs create and delete their volumes
// through the controller as a host process (`--csi.controllerendpoint`, as a
// cluster splits them). Split so, csi-sanity runs 33 specs; the combined
// driver of csi-sanity.test.ts runs 35 (the suite in full). Targets are under
// the kubelet root, the folder the node plugin sees at the same path.
import { CoreV1Api } from '@kubernetes/client-node';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { stringify } from 'yaml';
import { REGISTRY_DIR, SNAPSHOT_REGISTRY_DIR } from '../../src/controller/registry.js';
import { readMounts } from '../../src/juicefs/mounts.js';
import { ManagedProcess, waitForSocket } from '../../src/local/components.js';
import { ensureBinaries } from '../../src/local/control-plane.js';
import { eventually } from '../env/harness.js';
import {
  MOUNT_POD_NAMESPACE as NS,
  NODE_PLUGIN_SOCKET,
  SMALL_MOUNT_POD,
  startRealNodeHarness,
} from '../env/real-node-harness.js';

t.setTimeout(20 * 60 * 1000);

t.test('csi-sanity: Identity and Node specs against the node plugin on the real node', async (t) => {
  const bins = ensureBinaries(['csi-sanity', 'juicefs']);
  const h = await startRealNodeHarness(t, { volumeName: 'sanity' });
  const { cp, vol, dir } = h;
  const core = cp.adminKubeConfig().makeApiClient(CoreV1Api);
  const ctl = mkdtempSync(path.join(tmpdir(), 'jfs-sanity-ctl-'));
  const ctlSock = path.join(ctl, 'controller.sock');
  const controller = ManagedProcess.cli(
    [
      'controller',
      `--endpoint=unix://${ctlSock}`,
      `--juicefs=${bins.juicefs}`,
      `--state-dir=${ctl}/state`,
      `--kubeconfig=${cp.adminKubeconfigPath}`,
      `--leader-election-namespace=${NS}`,
    ],
    path.join(ctl, 'controller.log'),
  ).start();
  t.teardown(async () => {
    if (!t.passing()) t.comment(`controller log:\n${controller.log(60)}`);
    await controller.stop();
    rmSync(ctl, { recursive: true, force: true });
  });
  await waitForSocket(ctlSock);

  const secretsFile = path.join(ctl, 'secrets.yaml');
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
        ].map((k) => [k, vol.secrets]),
      ),
    ),
  );
  // StorageClass parameters of the test volumes: small Mount Pods (the node has 2 CPUs).
  const paramsFile = path.join(ctl, 'params.yaml');
  writeFileSync(paramsFile, stringify(SMALL_MOUNT_POD));
  const started = Date.now();
  const res = await new Promise<{ status: number | null; out: string }>((resolve) => {
    const child = spawn(
      bins['csi-sanity'],
      [
        `--csi.endpoint=${NODE_PLUGIN_SOCKET}`,
        `--csi.controllerendpoint=${ctlSock}`,
        `--csi.secrets=${secretsFile}`,
        `--csi.testvolumeparameters=${paramsFile}`,
        `--csi.mountdir=${dir}/mnt`,
        `--csi.stagingdir=${dir}/staging`,
        '--ginkgo.no-color',
        '--ginkgo.timeout=15m',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (status) => resolve({ status, out }));
  });
  const out = res.out;
  const summary = out.split('\n').filter((l) => /^Ran \d+ of \d+ Specs|SUCCESS!|FAIL!|\[FAIL\]/.test(l.trim()));
  t.comment(`csi-sanity in ${Date.now() - started} ms:\n${summary.join('\n')}`);
  if (res.status !== 0) t.comment(out.split('\n').slice(-120).join('\n'));
  t.equal(res.status, 0, 'csi-sanity passes');
  const ran = /Ran (\d+) of/.exec(out);
  t.ok(ran && Number(ran[1]) >= 30, `csi-sanity ran the identity and node specs (${ran?.[1]})`);
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
    readMounts().some((m) => m.mountPoint.startsWith(`${dir}/`)),
    'no target left mounted',
  );
  await eventually(
    async () =>
      (await core.listNamespacedPod({ namespace: NS, labelSelector: 'app.kubernetes.io/name=juicefs-mount' })).items
        .length === 0,
    90_000,
    'every Mount Pod deleted',
  );

  const controllerLog = controller.log(100_000);
  t.notOk(controllerLog.includes(vol.metaurl), 'no secret value (not even the metaurl) in the controller log');

  // Everything csi-sanity created it also deleted: no directory is left in the volume but the registry.
  await sleep(6000); // the controller's mount lingers 5 s
  const mnt = mkdtempSync(path.join(tmpdir(), 'jfs-sanity-mnt-'));
  vol.run(['mount', '-d', '--no-usage-report', `--cache-dir=${vol.dir}/host-cache`, vol.metaurl, mnt]);
  try {
    t.same(
      readdirSync(mnt).filter((e) => !['.trash', '.stats', '.config', '.accesslog'].includes(e)),
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
    spawnSync(vol.juicefs, ['umount', mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
});
