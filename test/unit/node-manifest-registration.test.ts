// The node DaemonSet registers itself with the kubelet (no registrar by default),
// its flags agree with its own mounts, and the optional registrar component
// renders (kubectl's built-in kustomize) to the registrar layout.
import type { V1Container, V1DaemonSet } from '@kubernetes/client-node';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { MANIFESTS, readManifest } from '../../src/local/components.js';
import { PACKAGE_ROOT } from '../../src/util/package-root.js';

const daemonSet = (objects: unknown[]) => objects.find((o) => (o as V1DaemonSet).kind === 'DaemonSet') as V1DaemonSet;
const flag = (c: V1Container, name: string) => c.args?.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

t.test('the node container serves plugin registration itself', async (t) => {
  const ds = daemonSet(readManifest('node/node.yaml'));
  const spec = ds.spec!.template.spec!;
  t.same(
    spec.containers.map((c) => c.name),
    ['node'],
    'no node-driver-registrar by default',
  );
  const node = spec.containers[0];
  const hostPath = (volume: string) => spec.volumes!.find((v) => v.name === volume)!.hostPath!.path;
  const mountPath = (volume: string) => node.volumeMounts!.find((m) => m.name === volume)!.mountPath;
  t.equal(flag(node, 'registration-dir'), mountPath('registration-dir'), '--registration-dir is the mounted folder');
  t.equal(hostPath('registration-dir').replace(/\/$/, ''), '/var/lib/kubelet/plugins_registry', 'the kubelet folder');
  const endpoint = flag(node, 'endpoint')!.replace('unix://', '');
  t.equal(
    flag(node, 'kubelet-plugin-endpoint'),
    path.join(hostPath('plugin-dir'), path.relative(mountPath('plugin-dir'), endpoint)),
    '--kubelet-plugin-endpoint is --endpoint as the host (the kubelet) sees it',
  );

  const help = spawnSync(process.execPath, [path.join(PACKAGE_ROOT, 'dist/src/cli/main.js'), 'node', '--help'], {
    encoding: 'utf8',
  });
  t.match(help.stdout, /--registration-dir <dir>/, 'the CLI has the flags the manifest uses');
  t.match(help.stdout, /--kubelet-plugin-endpoint <path>/);
  t.match(help.stdout, /default:\s+"\/var\/lib\/kubelet\/plugins\/csi\.juicefs\.com\/csi\.sock"/, 'its default');
});

t.test('the registrar component puts node-driver-registrar back', async (t) => {
  if (spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status !== 0) {
    t.fail('kubectl is needed to render the kustomize component');
    return;
  }
  const overlay = mkdtempSync(path.join(tmpdir(), 'jfs-kust-'));
  t.teardown(() => rmSync(overlay, { recursive: true, force: true }));
  const rel = (p: string) => path.relative(overlay, path.join(MANIFESTS, p));
  writeFileSync(
    path.join(overlay, 'kustomization.yaml'),
    `resources: [${rel('node')}]\ncomponents: [${rel('node/registrar')}]\n`,
  );
  const out = execFileSync('kubectl', ['kustomize', overlay], { encoding: 'utf8' });
  const ds = daemonSet(parseAllDocuments(out).map((d) => d.toJS() as unknown));
  const containers = ds.spec!.template.spec!.containers;
  t.same(
    containers.map((c) => c.name),
    ['node', 'node-driver-registrar'],
  );
  t.equal(flag(containers[0], 'registration-dir'), undefined, 'the node service does not register too');
  t.equal(
    flag(containers[1], 'kubelet-registration-path'),
    '/var/lib/kubelet/plugins/csi.juicefs.com/csi.sock',
    'the registrar names the same CSI socket',
  );
});
