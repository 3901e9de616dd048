// What Mount Pods take from the node service's pod, node and env (issue 14 item 5); whole plans in the goldens
// mount-pod/inherit-node-pod and mount-pod/service-account.
import t from 'tap';
import { inheritanceOf, NO_INHERITANCE } from '../../src/node/mount-pod-inherit.js';
import { planMountPod } from '../../src/node/mount-pod-plan.js';
import { parseGlobalConfig } from '../../src/config/schema.js';

const volume = {
  pvName: 'pv-1',
  readOnly: false,
  attributes: {},
  mountOptions: [],
  secret: { name: 's', keys: ['name', 'metaurl'], envNames: [], formatFlags: [] },
};
const plan = (config: string, inherit = NO_INHERITANCE, attributes: Record<string, string> = {}) =>
  planMountPod({
    nodeName: 'n1',
    namespace: 'juicefs-system',
    volume: { ...volume, attributes },
    options: { config: parseGlobalConfig(config) },
    inherit,
  });

t.test('from the pod, the node and env', async (t) => {
  const { inheritance, warnings } = inheritanceOf(
    { spec: { containers: [], tolerations: [{ operator: 'Exists' }], serviceAccountName: 'node-sa' } },
    { metadata: { name: 'n1', labels: { 'kubernetes.io/hostname': 'h1' } } },
    { JUICEFS_MOUNT_PRIORITY_NAME: 'p', JUICEFS_MOUNT_PREEMPTION_POLICY: 'Sometimes' },
  );
  t.same(inheritance, {
    priorityClassName: 'p',
    tolerations: [{ operator: 'Exists' }],
    serviceAccountName: 'node-sa',
    hostname: 'h1',
  });
  t.match(warnings[0], /JUICEFS_MOUNT_PREEMPTION_POLICY="Sometimes".*left out/, 'a bad policy: a warning, not a pod');
  t.same(inheritanceOf(undefined, undefined, {}).inheritance, NO_INHERITANCE, 'nothing known: the defaults');
});

t.test('in the plan: placement, service account and token', async (t) => {
  t.equal(plan('').pod.spec?.nodeName, 'n1', 'nodeName by default');
  t.equal(plan('').pod.spec?.priorityClassName, 'system-node-critical');
  const bySelector = plan('enableNodeSelector: true', { ...NO_INHERITANCE, hostname: 'h1' }).pod.spec;
  t.same([bySelector?.nodeName, bySelector?.nodeSelector], [undefined, { 'kubernetes.io/hostname': 'h1' }]);
  const inherited = plan('', { ...NO_INHERITANCE, serviceAccountName: 'node-sa' }).pod.spec;
  t.same(
    [inherited?.serviceAccountName, inherited?.automountServiceAccountToken],
    ['node-sa', false],
    "the node service's account is named, its token never mounted",
  );
  const own = plan(
    '',
    { ...NO_INHERITANCE, serviceAccountName: 'node-sa' },
    {
      'juicefs/mount-service-account': 'iam',
    },
  ).pod.spec;
  t.same([own?.serviceAccountName, own?.automountServiceAccountToken], ['iam', true], 'the admin’s own, with token');
  t.equal(
    plan('', { ...NO_INHERITANCE, tolerations: [{ operator: 'Exists' }] }).hash,
    plan('').hash,
    'inheritance is not in the settings hash: a new toleration does not replace running Mount Pods',
  );
  const bad = parseGlobalConfig('enableNodeSelector: "yes"');
  t.equal(bad.enableNodeSelector, false, 'an invalid switch keeps its default (ADR 0020)');
  t.match(bad.issues, [{ path: 'enableNodeSelector', message: /enableNodeSelector: expected true or false/ }]);
});
