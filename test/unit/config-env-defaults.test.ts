// The reference's older env switch ENABLE_NODE_SELECTOR=1 (its node service's env): Mount Pods placed by a
// nodeSelector unless the ConfigMap says otherwise; the ConfigMap's own enableNodeSelector wins when set.
import t from 'tap';
import { parseGlobalConfig } from '../../src/config/schema.js';
import { planMountPod } from '../../src/node/mount-pod-plan.js';

const volume = {
  pvName: 'pv-a',
  subdir: 'pv-a',
  readOnly: false,
  attributes: {},
  mountOptions: [],
  secret: { name: 's', keys: ['metaurl', 'name'], envNames: [], formatFlags: [] },
};
const placement = (config: ReturnType<typeof parseGlobalConfig>) => {
  const spec = planMountPod({ nodeName: 'node-a', namespace: 'juicefs-system', volume, options: { config } }).pod.spec!;
  return { nodeName: spec.nodeName, nodeSelector: spec.nodeSelector };
};

t.test('the env default applies only where config.yaml is silent', async (t) => {
  const on = { enableNodeSelector: true };
  t.equal(parseGlobalConfig(undefined).enableNodeSelector, false, 'off by default');
  t.equal(parseGlobalConfig(undefined, on).enableNodeSelector, true, 'no ConfigMap: the env');
  t.equal(parseGlobalConfig('mountPodPatch: []\n', on).enableNodeSelector, true, 'a ConfigMap without the field');
  t.equal(parseGlobalConfig('enableNodeSelector: false\n', on).enableNodeSelector, false, 'the ConfigMap wins');
  t.equal(parseGlobalConfig('enableNodeSelector: true\n').enableNodeSelector, true);
});

t.test('and the Mount Pod is placed accordingly', async (t) => {
  t.same(placement(parseGlobalConfig(undefined)), { nodeName: 'node-a', nodeSelector: undefined });
  t.same(placement(parseGlobalConfig(undefined, { enableNodeSelector: true })), {
    nodeName: undefined,
    nodeSelector: { 'kubernetes.io/hostname': 'node-a' },
  });
});
