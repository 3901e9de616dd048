// The shared mount spec: one subdirectory rule, one name sanitiser, one
// format step, and the PVC identity that lets pvcSelector patches reach Mount Pods.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { parseGlobalConfig } from '../../src/config/schema.js';
import { hasControlCharacters, dnsName, labelValue } from '../../src/contract/names.js';
import { renderPathPattern } from '../../src/contract/path-pattern.js';
import { mountPodSecretName } from '../../src/contract/secret-copy.js';
import { isCanonicalSubdir, normaliseSubdir, SubdirError } from '../../src/contract/subdir.js';
import { checkSubdir } from '../../src/controller/controller-service.js';
import { injectPod } from '../../src/inject/inject.js';
import type { JuicefsCli } from '../../src/juicefs/cli.js';
import { CredentialsError, credentialsFromSecrets, JuicefsVolumes } from '../../src/juicefs/volume.js';
import type { ResolvedVolume } from '../../src/resolve/types.js';
import { expandEnvReferences, FormatError, formatCommand } from '../../src/mount/format.js';
import type { PvcIdentity, VolumeSource } from '../../src/mount/volume.js';
import { planMountPod } from '../../src/node/mount-pod-plan.js';

const source: VolumeSource = {
  pvName: 'pv-1',
  subdir: 'pv-1',
  readOnly: false,
  attributes: {},
  mountOptions: [],
  secret: { name: 's', keys: ['metaurl'], envNames: [], formatFlags: [] },
};
const claim: PvcIdentity = {
  name: 'data',
  namespace: 'team-a',
  labels: { tier: 'gold' },
  annotations: {},
  storageClassName: 'juicefs-sc',
};
const config = parseGlobalConfig(`
mountPodPatch:
  - pvcSelector: {matchLabels: {tier: gold}}
    resources: {limits: {cpu: "1500m"}}
  - pvcSelector: {matchStorageClassName: juicefs-sc}
    labels: {patched: gold}
    annotations: {by-name: "yes"}
    mountOptions: [writeback]
  - pvcSelector: {matchStorageClassName: other-sc}
    ceMountImage: never/used
`);

t.test('a pvcSelector patch reaches the Mount Pod of a PV whose claim it selects', async (t) => {
  const plan = planMountPod({ nodeName: 'n', namespace: 'ns', volume: source, claim, options: { config } });
  const pod = plan.pod;
  const c = pod.spec!.containers[0];
  t.equal(pod.metadata?.labels?.patched, 'gold', 'matchStorageClassName matched the PVC');
  t.equal(pod.metadata?.annotations?.['by-name'], 'yes', 'matchStorageClassName matched the PVC');
  t.equal(c.resources?.limits?.cpu, '1500m', 'label selector matched the PVC labels: resources patched');
  t.ok(c.command?.includes('--writeback'), 'mount options patched');
  t.not(c.image, 'never/used', 'an entry selecting another PVC does not apply');

  const unclaimed = planMountPod({ nodeName: 'n', namespace: 'ns', volume: source, options: { config } });
  t.notOk(unclaimed.pod.metadata?.labels?.patched, 'a PV without a claim is not selected by its class');
  t.not(unclaimed.pod.spec!.containers[0].resources?.limits?.cpu, '1500m', 'nor by labels');
  t.notOk(unclaimed.pod.metadata?.annotations?.['by-name']);
  t.not(unclaimed.hash, plan.hash, 'the patch is part of the settings hash');
  const other = planMountPod({
    nodeName: 'n',
    namespace: 'ns',
    volume: source,
    claim: { ...claim, labels: { tier: 'bronze' } },
    options: { config },
  });
  t.not(other.pod.spec!.containers[0].resources?.limits?.cpu, '1500m', 'labels that do not match select nothing');
});

