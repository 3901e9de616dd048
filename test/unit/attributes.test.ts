// The one table of volume settings and what it drives: the settings parser,
// the user allow-list, the default bounds, the Mount Pod plan and the README.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { DEFAULT_GLOBAL_CONFIG, parseGlobalConfig } from '../../src/config/schema.js';
import {
  ATTRIBUTE_SPECS,
  AttributeError,
  DEFAULT_RESOURCE_VALUES,
  parseVolumeAttributes,
  RESOURCE_ATTRS,
  renderAttributeTable,
  USER_KEYS,
} from '../../src/contract/attributes.js';
import { DenyError } from '../../src/contract/deny.js';
import { ATTR, DEFAULT_RESOURCES } from '../../src/contract/keys.js';
import { filterUserAnnotations } from '../../src/mount/allowlist.js';
import { computeMountSettings } from '../../src/mount/settings.js';
import type { VolumeSource } from '../../src/mount/volume.js';
import { planMountPod } from '../../src/node/mount-pod-plan.js';

const source = (attributes: Record<string, string>): VolumeSource => ({
  pvName: 'pv-1',
  subdir: 'pv-1',
  readOnly: false,
  attributes,
  mountOptions: [],
  secret: { name: 's', keys: ['metaurl'], envNames: [], formatFlags: [] },
});
const context = { config: DEFAULT_GLOBAL_CONFIG };

t.test('the table holds every attribute key of the contract, once', async (t) => {
  const keys = ATTRIBUTE_SPECS.map((s) => s.key);
  t.same([...keys].sort(), Object.values(ATTR).sort());
  t.equal(new Set(keys).size, keys.length);
});

t.test("the README's table of volume settings is the one rendered from the table", async (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const m = /<!-- volume-settings:begin -->\n([\s\S]*?)\n<!-- volume-settings:end -->/.exec(readme);
  t.ok(m, 'README has the volume-settings section');
  t.equal(m?.[1], renderAttributeTable(), 'README.md is stale: paste renderAttributeTable() between the markers');
});

t.test('namespace users may set the resource keys only', async (t) => {
  t.same([...USER_KEYS].sort(), [...RESOURCE_ATTRS].sort());
  t.same([...RESOURCE_ATTRS].sort(), [ATTR.cpuLimit, ATTR.cpuRequest, ATTR.memoryLimit, ATTR.memoryRequest].sort());
  const r = filterUserAnnotations(
    { [ATTR.deleteDelay]: '1h', [ATTR.cleanCache]: 'true' },
    DEFAULT_GLOBAL_CONFIG.annotationBounds,
    'PVC p',
  );
  t.same(r.accepted, {}, 'Mount Pod-only keys are the admin’s');
  t.equal(r.warnings.length, 2);
});

t.test('the default user bound is the default limits', async (t) => {
  t.same(DEFAULT_GLOBAL_CONFIG.annotationBounds, {
    maxCpu: DEFAULT_RESOURCES.limits.cpu,
    maxMemory: DEFAULT_RESOURCES.limits.memory,
  });
  t.same(parseGlobalConfig('').annotationBounds, DEFAULT_GLOBAL_CONFIG.annotationBounds);
  t.same(DEFAULT_RESOURCE_VALUES, {
    [ATTR.cpuRequest]: DEFAULT_RESOURCES.requests.cpu,
    [ATTR.cpuLimit]: DEFAULT_RESOURCES.limits.cpu,
    [ATTR.memoryRequest]: DEFAULT_RESOURCES.requests.memory,
    [ATTR.memoryLimit]: DEFAULT_RESOURCES.limits.memory,
  });
});

