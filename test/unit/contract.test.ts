// Pure pieces of the contract: quantities, path patterns, Secret copies, mount options, selectors, config.
import t from 'tap';
import { ConfigError, parseGlobalConfig } from '../../src/config/schema.js';
import { matchesPvcSelector } from '../../src/config/selector.js';
import { PathPatternError, renderPathPattern } from '../../src/contract/path-pattern.js';
import { parseQuantity } from '../../src/contract/quantity.js';
import { parseDuration } from '../../src/contract/duration.js';
import {
  parseEnvs,
  secretCopyData,
  secretCopyName,
  SecretFormatError,
  summariseSecret,
} from '../../src/contract/secret-copy.js';
import { checkSubdir } from '../../src/controller/controller-service.js';
import { filterUserAnnotations } from '../../src/mount/allowlist.js';
import { mergeOptions, parseOption, renderOptions } from '../../src/mount/mount-options.js';

t.test('quantities', async (t) => {
  const value = (text: string) => {
    const q = parseQuantity(text)!;
    return Number(q.num) / Number(q.den);
  };
  t.equal(value('500m'), 0.5);
  t.equal(value('2'), 2);
  t.equal(value('1Gi'), 2 ** 30);
  t.equal(value('5G'), 5e9);
  t.equal(value('1e3'), 1000);
  t.equal(value('-1'), -1);
  t.equal(value('0'), 0);
  for (const bad of ['', 'abc', '1 Gi', '$(x)', '1GiB', '--1'])
    t.equal(parseQuantity(bad), undefined, `"${bad}" is not a quantity`);
});

t.test('path patterns', async (t) => {
  const pvc = { name: 'data', namespace: 'team', labels: { app: 'web' }, annotations: { 'x.io/dir': 'a/b' } };
  t.equal(renderPathPattern('${.PVC.namespace}-${.PVC.name}', { pvc }), 'team-data');
  t.equal(renderPathPattern('${.PVC.labels.app}/${.PVC.annotations.x.io/dir}', { pvc }), 'web/a/b');
  t.equal(renderPathPattern('/fixed//${.PVC.name}/', { pvc }), 'fixed/data', 'normalised, relative');
  t.throws(() => renderPathPattern('${.PVC.labels.missing}', { pvc }), PathPatternError, 'missing label');
  t.throws(() => renderPathPattern('../${.PVC.name}', { pvc }), PathPatternError, 'escape refused');
  t.throws(() => renderPathPattern('${.PVC.uid}', { pvc }), PathPatternError, 'unknown placeholder');
  t.throws(() => renderPathPattern('/', { pvc }), PathPatternError, 'root refused');
  t.throws(
    () =>
      renderPathPattern('${.PVC.annotations.x.io/dir}', { pvc: { ...pvc, annotations: { 'x.io/dir': '../../etc' } } }),
    PathPatternError,
  );
});

t.test('controller subdirectories', async (t) => {
  t.equal(checkSubdir('pvc-1'), 'pvc-1');
  t.equal(checkSubdir('a/b'), 'a/b');
  for (const bad of ['', '/abs', '..', 'a/../b', 'a//b', '.', '.jfs-sidecar', '.jfs-sidecar/volumes'])
    t.throws(() => checkSubdir(bad), `"${bad}" refused`);
});

t.test('Secret copies', async (t) => {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const source = {
    metaurl: b64('redis://x'),
    envs: b64('{TZ: UTC, JFS_RSA_PASSPHRASE: "1"}'),
    'format-options': b64('trash-days=1, block-size=4096'),
  };
  const copy = secretCopyData(source);
  t.same(Object.keys(copy).sort(), [
    'envs.JFS_RSA_PASSPHRASE',
    'envs.TZ',
    'format-options',
    'format.block-size',
    'format.trash-days',
    'metaurl',
  ]);
  t.equal(Buffer.from(copy['format.block-size'], 'base64').toString(), '4096', 'each format flag a key of its own');
  t.equal(Buffer.from(copy['envs.TZ'], 'base64').toString(), 'UTC');
  const summary = summariseSecret(source);
  t.same(summary.envNames, ['JFS_RSA_PASSPHRASE', 'TZ']);
  t.same(summary.formatFlags, ['block-size', 'trash-days'], 'names only, no value');
  t.same(parseEnvs(''), {});
  t.throws(() => parseEnvs('[1,2]'), SecretFormatError);
  t.throws(() => parseEnvs('{"bad name": 1}'), SecretFormatError);
  t.equal(secretCopyName('data'), 'juicefs-data-secret');
  const long = secretCopyName('x'.repeat(250));
  t.ok(long.length <= 253, 'long names are cut to fit');
  t.not(secretCopyName(`${'x'.repeat(249)}a`), secretCopyName(`${'x'.repeat(249)}b`), 'and stay distinct');
});

t.test('mount options', async (t) => {
  t.same(parseOption('cache-size=100'), { key: 'cache-size', value: '100' });
  t.same(parseOption('--writeback'), { key: 'writeback' });
  t.type(parseOption('a b=1'), 'string', 'space in key refused');
  t.type(parseOption('$(X)=1'), 'string');
  t.type(parseOption('k=a\nb'), 'string', 'control characters refused');
  t.same(
    mergeOptions([[{ key: 'a', value: '1' }, { key: 'b' }], [{ key: 'a', value: '2' }]]),
    [{ key: 'a', value: '2' }, { key: 'b' }],
    'later wins in place',
  );
  t.same(
    renderOptions([
      { key: 'allow_other' },
      { key: 'cache-size', value: '$(SECRET)' },
      { key: 'fsname', value: '$(SECRET)' },
    ]),
    ['--cache-size=$$(SECRET)', '-o', 'allow_other,fsname=$$(SECRET)'],
    '$ escaped from Kubernetes expansion',
  );
});

