// csi-sanity, the CSI peer test suite, against the controller socket with a
// real JuiceFS volume behind it (the node socket serves csi-sanity's cleanup
// calls; the node tests belong to the Mount Pod mode work).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { stringify } from 'yaml';
import { ManagedProcess, waitForSocket } from '../../src/local/components.js';
import { ensureBinaries } from '../../src/local/control-plane.js';
import { REGISTRY_DIR } from '../../src/controller/registry.js';
import { makeVolume, withFuseMount } from '../env/juicefs.js';

t.test('csi-sanity: Identity and Controller services', async (t) => {
  const bins = ensureBinaries(['csi-sanity', 'juicefs']);
  const vol = makeVolume('sanity');
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-sanity-'));
  const controllerSock = path.join(dir, 'controller.sock');
  const nodeSock = path.join(dir, 'node.sock');
  const controller = ManagedProcess.cli(
    ['controller', `--endpoint=unix://${controllerSock}`, `--juicefs=${bins.juicefs}`, `--state-dir=${dir}/state`],
    path.join(dir, 'controller.log'),
  ).start();
  const node = ManagedProcess.cli(['node', `--endpoint=unix://${nodeSock}`, '--node-id=sanity-node'], path.join(dir, 'node.log')).start();
  t.teardown(async () => {
    if (!t.passing()) t.comment(`controller log:\n${controller.log(60)}`);
    await controller.stop();
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
    vol.remove();
  });
  await waitForSocket(controllerSock);
  await waitForSocket(nodeSock);

  const secrets = vol.secrets;
  const secretsFile = path.join(dir, 'secrets.yaml');
  writeFileSync(
    secretsFile,
    stringify(Object.fromEntries(['CreateVolumeSecret', 'DeleteVolumeSecret', 'ControllerValidateVolumeCapabilitiesSecret', 'ControllerExpandVolumeSecret'].map((k) => [k, secrets]))),
  );
  const res = spawnSync(
    bins['csi-sanity'],
    [
      `--csi.endpoint=${nodeSock}`,
      `--csi.controllerendpoint=${controllerSock}`,
      `--csi.secrets=${secretsFile}`,
      `--csi.mountdir=${dir}/mnt`,
      `--csi.stagingdir=${dir}/staging`,
      '--ginkgo.skip=Node Service',
      '--ginkgo.no-color',
    ],
    { encoding: 'utf8', timeout: 10 * 60 * 1000 },
  );
  const out = `${res.stdout}${res.stderr}`;
  const summary = out.split('\n').filter((l) => /^Ran \d+ of \d+ Specs|SUCCESS!|FAIL!|\[FAIL\]/.test(l.trim()));
  t.comment(`csi-sanity summary:\n${summary.join('\n')}`);
  t.equal(res.status, 0, 'csi-sanity passes');
  const ran = /Ran (\d+) of/.exec(out);
  t.ok(ran && Number(ran[1]) >= 20, `csi-sanity ran the controller specs (${ran?.[1]})`);
  t.match(out, /SUCCESS!/);

  const controllerLog = controller.log(100_000);
  t.notOk(controllerLog.includes(vol.bucket), 'no secret value in the controller log');
  t.notOk(controllerLog.includes(vol.metaurl), 'not even the metaurl');

  // Everything csi-sanity created it also deleted: no directory is left in the volume but the registry.
  await new Promise((r) => setTimeout(r, 6000)); // the controller's mount lingers 5 s
  await withFuseMount(vol, (mnt) => {
    t.same(readdirSync(mnt).filter((e) => e !== '.trash' && e !== '.stats' && e !== '.config' && e !== '.accesslog'), [REGISTRY_DIR.split('/')[0]], 'only the registry is left at the root');
    t.same(readdirSync(path.join(mnt, REGISTRY_DIR)), [], 'no volume record is left');
  });
});
