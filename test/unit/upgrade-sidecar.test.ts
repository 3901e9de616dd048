// The sidecar actuator's pure parts: the image and gate patches (only what the upgrader may change), the
// canary's verdict, the first gate value, and the handover's place: before the image patch, and a refusal
// stops the pod's upgrade before anything is patched.
import t from 'tap';
import { KubeConfig, type V1Pod } from '@kubernetes/client-node';
import fjp from 'fast-json-patch';
import { pino } from 'pino';
import { needsFirstGate } from '../../src/controller/upgrade-gate.js';
import { UpgradeStepFailed } from '../../src/controller/upgrade-actuator.js';
import {
  canaryPod,
  canaryVerdict,
  expectHandoverCommand,
  SidecarActuator,
} from '../../src/controller/upgrade-sidecar.js';
import { gatePatch, imagePatch } from '../../src/upgrade/patches.js';
import { ANNOTATION_UPGRADE, UPGRADE_READY_CONDITION, type PodUpgradeProgress } from '../../src/upgrade/types.js';

const injected = (): V1Pod => ({
  metadata: { name: 'a', namespace: 'apps', uid: 'u1', resourceVersion: '7', labels: { x: 'y' } },
  spec: {
    nodeName: 'n1',
    readinessGates: [{ conditionType: UPGRADE_READY_CONDITION }],
    initContainers: [
      { name: 'jfs-mount', image: 'old', restartPolicy: 'Always', command: ['sh'] },
      { name: 'jfs-mount-1', image: 'old' },
      { name: 'user-init', image: 'old' },
    ],
    containers: [{ name: 'app', image: 'old' }],
  },
  status: { conditions: [{ type: 'Ready', status: 'True' }] },
});

t.test('the image patch changes the named clients’ image and the upgrade annotation, nothing else', async (t) => {
  const pod = injected();
  const ops = imagePatch(pod, { 'jfs-mount': 'new', 'jfs-mount-1': 'new' }, 'u');
  t.same(ops[0], { op: 'test', path: '/metadata/uid', value: 'u1' }, 'led by the UID test');
  const after = fjp.applyPatch(structuredClone(pod), ops).newDocument;
  t.same(
    after.spec!.initContainers!.map((c) => c.image),
    ['new', 'new', 'old'],
  );
  t.equal(after.spec!.containers[0].image, 'old', 'the app is untouched');
  t.equal(after.metadata!.annotations![ANNOTATION_UPGRADE], 'u');
  const expected = injected();
  expected.spec!.initContainers![0].image = 'new';
  expected.spec!.initContainers![1].image = 'new';
  expected.metadata!.annotations = { [ANNOTATION_UPGRADE]: 'u' };
  t.same(after, expected, 'no other field moves');
});

t.test('the gate patch sets the condition, tests the resourceVersion, and is empty when nothing changes', async (t) => {
  const pod = injected();
  const now = new Date('2026-12-01T16:00:00Z');
  const ops = gatePatch(pod, false, 'Upgrading', 'swap', now);
  t.same(ops.slice(0, 2), [
    { op: 'test', path: '/metadata/uid', value: 'u1' },
    { op: 'test', path: '/metadata/resourceVersion', value: '7' },
  ]);
  const after = fjp.applyPatch(structuredClone(pod), ops).newDocument;
  t.match(
    after.status!.conditions!.find((c) => c.type === UPGRADE_READY_CONDITION),
    {
      status: 'False',
      reason: 'Upgrading',
    },
  );
  t.same(gatePatch(after, false, 'Upgrading', 'swap', now), [], 'already False: no write');
  const back = fjp.applyPatch(structuredClone(after), gatePatch(after, true, 'Upgraded', 'ok', now)).newDocument;
  t.equal(back.status!.conditions!.filter((c) => c.type === UPGRADE_READY_CONDITION).length, 1, 'one condition');
  t.equal(back.status!.conditions!.find((c) => c.type === UPGRADE_READY_CONDITION)!.status, 'True');
});

t.test('the first gate value is needed only by a live pod with the gate and no condition', async (t) => {
  const pod = injected();
  t.ok(needsFirstGate(pod));
  const set = fjp.applyPatch(structuredClone(pod), gatePatch(pod, true, 'Admitted', '', new Date())).newDocument;
  t.notOk(needsFirstGate(set), 'set already');
  const falsePod = fjp.applyPatch(structuredClone(pod), gatePatch(pod, false, 'Upgrading', '', new Date())).newDocument;
  t.notOk(needsFirstGate(falsePod), 'False belongs to the upgrader: never overwritten');
  t.notOk(needsFirstGate({ ...pod, spec: { ...pod.spec!, readinessGates: [] } }), 'no gate');
  t.notOk(needsFirstGate({ ...pod, status: { ...pod.status, phase: 'Succeeded' } }), 'done');
});

