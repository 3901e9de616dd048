// The whole ConfigMap schema of the reference driver (issue 14 item 1): every field of its Config and MountPodPatch
// is in the one table, a bad entry is refused alone (naming the field), templates are rendered with plain values
// only, and the migration check lists every field of the reference's own examples.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type {
  KubernetesObject,
  V1ConfigMap,
  V1PersistentVolume,
  V1Secret,
  V1StorageClass,
} from '@kubernetes/client-node';
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { checkCommand } from '../../src/cli/check-command.js';
import { CONFIG_FIELDS, ENTRY_FIELDS, parseGlobalConfig, renderConfigFieldTable } from '../../src/config/schema.js';
import { DenyError } from '../../src/contract/deny.js';
import { MOUNT_POINT_EXEC_SCRIPT, renderTemplates } from '../../src/mount/patch.js';
import { computeMountSettings } from '../../src/mount/settings.js';
import type { VolumeSource } from '../../src/mount/volume.js';
import { planMountPod } from '../../src/node/mount-pod-plan.js';
import { checkObjects, renderCheckTable } from '../../src/offline/check.js';
import { parseManifests } from '../../src/offline/inject-manifests.js';
import { CLI } from '../../src/local/components.js';
import { TESTDATA } from '../golden/golden.js';

// The reference's field names (pkg/config/config.go, Config and MountPodPatch json tags), as facts to cover.
const REFERENCE_CONFIG = [
  'enableNodeSelector',
  'enableNativeSidecar',
  'enableSetQuota',
  'enableControllerSetQuota',
  'enableAutoRemoveRequestResources',
  'enableAutoAbortStuckMountPod',
  'enableLazyUmountTarget',
  'enableKubeletListMountPod',
  'mountPodPatch',
];
const REFERENCE_PATCH = [
  'pvcSelector',
  'nodeSelector',
  'ceMountImage',
  'eeMountImage',
  'cacheDirs',
  'imagePullPolicy',
  'labels',
  'annotations',
  'hostNetwork',
  'hostPID',
  'dnsConfig',
  'dnsPolicy',
  'hostnameKey',
  'livenessProbe',
  'readinessProbe',
  'startupProbe',
  'lifecycle',
  'resources',
  'resourcePercentages',
  'terminationGracePeriodSeconds',
  'volumes',
  'volumeDevices',
  'volumeMounts',
  'env',
  'initContainers',
  'mountOptions',
];

t.test("every field of the reference's schema is in the table, with a note", async (t) => {
  for (const f of REFERENCE_CONFIG) t.ok(CONFIG_FIELDS[f]?.note, f);
  for (const f of REFERENCE_PATCH) t.ok((ENTRY_FIELDS as Record<string, { note: string }>)[f]?.note, f);
  t.equal(Object.keys(ENTRY_FIELDS).length, REFERENCE_PATCH.length, 'no field of our own in mountPodPatch');
});