t.test('each attribute parses its values, and names its key when it refuses one', async (t) => {
  t.same(
    parseVolumeAttributes({
      [ATTR.deleteDelay]: '1m30s',
      [ATTR.cleanCache]: 'true',
      [ATTR.cpuLimit]: '3',
      [ATTR.mountLabels]: 'a=1,b=2',
      [ATTR.mountAnnotations]: '{"x": 1}',
      'csi.storage.k8s.io/provisioner-secret-name': 'not ours',
    }),
    {
      deleteDelay: '1m30s',
      cleanCache: true,
      cpuLimit: '3',
      mountLabels: { a: '1', b: '2' },
      mountAnnotations: { x: '1' },
    },
  );
  t.same(parseVolumeAttributes({ [ATTR.cleanCache]: 'false', [ATTR.mountImage]: '' }), {
    cleanCache: false,
    mountImage: undefined,
  });
  const bad: [string, string][] = [
    [ATTR.deleteDelay, 'soon'],
    [ATTR.deleteDelay, '10'],
    [ATTR.cleanCache, 'yes'],
    [ATTR.cpuRequest, 'lots'],
    [ATTR.memoryLimit, '$(SECRET)'],
    [ATTR.mountImage, 'image with spaces'],
    [ATTR.mountLabels, 'novalue'],
    [ATTR.mountAnnotations, '{"broken"'],
    [ATTR.pathPattern, '${.PVC.uid}'],
  ];
  for (const [key, value] of bad) {
    t.throws(() => parseVolumeAttributes({ [key]: value }), { name: 'AttributeError', key }, `${key}: "${value}"`);
    try {
      parseVolumeAttributes({ [key]: value });
    } catch (err) {
      t.ok(err instanceof AttributeError && err.message.startsWith(key), `the message names ${key}`);
    }
  }
});

t.test('an invalid admin attribute is a denial naming the key, never a silent default', async (t) => {
  t.throws(() => computeMountSettings(source({ [ATTR.cpuLimit]: 'lots' }), undefined, context, []), {
    name: 'DenyError',
    code: 'invalid-pv',
    message: 'PersistentVolume pv-1: juicefs/mount-cpu-limit "lots" is not a resource quantity',
  });
  // Mount Pod-only attributes go through the same parser: a bad delay used to become 0.
  const plan = (attributes: Record<string, string>) =>
    planMountPod({ nodeName: 'n', namespace: 'ns', volume: source(attributes), options: context });
  t.throws(() => plan({ [ATTR.deleteDelay]: 'soon' }), {
    name: 'DenyError',
    message: 'PersistentVolume pv-1: juicefs/mount-delete-delay "soon" is not a duration (e.g. 30s, 1m30s)',
  });
  t.throws(() => plan({ [ATTR.cleanCache]: 'True' }), DenyError, 'clean-cache is "true" or "false"');
  t.throws(() => plan({ [ATTR.mountLabels]: 'x' }), /juicefs\/mount-labels entry "x" is not key=value/);
  const ok = plan({ [ATTR.deleteDelay]: '30s', [ATTR.cleanCache]: 'true' });
  t.equal(ok.pod.metadata?.annotations?.['juicefs-delete-delay'], '30s');
  t.equal(ok.pod.metadata?.annotations?.['juicefs-clean-cache'], 'true');
  const off = plan({ [ATTR.cleanCache]: 'false' });
  t.notOk(off.pod.metadata?.annotations?.['juicefs-clean-cache']);
  t.notOk(off.pod.metadata?.annotations?.['juicefs-delete-delay']);
});

t.test('map attributes: JSON, YAML block style (as the reference driver documents it), k=v', async (t) => {
  const labels = (text: string) => parseVolumeAttributes({ 'juicefs/mount-labels': text }).mountLabels;
  t.same(labels('{"app": "web", "n": 1}'), { app: 'web', n: '1' });
  t.same(labels('app: web\nteam: "vision"\n'), { app: 'web', team: 'vision' }, 'YAML block style');
  t.same(labels('{app: web}'), { app: 'web' }, 'YAML flow style');
  t.same(labels('app=web, team=vision'), { app: 'web', team: 'vision' });
  t.same(labels('note: a=b'), { note: 'a=b' }, 'a value with "=" in YAML');
  t.throws(() => labels('app:\n  nested: x'), /not a plain value/);
  t.throws(() => labels('- a\n- b'), /not a JSON or YAML map/);
  t.throws(() => labels('{"app": '), /not a JSON or YAML map/);
  t.throws(() => labels('app'), /not key=value/);
});