t.test('PVC selectors', async (t) => {
  const pvc = { name: 'p', labels: { tier: 'gold', team: 'a' }, storageClassName: 'sc' };
  t.ok(matchesPvcSelector(undefined, pvc));
  t.ok(matchesPvcSelector({ matchLabels: { tier: 'gold' }, matchName: 'p', matchStorageClassName: 'sc' }, pvc));
  t.notOk(matchesPvcSelector({ matchName: 'q' }, pvc));
  t.ok(matchesPvcSelector({ matchExpressions: [{ key: 'team', operator: 'In', values: ['a', 'b'] }] }, pvc));
  t.notOk(matchesPvcSelector({ matchExpressions: [{ key: 'team', operator: 'NotIn', values: ['a'] }] }, pvc));
  t.ok(matchesPvcSelector({ matchExpressions: [{ key: 'x', operator: 'DoesNotExist' }] }, pvc));
  t.notOk(matchesPvcSelector({ matchExpressions: [{ key: 'x', operator: 'Exists' }] }, pvc));
  t.notOk(
    matchesPvcSelector({ matchExpressions: [{ key: 'x', operator: 'Weird' }] }, pvc),
    'unknown operator selects nothing',
  );
});

t.test('global config', async (t) => {
  t.equal(parseGlobalConfig('').enableNativeSidecar, true);
  t.equal(parseGlobalConfig('enableNativeSidecar: false').enableNativeSidecar, false);
  // An invalid switch keeps its default and is reported; the rest of the document applies.
  const badSwitch = parseGlobalConfig('enableNativeSidecar: "no"\nupgradeReadinessGate: true');
  t.equal(badSwitch.enableNativeSidecar, true);
  t.equal(badSwitch.nativeSidecarSet, undefined);
  t.equal(badSwitch.upgradeReadinessGate, true);
  t.match(badSwitch.issues, [
    { path: 'enableNativeSidecar', effect: 'field-ignored', message: /expected true or false/ },
  ]);
  t.throws(() => parseGlobalConfig('mountPodPatch: {}'), ConfigError);
  // A bad entry is refused alone, named with its field; the others apply.
  const badEntry = parseGlobalConfig(
    'mountPodPatch: [{ceMountImage: a}, {resources: {limits: {cpu: lots}}}, {ceMountImage: c}]',
  );
  t.same(
    badEntry.mountPodPatch.map((p) => p.ceMountImage),
    ['a', 'c'],
  );
  t.match(badEntry.issues, [
    {
      path: 'mountPodPatch[1].resources.limits.cpu',
      entry: 1,
      effect: 'entry-refused',
      message: /"lots" is not a quantity/,
    },
  ]);
  // Any resource name, as the reference reads corev1.ResourceRequirements.
  t.same(
    parseGlobalConfig('mountPodPatch: [{resources: {limits: {nvidia.com/gpu: "1"}}}]').mountPodPatch[0].resources,
    {
      limits: { 'nvidia.com/gpu': '1' },
    },
  );
  t.throws(() => parseGlobalConfig(': : :'), ConfigError);
  t.equal(parseGlobalConfig('annotationBounds: {maxCpu: "8"}').annotationBounds.maxCpu, '8');
});

t.test('user annotations', async (t) => {
  const bounds = { maxCpu: '2', maxMemory: '4Gi' };
  const r = filterUserAnnotations(
    {
      'juicefs/mount-cpu-limit': '1',
      'juicefs/mount-memory-limit': '8Gi',
      'juicefs/mount-image': 'evil',
      'juicefs/mount-cpu-request': '0',
      other: 'x',
    },
    bounds,
    'PVC p',
  );
  t.same(r.accepted, { 'juicefs/mount-cpu-limit': '1', 'juicefs/mount-cpu-request': '0' });
  t.equal(r.warnings.length, 2);
  t.match(r.warnings.join('\n'), /mount-memory-limit ignored: 8Gi is above/);
  t.match(r.warnings.join('\n'), /mount-image ignored/);
  // The controller's own seal on every sealed PVC is no user tuning: warning about it on each pod was noise.
  const sealed = filterUserAnnotations({ 'juicefs.com/secret-copy-seal': 'x' }, bounds, 'PVC p');
  t.same(sealed, { accepted: {}, warnings: [] }, 'the seal is neither accepted nor warned about');
});

t.test('durations', async (t) => {
  t.equal(parseDuration('30s'), 30_000);
  t.equal(parseDuration('1m30s'), 90_000);
  t.equal(parseDuration('2h'), 7_200_000);
  t.equal(parseDuration('500ms'), 500);
  t.equal(parseDuration('1.5s'), 1500);
  for (const bad of ['', '10', 'soon', '1d', '-1s', '1s ago'])
    t.equal(parseDuration(bad), undefined, `"${bad}" is not a duration`);
});