t.test('a bad entry is refused alone, naming the entry and the field', async (t) => {
  const config = parseGlobalConfig(`
mountPodPatch:
  - ceMountImage: a
  - ceMountImage: b
    readinessProbe: {exec: {commnd: [stat, /]}}
  - ceMountImage: c
    bogusField: 1
  - ceMountImage: d
    volumes: [{name: jfs-dir, emptyDir: {}}]
    volumeMounts: [{name: jfs-dir, mountPath: /x}]
  - ceMountImage: e
    volumeMounts: [{name: nowhere, mountPath: /x}]
  - ceMountImage: f
    dnsPolicy: Sometimes
  - ceMountImage: g
    labels: {"bad key!": x}
  - ceMountImage: h
`);
  t.same(
    config.mountPodPatch.map((p) => p.ceMountImage),
    ['a', 'h'],
  );
  const byEntry = Object.fromEntries(config.issues.map((i) => [i.entry, i]));
  t.match(byEntry[1], {
    path: 'mountPodPatch[1].readinessProbe.exec.commnd',
    effect: 'entry-refused',
    message: /unknown field/,
  });
  t.match(byEntry[2], { path: 'mountPodPatch[2].bogusField', message: /unknown field \(the fields are: pvcSelector/ });
  t.match(byEntry[3], { message: /"jfs-dir" is a name the client's own pod spec uses/ });
  t.match(byEntry[4], { message: /volume "nowhere" is not in this entry's volumes/ });
  t.match(byEntry[5], { path: 'mountPodPatch[5].dnsPolicy', message: /not one of ClusterFirst/ });
  t.match(byEntry[6], { message: /is not a valid label key/ });
  for (const i of config.issues)
    t.match(i.message, new RegExp(`^mountPodPatch\\[${i.entry}\\]`), 'the message names the entry');
});

t.test('known fields that do not apply here are reported, and the entry applies', async (t) => {
  const config = parseGlobalConfig(
    'enableKubeletListMountPod: true\nmysteryKnob: 1\nmountPodPatch: [{eeMountImage: ee, ceMountImage: ce, cacheDirs: [{type: EmptyDir}]}]',
  );
  t.equal(config.mountPodPatch[0].ceMountImage, 'ce');
  t.same(config.mountPodPatch[0].cacheDirs, [{ type: 'EmptyDir' }], 'cacheDirs is honoured (src/config/cache-dirs.ts)');
  t.notOk(
    config.issues.some((i) => i.path.includes('cacheDirs')),
    'an honoured field is not reported',
  );
  t.match(config.issues, [
    { path: 'enableKubeletListMountPod', effect: 'field-ignored', message: /lists Mount Pods from the API server/ },
    { path: 'mysteryKnob', effect: 'field-ignored', message: /unknown field/ },
    { path: 'mountPodPatch[0].eeMountImage', effect: 'field-ignored', message: /Enterprise Edition/ },
  ]);
  t.match(parseGlobalConfig('mountPodPatch: [{cacheDirs: [{type: Disk}]}]').issues[0], {
    effect: 'entry-refused',
    message: /not one of HostPath, PVC, EmptyDir, Ephemeral/,
  });
});

const volume: VolumeSource = {
  pvName: 'pv-1',
  subdir: 'sub',
  readOnly: false,
  attributes: {},
  mountOptions: [],
  secret: { name: 's', keys: ['metaurl'], envNames: [], formatFlags: [], volumeName: 'myjfs' },
};

t.test('templates: the reference four, with plain values only', async (t) => {
  const values = { VOLUME_ID: 'pv-1', VOLUME_NAME: 'myjfs', SUB_PATH: 'a/b', MOUNT_POINT: '/mnt/x' };
  t.same(renderTemplates({ a: ['${MOUNT_POINT}/${SUB_PATH}', '${VOLUME_ID}-${VOLUME_NAME}-${OTHER}'] }, values, 'w'), {
    a: ['/mnt/x/a/b', 'pv-1-myjfs-${OTHER}'],
  });
  t.throws(() => renderTemplates(['${SUB_PATH}'], { ...values, SUB_PATH: 'x;$(id)' }, 'w'), DenyError);
  t.same(renderTemplates(['no template'], { ...values, SUB_PATH: 'x;$(id)' }, 'w'), ['no template'], 'unused: fine');
  // In a Mount Pod the mount point is the host path; env, probes and init containers see it.
  const config = parseGlobalConfig(`
mountPodPatch:
  - env: [{name: WHERE, value: "\${MOUNT_POINT}|\${VOLUME_NAME}"}]
    initContainers: [{name: setup, image: busybox, args: ["\${VOLUME_ID}"]}]
`);
  const plan = planMountPod({ nodeName: 'n', namespace: 'ns', volume, options: { config } });
  t.equal(plan.pod.spec!.containers[0].env!.find((e) => e.name === 'WHERE')!.value, `${plan.mountPoint}|myjfs`);
  t.same(
    plan.pod.spec!.initContainers!.map((c) => c.args),
    [['pv-1']],
  );
});

t.test("a sidecar's probes read the mount point from env at run time", async (t) => {
  const out = execFileSync(
    'sh',
    [
      '-c',
      MOUNT_POINT_EXEC_SCRIPT,
      'sh',
      'printf',
      '%s|',
      '${MOUNT_POINT}/x',
      'a${MOUNT_POINT}b${MOUNT_POINT}',
      '$(id);',
    ],
    {
      env: { JFS_MOUNT_POINT: '/var/lib/a b', PATH: process.env.PATH },
    },
  ).toString();
  t.equal(out, '/var/lib/a b/x|a/var/lib/a bb/var/lib/a b|$(id);|');
});

t.test('nodeSelector and resources of any name reach the settings', async (t) => {
  const config = parseGlobalConfig(`
mountPodPatch:
  - nodeSelector: {matchLabels: {zone: a}}
    resources: {limits: {nvidia.com/gpu: "1", ephemeral-storage: 2Gi}}
  - nodeSelector: {matchLabels: {zone: b}}
    ceMountImage: other
`);
  const on = (labels?: Record<string, string>) =>
    computeMountSettings(volume, undefined, { config }, [], { node: labels && { labels } });
  t.same(on({ zone: 'a' }).resources.limits, {
    cpu: '2',
    memory: '5Gi',
    'nvidia.com/gpu': '1',
    'ephemeral-storage': '2Gi',
  });
  t.not(on({ zone: 'a' }).image, 'other');
  t.equal(on({ zone: 'b' }).image, 'other');
  t.same(on(undefined).resources.limits, { cpu: '2', memory: '5Gi' }, 'an unknown node matches no nodeSelector');
});

t.test("the migration check lists every field of the reference's examples", async (t) => {
  for (const file of ['reference-example.yaml', 'mount-pod/reference-example.yaml', 'all-patch-fields.yaml']) {
    const objects = parseManifests(readFileSync(path.join(TESTDATA, file), 'utf8'), file);
    const rows = checkObjects(objects);
    const listed = (object: KubernetesObject, field: string) =>
      rows.some(
        (r) => r.object.endsWith(object.metadata!.name!) && (r.field === field || r.field.startsWith(`${field} `)),
      );
    const expected: [KubernetesObject, string][] = [];
    for (const o of objects) {
      if (o.kind === 'ConfigMap') {
        const raw = parseYaml((o as V1ConfigMap).data!['config.yaml']) as Record<string, unknown>;
        for (const k of Object.keys(raw)) if (k !== 'mountPodPatch') expected.push([o, k]);
        (raw.mountPodPatch as Record<string, unknown>[]).forEach((e, i) => {
          for (const k of Object.keys(e)) expected.push([o, `mountPodPatch[${i}].${k}`]);
        });
      } else if (o.kind === 'StorageClass') {
        const sc = o as V1StorageClass;
        for (const k of Object.keys(sc.parameters ?? {})) expected.push([o, `parameters.${k}`]);
        (sc.mountOptions ?? []).forEach((_, i) => expected.push([o, `mountOptions[${i}]`]));
      } else if (o.kind === 'PersistentVolume') {
        const pv = o as V1PersistentVolume;
        for (const k of Object.keys(pv.spec!.csi!.volumeAttributes ?? {}))
          expected.push([o, `spec.csi.volumeAttributes.${k}`]);
        (pv.spec!.mountOptions ?? []).forEach((_, i) => expected.push([o, `spec.mountOptions[${i}]`]));
      } else if (o.kind === 'Secret') {
        const s = o as V1Secret;
        for (const k of Object.keys({ ...s.data, ...s.stringData })) expected.push([o, `data.${k}`]);
      }
    }
    t.ok(expected.length > 10, `${file}: fields found`);
    for (const [o, field] of expected)
      t.ok(listed(o, field), `${file}: ${o.kind} ${o.metadata!.name} ${field} is listed`);
    for (const r of rows) t.ok(r.note.length > 10, `${r.object} ${r.field}: ${r.status} with a reason`);
  }
  // The reference example: its label- and name-selected entries with privileged fields are refused (ADR 0005).
  const rows = checkObjects(parseManifests(readFileSync(path.join(TESTDATA, 'reference-example.yaml'), 'utf8'), 'x'));
  t.match(
    rows.find((r) => r.field === 'mountPodPatch[7].ceMountImage'),
    { status: 'refused', note: /may set only resources/ },
  );
  t.match(
    rows.find((r) => r.field === 'mountPodPatch[6].resources'),
    { status: 'differs' },
  );
  t.match(
    rows.find((r) => r.field === 'mountPodPatch[9].readinessProbe'),
    { status: 'honoured' },
  );
  t.match(renderCheckTable(rows), /^OBJECT +FIELD +STATUS +NOTE\n/);
});

t.test('check: exit codes, JSON, a left-behind reference webhook, bad input', async (t) => {
  const out: string[] = [];
  const err: string[] = [];
  const io = (stdin: string) => ({
    readStdin: () => stdin,
    stdout: (s: string) => void out.push(s),
    stderr: (s: string) => void err.push(s),
  });
  const webhook =
    'apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: juicefs-admission-webhook}\nwebhooks: []\n';
  t.equal(await checkCommand({ files: ['-'], output: 'json' }, io(webhook)), 1, 'refused: exit 1');
  t.match(JSON.parse(out.join('')), {
    refused: 1,
    rows: [{ field: 'webhooks', status: 'refused', note: /delete it/ }],
  });
  out.length = 0;
  const fine =
    'apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: n}\nstringData: {metaurl: x, accesskey: y}\n';
  t.equal(await checkCommand({ files: ['-'], output: 'table' }, io(fine)), 0, 'nothing refused: exit 0');
  t.match(out.join(''), /data\.accesskey +honoured +read as access-key/);
  t.equal(await checkCommand({ files: ['-'], output: 'table' }, io('a: [')), 2, 'unreadable: exit 2');
  t.equal(await checkCommand({ files: [], output: 'table' }, io('')), 2);
  t.match(err.join(''), /no input/);
});

t.test("check: where each PV's data lies, and a reference webhook that fails closed", async (t) => {
  const rows = checkObjects(
    parseManifests(
      `apiVersion: v1
kind: PersistentVolume
metadata: {name: pvc-1c2d3e4f-aaaa-bbbb-cccc-0123456789ab}
spec:
  persistentVolumeReclaimPolicy: Delete
  mountOptions: [subdir=team-x]
  csi: {driver: csi.juicefs.com, volumeHandle: pvc-1c2d3e4f-aaaa-bbbb-cccc-0123456789ab,
        volumeAttributes: {subPath: pvc-1c2d3e4f-aaaa-bbbb-cccc-0123456789ab}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: static}
spec:
  csi: {driver: csi.juicefs.com, volumeHandle: static}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: bad}
spec:
  csi: {driver: csi.juicefs.com, volumeHandle: bad, volumeAttributes: {subPath: ../x}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: juicefs-admission-webhook}
webhooks: [{name: sidecar.inject.juicefs.com, failurePolicy: Fail}]
`,
      'x',
    ),
  );
  const dir = (name: string) => rows.find((r) => r.object.endsWith(name) && r.field === 'directory');
  t.match(dir('0123456789ab'), {
    status: 'honoured',
    note: /data at \/team-x\/pvc-1c2d3e4f-aaaa-bbbb-cccc-0123456789ab .*removes it unless another PV mounts it/,
  });
  t.match(dir('static'), { status: 'honoured', note: /data at \/static .*reclaim Retain keeps it/ });
  t.match(dir('bad'), { status: 'refused', note: /escapes the volume/ });
  t.match(
    rows.find((r) => r.field === 'webhooks'),
    {
      status: 'refused',
      note: /failurePolicy Fail \(sidecar\.inject\.juicefs\.com\).*blocks every pod CREATE/,
    },
  );
});

t.test("README's config field table is the schema's", async (t) => {
  const readme = readFileSync(path.join(TESTDATA, '../../README.md'), 'utf8');
  const m = /<!-- config-fields:begin -->\n([\s\S]*?)\n<!-- config-fields:end -->/.exec(readme);
  t.ok(m, 'markers present');
  t.equal(m?.[1], renderConfigFieldTable(), 'regenerate with renderConfigFieldTable()');
});

t.test('the CLI: check -f on the reference example exits 1; inject warns of each refused entry', async (t) => {
  const file = path.join(TESTDATA, 'reference-example.yaml');
  const check = spawnSync(process.execPath, [CLI, 'check', '-f', file], { encoding: 'utf8' });
  t.equal(check.status, 1, check.stderr);
  t.match(check.stdout, /mountPodPatch\[7\]\.ceMountImage +refused +mountPodPatch\[7\]\.ceMountImage: an entry whose/);
  const inject = spawnSync(process.execPath, [CLI, 'inject', '-f', file], { encoding: 'utf8' });
  t.equal(inject.status, 0, inject.stderr);
  t.match(inject.stderr, /warning: config\.yaml: mountPodPatch\[1\]\.mountOptions: an entry whose pvcSelector/);
  t.match(inject.stderr, /warning: config\.yaml: enableKubeletListMountPod: true: the node service lists/);
});