t.test('the canary runs juicefs version on the pod’s node; its verdict', async (t) => {
  const c = canaryPod('n1', 'img:1');
  t.equal(c.spec!.nodeName, 'n1');
  t.same(c.spec!.containers[0].command, ['juicefs', 'version']);
  t.equal(c.metadata!.namespace, 'juicefs-system');
  t.equal(canaryPod('n1', 'img:1').metadata!.name, c.metadata!.name, 'one name per node and image');
  t.not(canaryPod('n2', 'img:1').metadata!.name, c.metadata!.name);
  t.equal(canaryVerdict({ status: { phase: 'Pending' } }), undefined, 'still running');
  t.same(canaryVerdict({ status: { phase: 'Succeeded' } }), { ok: true, message: 'juicefs version ran' });
  // Seen on the real node: the container has exited 0 while the pod is still Running.
  t.same(
    canaryVerdict({
      status: {
        phase: 'Running',
        containerStatuses: [
          {
            name: 'canary',
            image: 'x',
            imageID: 'y',
            ready: false,
            restartCount: 0,
            state: { terminated: { exitCode: 0, reason: 'Completed' } },
          },
        ],
      },
    }),
    { ok: true, message: 'juicefs version ran' },
  );
  t.match(
    canaryVerdict({
      status: {
        phase: 'Pending',
        containerStatuses: [
          {
            name: 'canary',
            image: 'x',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: 'ErrImagePull', message: 'not found' } },
          },
        ],
      },
    }),
    { ok: false, message: /ErrImagePull: not found/ },
  );
  t.match(
    canaryVerdict({
      status: {
        phase: 'Failed',
        containerStatuses: [
          {
            name: 'canary',
            image: 'x',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { terminated: { exitCode: 128, reason: 'StartError', message: 'exec: "juicefs": not found' } },
          },
        ],
      },
    }),
    { ok: false, message: /exited 128 \(StartError\)/ },
  );
});

t.test('the holder’s command: the argv shape the fd holder’s exec policy admits', async (t) => {
  t.same(expectHandoverCommand(['jfs-mount', 'jfs-mount-1'], 60), [
    'node',
    '/app/dist/src/cli/main.js',
    'fd-holder',
    'expect-handover',
    '--name=jfs-mount',
    '--name=jfs-mount-1',
    '--ttl=60',
  ]);
  t.match(expectHandoverCommand(['jfs-mount']).at(-1), /^--ttl=[0-9]{1,5}$/);
  t.throws(() => expectHandoverCommand(['app']), /not a JuiceFS client container/);
});

t.test('a refused handover fails the pod before its image is patched', async (t) => {
  const kc = new KubeConfig();
  // No API at this address: a patch attempt would fail with a connection error, not UpgradeStepFailed.
  kc.loadFromClusterAndUser({ name: 'none', server: 'https://127.0.0.1:1', skipTLSVerify: true }, { name: 'none' });
  const calls: string[][] = [];
  const actuator = new SidecarActuator({
    kubeConfig: kc,
    log: pino({ level: 'silent' }),
    handover: (_pod, clients) => {
      calls.push(clients);
      return Promise.reject(new UpgradeStepFailed('holder says no'));
    },
  });
  const rec: PodUpgradeProgress = {
    namespace: 'apps',
    name: 'a',
    uid: 'u1',
    phase: 'HandingOver',
    containers: [
      { name: 'jfs-mount', fromImage: 'old', toImage: 'new' },
      { name: 'jfs-mount-1', fromImage: 'old', toImage: 'new' },
    ],
  };
  await t.rejects(
    actuator.step(injected(), rec, {
      apiVersion: 'x',
      kind: 'JuiceFSUpgrade',
      metadata: { name: 'u' },
      spec: { kind: 'sidecar', target: { image: 'new' } },
    }),
    { name: 'UpgradeStepFailed', message: 'holder says no' },
  );
  t.same(calls, [['jfs-mount', 'jfs-mount-1']], 'the handover was asked for both clients, once');
});