t.test('the sidecar and the Mount Pod take the same patches for the same PVC', async (t) => {
  const volume: ResolvedVolume = { source, binding: { podVolumeName: 'data', pvc: claim } };
  const pod = {
    metadata: { name: 'app', namespace: 'team-a' },
    spec: {
      containers: [{ name: 'app', image: 'app', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
    },
  };
  const out = injectPod(pod, [volume], { mode: 'sidecar', config });
  t.equal(out.kind, 'injected');
  if (out.kind !== 'injected') return;
  const sidecar = out.pod.spec!.initContainers!.find((c) => c.name === 'jfs-mount')!;
  const mountPod = planMountPod({ nodeName: 'n', namespace: 'ns', volume: source, claim, options: { config } });
  t.same(sidecar.resources, mountPod.pod.spec!.containers[0].resources);
  t.ok(sidecar.command?.includes('--writeback'));
});

t.test('one subdirectory rule', async (t) => {
  t.equal(normaliseSubdir('a/b'), 'a/b');
  t.equal(normaliseSubdir('/a//./b/'), 'a/b', 'layout is dropped');
  t.equal(normaliseSubdir('/'), undefined, 'the root');
  for (const bad of ['..', 'a/../b', 'a\u0000b', 'a\nb', 'a\u007fb'])
    t.throws(() => normaliseSubdir(bad), SubdirError, JSON.stringify(bad));
  t.ok(isCanonicalSubdir('a/b'));
  for (const bad of ['', '/a', 'a/', 'a//b', './a', '.', 'a\u007f'])
    t.notOk(isCanonicalSubdir(bad), `${JSON.stringify(bad)} is not canonical`);
  t.throws(() => checkSubdir('a\u007fb'), 'the controller refuses DEL too');
  t.throws(
    () => renderPathPattern('x/${.PVC.name}', { pvc: { name: 'a\u0001', namespace: 'n' } }),
    'and so does pathPattern',
  );
});

t.test('one control-character rule and one name sanitiser', async (t) => {
  t.ok(hasControlCharacters('a\tb'));
  t.ok(hasControlCharacters('\u007f'));
  t.notOk(hasControlCharacters('a b/c=d'));
  t.equal(dnsName('juicefs-Node_1-pv', 63), 'juicefs-node-1-pv');
  const long = dnsName(`juicefs-${'x'.repeat(80)}`, 63);
  t.equal(long.length, 63);
  t.not(long, dnsName(`juicefs-${'x'.repeat(81)}`, 63), 'cut names stay distinct');
  t.equal(labelValue('kube-system.juicefs-secret'), 'kube-system.juicefs-secret');
  t.ok(labelValue(`${'n'.repeat(40)}.${'s'.repeat(40)}`).length <= 63);
  const data = { metaurl: Buffer.from('redis://x').toString('base64') };
  t.match(mountPodSecretName('pv-a', data), /^juicefs-pv-a-[0-9a-f]{8}-secret$/);
  t.not(mountPodSecretName('pv-a', data), mountPodSecretName('pv-a', { metaurl: 'other' }), 'named by content');
  t.ok(mountPodSecretName('x'.repeat(300), data).length <= 253);
});

t.test('juicefs format is rendered once', async (t) => {
  const step = formatCommand(
    ['metaurl', 'name', 'storage', 'bucket', 'access-key', 'secret-key'],
    ['trash-days', 'block-size'],
  );
  t.same(step.args, [
    'juicefs',
    'format',
    '--no-update',
    '--storage=$(JFS_STORAGE)',
    '--bucket=$(JFS_BUCKET)',
    '--trash-days=$(JFS_FORMAT_TRASH_DAYS)',
    '--block-size=$(JFS_FORMAT_BLOCK_SIZE)',
    '$(JFS_METAURL)',
    '$(JFS_NAME)',
  ]);
  t.same(
    step.env.map((e) => e.name),
    [
      'JFS_NAME',
      'JFS_STORAGE',
      'JFS_BUCKET',
      'ACCESS_KEY',
      'SECRET_KEY',
      'JFS_FORMAT_TRASH_DAYS',
      'JFS_FORMAT_BLOCK_SIZE',
    ],
  );
  t.same(
    step.env.slice(-2).map((e) => e.key),
    ['format.trash-days', 'format.block-size'],
    'from the copy’s keys',
  );
  t.throws(() => formatCommand(['metaurl', 'storage'], []), FormatError, 'name is needed');
  t.throws(() => formatCommand(['metaurl', 'name', 'storage'], ['$(touch /x)']), FormatError, 'options are checked');
  t.same(
    expandEnvReferences(['--storage=$(JFS_STORAGE)', '--x=$$(JFS_STORAGE)', '$(UNKNOWN)', '$(JFS_METAURL)'], {
      JFS_STORAGE: 'file',
      JFS_METAURL: 'sqlite3://$(x)',
    }),
    ['--storage=file', '--x=$(JFS_STORAGE)', '$(UNKNOWN)', 'sqlite3://$(x)'],
    'expanded as kubelet expands a command, once',
  );
});

t.test("the controller's juicefs format is the init container's step, expanded", async (t) => {
  const calls: { args: string[]; env?: Record<string, string> }[] = [];
  const cli = {
    run: async (args: string[], _secrets: string[], opts: { env?: Record<string, string> } = {}) => {
      calls.push({ args, env: opts.env });
      return { stdout: '', stderr: '' };
    },
  } as unknown as JuicefsCli;
  const state = mkdtempSync(path.join(tmpdir(), 'jfs-format-'));
  t.teardown(() => rmSync(state, { recursive: true, force: true }));
  const volumes = new JuicefsVolumes(cli, state, pino({ level: 'silent' }));
  const creds = credentialsFromSecrets({
    metaurl: 'sqlite3:///x.db',
    name: 'vol',
    storage: 'file',
    bucket: '/b/$(HOME)',
    'access-key': 'ak',
    'format-options': 'trash-days=1,--block-size=4096',
  });
  await volumes.ensureFormatted(creds);
  t.same(calls[0].args, [
    'format',
    '--no-update',
    '--storage=file',
    '--bucket=/b/$(HOME)',
    '--trash-days=1',
    '--block-size=4096',
    'sqlite3:///x.db',
    'vol',
  ]);
  t.equal(calls[0].env?.ACCESS_KEY, 'ak');
  await t.rejects(
    volumes.ensureFormatted(
      credentialsFromSecrets({ metaurl: 'm', name: 'v', storage: 'file', 'format-options': 'a b' }),
    ),
    CredentialsError,
    'its format options are checked now',
  );
  await t.rejects(volumes.ensureFormatted(credentialsFromSecrets({ metaurl: 'm2', storage: 'file' })), {
    name: 'CredentialsError',
    message: 'secrets: key "name" is needed to format the volume',
  });
});
