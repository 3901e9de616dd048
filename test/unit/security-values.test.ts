// Issue 11, classes 6–8: what data may put in the privileged client's env and
// argv, which ConfigMap patches a namespace user can opt into, exact quantity
// comparison, and pods that would be invalid after injection.
import type { V1Pod } from '@kubernetes/client-node';
import t, { type Test } from 'tap';
import { parseGlobalConfig, selectsByUserFacts } from '../../src/config/schema.js';
import { CLIENT_ENV_NAMES, isClientEnvName } from '../../src/contract/client-env.js';
import { DenyError } from '../../src/contract/deny.js';
import { MOUNT_POINT_ENV, POD_UID_ENV } from '../../src/contract/keys.js';
import { PathPatternError, renderPathPattern } from '../../src/contract/path-pattern.js';
import { compareQuantities, parseQuantity } from '../../src/contract/quantity.js';
import { parseEnvs, SecretFormatError } from '../../src/contract/secret-copy.js';
import { normaliseSubdir, SubdirError } from '../../src/contract/subdir.js';
import { injectPod } from '../../src/inject/inject.js';
import { filterUserAnnotations } from '../../src/mount/allowlist.js';
import { ENV_METAURL, expandEnvReferences, FormatError, formatCommand } from '../../src/mount/format.js';
import { mountArgs } from '../../src/mount/containers.js';
import { computeMountSettings } from '../../src/mount/settings.js';
import { renderOptions } from '../../src/mount/mount-options.js';
import type { PvcIdentity, VolumeSource } from '../../src/mount/volume.js';
import type { ResolvedVolume } from '../../src/resolve/types.js';

const config = parseGlobalConfig('');

/** Asserts that fn throws an error satisfying ok. */
function throwsWith(t: Test, fn: () => unknown, ok: (err: unknown) => boolean, message: string): void {
  try {
    fn();
  } catch (err) {
    t.ok(ok(err), `${message}: ${(err as Error).message}`);
    return;
  }
  t.fail(`${message}: did not throw`);
}

function source(over: Partial<VolumeSource> = {}): VolumeSource {
  return {
    pvName: 'pv-1',
    subdir: 'pv-1',
    readOnly: false,
    attributes: {},
    mountOptions: [],
    secret: { name: 'juicefs-data-secret', keys: ['metaurl'], envNames: ['TZ'], formatFlags: [] },
    ...over,
  };
}
const claim: PvcIdentity = { name: 'data', namespace: 'team-a', labels: {}, annotations: {} };

function pod(spec: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod {
  return {
    metadata: { name: 'app', namespace: 'team-a' },
    spec: {
      containers: [{ name: 'app', image: 'app', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
      ...spec,
    },
  };
}

function inject(p: V1Pod, src = source(), cfg = config) {
  const volume: ResolvedVolume = { source: src, binding: { podVolumeName: 'data', pvc: claim } };
  return injectPod(p, [volume], { mode: 'sidecar', config: cfg });
}

t.test('class 6: envs is an allow-list; loader, shell and injector variables are refused', async (t) => {
  const refused = [
    'LD_PRELOAD',
    'LD_LIBRARY_PATH',
    'PATH',
    'BASH_ENV',
    'ENV',
    'IFS',
    'PS4',
    'SHELLOPTS',
    'GCONV_PATH',
    'NODE_OPTIONS',
    'GODEBUG',
    'HOME',
    ENV_METAURL,
    MOUNT_POINT_ENV,
    POD_UID_ENV,
    'JFS_NAME',
    'JFS_STORAGE',
    'JFS_FOREGROUND',
    'JFS_SUPERVISOR',
    'JUICEFS_ANYTHING',
    '_FUSE_STATE_PATH',
    'AWS_lower',
  ];
  for (const name of refused) {
    t.notOk(isClientEnvName(name), `${name} is not a client variable`);
    throwsWith(
      t,
      () => parseEnvs(`{${name}: x}`),
      (err: unknown) =>
        err instanceof SecretFormatError && err.message.includes(`"${name}"`) && /"envs"/.test(err.message),
      `envs naming ${name} is refused, naming the key and the variable`,
    );
  }
  for (const name of ['TZ', 'AWS_ACCESS_KEY_ID', 'AWS_REGION', 'ACCESS_KEY', 'HTTPS_PROXY', 'JFS_RSA_PASSPHRASE'])
    t.ok(isClientEnvName(name), `${name} is a client variable`);
  t.ok(CLIENT_ENV_NAMES.every(isClientEnvName));
});

t.test("class 6: the injector's own env comes last and is never duplicated", async (t) => {
  // An admin patch (ConfigMap) may not pre-empt the injector's variables either: the ordering rule.
  const cfg = parseGlobalConfig(`
mountPodPatch:
  - env:
      - {name: ${MOUNT_POINT_ENV}, value: /}
      - {name: ${ENV_METAURL}, value: "redis://attacker"}
      - {name: ${POD_UID_ENV}, value: other-pod}
      - {name: GOMAXPROCS, value: "2"}
`);
  const out = inject(pod(), source(), cfg);
  t.equal(out.kind, 'injected');
  if (out.kind !== 'injected') return;
  const sidecar = out.pod.spec!.initContainers!.find((c) => c.name === 'jfs-mount')!;
  const names = sidecar.env!.map((e) => e.name);
  t.same(names, ['TZ', 'GOMAXPROCS', POD_UID_ENV, MOUNT_POINT_ENV, ENV_METAURL]);
  t.equal(new Set(names).size, names.length, 'each name once');
  t.ok(sidecar.env!.find((e) => e.name === ENV_METAURL)?.valueFrom?.secretKeyRef, 'the metaurl is the Secret’s');
  t.match(sidecar.env!.find((e) => e.name === MOUNT_POINT_ENV)?.value, /^\/var\/lib\/juicefs\/volume\//);
});

t.test('class 7: a patch selected by PVC labels or names may set only bounded resources', async (t) => {
  t.ok(selectsByUserFacts({ matchLabels: { tier: 'gold' } }));
  t.ok(selectsByUserFacts({ matchName: 'data' }));
  t.ok(selectsByUserFacts({ matchExpressions: [{ key: 'x', operator: 'DoesNotExist' }] }), 'opting out too');
  t.notOk(selectsByUserFacts({ matchStorageClassName: 'sc' }));
  t.notOk(selectsByUserFacts(undefined));
  for (const selector of [
    '{matchLabels: {tier: gold}}',
    '{matchName: data}',
    '{matchName: data, matchStorageClassName: sc}',
  ]) {
    for (const field of [
      'ceMountImage: evil/image',
      'eeMountImage: evil/image',
      'env: [{name: X, value: y}]',
      'mountOptions: [writeback]',
      'labels: {a: b}',
      'annotations: {a: b}',
    ]) {
      // The entry is refused (only it: the second one applies), naming the field.
      const cfg = parseGlobalConfig(
        `mountPodPatch:\n  - pvcSelector: ${selector}\n    ${field}\n  - ceMountImage: ok/image\n`,
      );
      t.same(
        cfg.mountPodPatch.map((p) => p.index),
        [1],
        `${selector} with ${field} is refused`,
      );
      t.match(cfg.issues[0], {
        entry: 0,
        effect: 'entry-refused',
        path: `mountPodPatch[0].${field.split(':')[0]}`,
        message: /may set only resources/,
      });
    }
  }
  const refusal = (text: string) => {
    const cfg = parseGlobalConfig(text);
    return cfg.mountPodPatch.length === 0 && cfg.issues[0]?.effect === 'entry-refused' ? cfg.issues[0].message : '';
  };
  t.match(
    refusal('mountPodPatch:\n  - pvcSelector: {matchLabels: {a: b}}\n    resources: {limits: {memory: 6Gi}}\n'),
    /above annotationBounds/,
  );
  t.match(
    refusal('mountPodPatch:\n  - pvcSelector: {matchLabels: {a: b}}\n    resources: {limits: {cpu: "0"}}\n'),
    /cannot remove a limit/,
  );
  // A user-selectable entry may not ask for resources users cannot ask for (extended resources, hugepages).
  t.match(
    refusal('mountPodPatch:\n  - pvcSelector: {matchLabels: {a: b}}\n    resources: {limits: {nvidia.com/gpu: "1"}}\n'),
    /only cpu and memory/,
  );
  // Every field but resources (and the selectors) is refused in a user-selectable entry: the table decides.
  for (const field of [
    'hostNetwork: true',
    'volumes: [{name: h, hostPath: {path: /}}]\n    volumeMounts: [{name: h, mountPath: /h}]',
    'initContainers: []',
  ]) {
    t.match(
      refusal(`mountPodPatch:\n  - pvcSelector: {matchLabels: {a: b}}\n    ${field}\n`),
      /may set only resources/,
      field,
    );
  }
  // A nodeSelector with NotIn / DoesNotExist is matched by a pod that does not name the label: user-selectable too.
  t.match(
    refusal(
      'mountPodPatch:\n  - nodeSelector: {matchExpressions: [{key: zone, operator: NotIn, values: [a]}]}\n    ceMountImage: x\n',
    ),
    /nodeSelector has NotIn or DoesNotExist/,
  );
  t.equal(
    parseGlobalConfig('mountPodPatch:\n  - nodeSelector: {matchLabels: {zone: a}}\n    ceMountImage: x\n').mountPodPatch
      .length,
    1,
  );
  // Within bounds, or with bounds the admin raised, resources stay selectable by labels (the reference driver's use).
  const ok = parseGlobalConfig(
    'annotationBounds: {maxMemory: 16Gi}\nmountPodPatch:\n  - pvcSelector: {matchLabels: {a: b}}\n    resources: {requests: {cpu: 500m}, limits: {memory: 16Gi}}\n',
  );
  t.equal(ok.mountPodPatch[0].resources?.limits?.memory, '16Gi');
  // Admin-owned selectors keep every field.
  const sc = parseGlobalConfig(
    'mountPodPatch:\n  - pvcSelector: {matchStorageClassName: gold}\n    ceMountImage: registry.example/gold\n    env: [{name: X, value: y}]\n    resources: {limits: {memory: 64Gi}}\n',
  );
  t.equal(sc.mountPodPatch[0].ceMountImage, 'registry.example/gold');
});

t.test('class 8: quantities are compared exactly', async (t) => {
  const cmp = (a: string, b: string) => compareQuantities(parseQuantity(a)!, parseQuantity(b)!);
  t.equal(cmp('1.0000000000000001', '1'), 1, 'no float rounding');
  t.equal(cmp('1e3', '1k'), 0);
  t.equal(cmp('1Ki', '1024'), 0);
  t.equal(cmp('0.5', '500m'), 0);
  t.equal(cmp('999999999999999999Ei', '1e36'), 1, 'a huge quantity is a number, above anything smaller');
  t.equal(cmp('2.000000000000000000001', '2'), 1);
  t.equal(cmp('1999999999999999999m', '2e15'), -1);
  t.equal(parseQuantity('1e100000'), undefined, 'an absurd exponent is no quantity');
  t.equal(cmp('1Ei', '1e18'), 1, '1Ei is 2^60, not 10^NaN');
  t.equal(cmp('1E', '1e18'), 0);
  for (const bad of ['1.2.3', '.', '', '1e', 'e3', '1 k', 'Infinity', 'NaN', '0x10'])
    t.equal(parseQuantity(bad), undefined, `"${bad}" is not a quantity`);

  // A user's annotation just above the admin's bound is refused, one exactly at it accepted.
  const bounds = { maxCpu: '2', maxMemory: '5Gi' };
  const at = filterUserAnnotations(
    { 'juicefs/mount-cpu-limit': '2.0', 'juicefs/mount-memory-limit': '5368709120' },
    bounds,
    'x',
  );
  t.same(at.warnings, []);
  const above = filterUserAnnotations(
    { 'juicefs/mount-cpu-limit': '2.0000000000000001', 'juicefs/mount-memory-limit': '5368709121' },
    bounds,
    'x',
  );
  t.equal(above.warnings.length, 2, 'both are above the bound');
  t.same(above.accepted, {});
  const exa = filterUserAnnotations({ 'juicefs/mount-memory-limit': '1000Ei' }, bounds, 'x');
  t.same(exa.accepted, {}, 'an Ei quantity is above the bound too (it once parsed to NaN and passed)');

  // Property: the same value in different notations compares equal, and order follows BigInt order (seeded).
  let seed = 0x5eed;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let i = 0; i < 500; i++) {
    const a = BigInt(rand(10 ** 6)) * 10n ** BigInt(rand(12));
    const b = a + BigInt(rand(3)) - 1n;
    t.equal(cmp(`${a}`, `${a}000m`), 0);
    t.equal(cmp(`${a * 1000n}`, `${a}k`), 0);
    t.equal(cmp(`${a}e3`, `${a}k`), 0);
    t.equal(cmp(`${a * 1024n}`, `${a}Ki`), 0);
    t.equal(cmp(`${a}`, `${b}`), a < b ? -1 : a > b ? 1 : 0);
    t.equal(cmp(`${a}.000000000000000001`, `${a}`), 1);
  }
});

t.test('class 8: no value from data reaches argv as a $(VAR) expansion', async (t) => {
  t.throws(() => normaliseSubdir('a/$(JFS_METAURL)'), SubdirError);
  t.throws(
    () =>
      renderPathPattern('${.PVC.annotations.dir}', {
        pvc: { name: 'p', namespace: 'n', annotations: { dir: '$(JFS_METAURL)' } },
      }),
    PathPatternError,
  );
  // A PV subdirectory with a bare `$` is a name, kept as written: Kubernetes would see `$$`.
  const settings = computeMountSettings(source({ subdir: 'a$b' }), claim, { config }, []);
  const args = mountArgs(settings, 9567);
  t.ok(args.includes('--subdir=a$$b'));
  const expanded = expandEnvReferences(args, { [ENV_METAURL]: 'redis://secret', [MOUNT_POINT_ENV]: '/m' });
  t.ok(expanded.includes('--subdir=a$b'), 'kubelet expands it back to the name');
  t.notOk(
    expanded.slice(0, -2).some((a) => a.includes('redis://secret')),
    'only the positional holds the metaurl',
  );
  t.same(args.slice(-2), [`$(${ENV_METAURL})`, `$(${MOUNT_POINT_ENV})`], 'positionals are the injector’s own env');
  t.throws(
    () => computeMountSettings(source({ mountOptions: ['cache-dir=/a/$(JFS_METAURL)'] }), claim, { config }, []),
    DenyError,
  );
  t.throws(() => computeMountSettings(source({ subdir: '$(JFS_METAURL)' }), claim, { config }, []), DenyError);
});

t.test('class 8: options juicefs does not know are never rendered as flags', async (t) => {
  // A dashed key can only be meant as a juicefs flag: one juicefs lacks is denied at admission.
  for (const bad of ['evil-flag=1', 'generate-bash-completion', 'cache-sise=1']) {
    throwsWith(
      t,
      () => computeMountSettings(source({ mountOptions: [bad] }), claim, { config }, []),
      (err: unknown) => err instanceof DenyError && /no flag of juicefs mount/.test(err.message),
      bad,
    );
  }
  // Anything else is a FUSE option (mount.juicefs's rule): it goes to FUSE through -o, never as `--key`.
  const ok = computeMountSettings(
    source({ mountOptions: ['allow_other', 'cache-size=1024', 'writeback', 'ro', 'nonempty', 'help', 'v'] }),
    claim,
    { config },
    [],
  );
  t.same(
    ok.options.map((o) => o.key),
    ['allow_other', 'cache-size', 'writeback', 'nonempty', 'help', 'v'],
  );
  const argv = renderOptions(ok.options);
  t.same(argv, ['--cache-size=1024', '--writeback', '-o', 'allow_other,nonempty,help,v']);
  t.notOk(
    argv.some((a) => /^--(help|v|nonempty)\b/.test(a)),
    'help, v and nonempty are not juicefs flags here',
  );
});

t.test('class 8: format-options juicefs format does not know are refused', async (t) => {
  t.throws(() => formatCommand(['name', 'metaurl', 'storage'], ['trash-days', 'nonsense']), FormatError);
  t.throws(() => formatCommand(['name', 'metaurl', 'storage'], ['cache-size']), FormatError, 'a mount flag');
  const ok = formatCommand(['name', 'metaurl', 'storage'], ['trash-days', 'block-size', 'compress']);
  t.ok(ok.args.includes('--compress=$(JFS_FORMAT_COMPRESS)'));
  // A value reaches argv only through its env var, which kubelet expands once: a `$(…)` in it stays literal.
  const tag = formatCommand(['name', 'metaurl'], ['tag']).args;
  t.ok(tag.includes('--tag=$(JFS_FORMAT_TAG)'));
  t.same(
    expandEnvReferences(tag, { JFS_FORMAT_TAG: 'a$(JFS_METAURL)', JFS_METAURL: 'redis://secret' }).filter((a) =>
      a.startsWith('--tag'),
    ),
    ['--tag=a$(JFS_METAURL)'],
  );
});

t.test('class 8: a pod that would be invalid after injection is denied', async (t) => {
  const deny = (p: V1Pod, src = source(), re: RegExp) =>
    throwsWith(
      t,
      () => inject(p, src),
      (err: unknown) => err instanceof DenyError && re.test(err.message),
      re.source,
    );
  const withPort = (hostNetwork: boolean, port: Record<string, unknown>) =>
    pod({
      hostNetwork,
      containers: [
        { name: 'app', image: 'app', ports: [port as never], volumeMounts: [{ name: 'data', mountPath: '/d' }] },
      ],
    });
  deny(withPort(true, { containerPort: 9567 }), source(), /port 9567.*hostNetwork/);
  deny(withPort(false, { containerPort: 9567 }), source(), /port 9567.*network/);
  deny(withPort(true, { containerPort: 80, hostPort: 9567 }), source(), /port 9567/);
  t.equal(
    inject(withPort(false, { containerPort: 80, hostPort: 9567 })).kind,
    'injected',
    'a host port maps elsewhere',
  );
  t.equal(inject(withPort(true, { containerPort: 9567, protocol: 'UDP' })).kind, 'injected', 'UDP is another port');
  const initPort = pod({
    hostNetwork: true,
    initContainers: [{ name: 'init', image: 'i', ports: [{ containerPort: 9567 }] }],
  });
  deny(initPort, source(), /"init" declares port 9567/);
  deny(pod(), source({ mountOptions: ['cache-dir=/c:/c/'] }), /distinct absolute paths/);
  deny(pod(), source({ mountOptions: ['cache-dir=/c/../etc'] }), /without "\.\."/);
  deny(
    pod(),
    source({ mountOptions: ['cache-dir=/var/lib/juicefs/volume'] }),
    /two volumes at \/var\/lib\/juicefs\/volume/,
  );
});
