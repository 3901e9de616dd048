// The rollout planner (src/upgrade/plan.ts) on observed pods: maxUnavailable (unready pods count), the
// partition, pause/resume/abort, the failure rule, completion judged from the container status.
import t from 'tap';
import type { V1Pod } from '@kubernetes/client-node';
import { observeSidecarPod, normalizeImage, type PodObservation } from '../../src/upgrade/clients.js';
import { maxUnavailableOf, plan } from '../../src/upgrade/plan.js';
import {
  UPGRADE_READY_CONDITION,
  type JuiceFSUpgrade,
  type UpgradeSpec,
  type UpgradeStatus,
} from '../../src/upgrade/types.js';

const OLD = 'juicedata/mount:ce-v1.2.0';
const NEW = 'juicedata/mount:ce-v1.3.1';
const T0 = new Date('2026-12-01T16:00:00Z');
const at = (s: number) => new Date(T0.getTime() + s * 1000);

interface PodOpts {
  image?: string;
  imageID?: string;
  ready?: boolean;
  clientReady?: boolean;
  waiting?: string;
  created?: number;
  labels?: Record<string, string>;
  ns?: string;
}

/** An injected pod as the informer holds it: native jfs-mount, running, with the gate True. */
function pod(name: string, o: PodOpts = {}): V1Pod {
  const image = o.image ?? OLD;
  const running = !o.waiting;
  return {
    metadata: {
      name,
      namespace: o.ns ?? 'apps',
      uid: `uid-${name}`,
      creationTimestamp: at(o.created ?? 0),
      labels: { 'done.sidecar.juicefs.com/inject': 'true', ...o.labels },
    },
    spec: {
      nodeName: 'node-1',
      readinessGates: [{ conditionType: UPGRADE_READY_CONDITION }],
      initContainers: [{ name: 'jfs-mount', image, restartPolicy: 'Always' }],
      containers: [{ name: 'app', image: 'busybox' }],
    },
    status: {
      phase: 'Running',
      conditions: [
        { type: 'Ready', status: (o.ready ?? true) ? 'True' : 'False' },
        { type: UPGRADE_READY_CONDITION, status: 'True' },
      ],
      initContainerStatuses: [
        {
          name: 'jfs-mount',
          image: normalizeImage(image),
          imageID: o.imageID ?? `sha256:${image === OLD ? 'old' : 'new'}`,
          ready: running && (o.clientReady ?? true),
          started: running,
          restartCount: 0,
          state: running ? { running: {} } : { waiting: { reason: o.waiting, message: 'nope' } },
        },
      ],
    },
  };
}

const names = (n: number) => Array.from({ length: n }, (_, i) => `p${String(i).padStart(2, '0')}`);

function upgrade(spec: Partial<UpgradeSpec> = {}, status?: UpgradeStatus): JuiceFSUpgrade {
  return {
    apiVersion: 'jfs-sidecar.juicefs.com/v1alpha1',
    kind: 'JuiceFSUpgrade',
    metadata: { name: 'u', generation: 1 },
    spec: { kind: 'sidecar', target: { image: NEW }, strategy: { maxUnavailable: 2 }, ...spec },
    status,
  };
}

const obs = (pods: V1Pod[]): PodObservation[] => pods.map(observeSidecarPod);

t.test(
  'maxUnavailable 2, partition 3 over 10 pods: the first two start; the last three are beyond the cut',
  async (t) => {
    const p = plan({
      upgrade: upgrade({ strategy: { maxUnavailable: 2, partition: 3 } }),
      pods: obs(names(10).map((n) => pod(n))),
      now: T0,
    });
    t.same(
      p.start.map((r) => r.name),
      ['p00', 'p01'],
    );
    t.same(p.start[0].containers, [{ name: 'jfs-mount', fromImage: OLD, toImage: NEW, fromImageID: 'sha256:old' }]);
    t.equal(p.start[0].phase, 'Preparing');
    t.match(p.status.counts, { selected: 10, inScope: 7, partitioned: 3, inProgress: 2, pending: 5, unavailable: 2 });
    t.equal(p.status.phase, 'Progressing');
    t.match(
      p.status.conditions?.find((c) => c.type === 'Progressing'),
      { status: 'True' },
    );
  },
);

t.test('a pod unready for another reason takes a slot, and is not started itself', async (t) => {
  const pods = names(5).map((n) => pod(n, { ready: n !== 'p00' }));
  const p = plan({ upgrade: upgrade(), pods: obs(pods), now: T0 });
  t.same(
    p.start.map((r) => r.name),
    ['p01'],
    'one slot left of two',
  );
  t.equal(p.status.counts?.unavailable, 2);
  t.match(p.status.message, /not Ready, waiting: apps\/p00|2\/2 unavailable/);
});

t.test('a swap completes on a new imageID with the client started and ready; the next pod starts', async (t) => {
  const first = plan({
    upgrade: upgrade({ strategy: { maxUnavailable: 1 } }),
    pods: obs([pod('a'), pod('b')]),
    now: T0,
  });
  const status = structuredClone(first.status);
  status.pods![0].phase = 'Swapping';
  // Patched, but the kubelet has not restarted the container yet: same imageID, still the old image.
  const patched = pod('a');
  patched.spec!.initContainers![0].image = NEW;
  let p = plan({
    upgrade: upgrade({ strategy: { maxUnavailable: 1 } }, status),
    pods: obs([patched, pod('b')]),
    now: at(5),
  });
  t.equal(p.status.pods![0].phase, 'Swapping', 'the spec alone does not make it done');
  t.same(p.start, []);
  // The new image but not ready yet.
  p = plan({
    upgrade: upgrade({ strategy: { maxUnavailable: 1 } }, status),
    pods: obs([pod('a', { image: NEW, clientReady: false }), pod('b')]),
    now: at(6),
  });
  t.equal(p.status.pods![0].phase, 'Swapping', 'not ready: not done');
  // The same imageID on the new tag (the kubelet did not restart it) is not done either.
  p = plan({
    upgrade: upgrade({ strategy: { maxUnavailable: 1 } }, status),
    pods: obs([pod('a', { image: NEW, imageID: 'sha256:old' }), pod('b')]),
    now: at(7),
  });
  t.equal(p.status.pods![0].phase, 'Swapping', 'same imageID: not done');
  p = plan({
    upgrade: upgrade({ strategy: { maxUnavailable: 1 } }, status),
    pods: obs([pod('a', { image: NEW }), pod('b')]),
    now: at(8),
  });
  t.equal(p.status.pods![0].phase, 'Succeeded');
  t.equal(p.status.pods![0].finishedAt, at(8).toISOString());
  t.same(
    p.finished.map((r) => r.name),
    ['a'],
  );
  t.same(
    p.start.map((r) => r.name),
    ['b'],
    'the freed slot goes to the next pod',
  );
});

t.test('a swap whose image does not run fails the pod and stops the rollout', async (t) => {
  const status: UpgradeStatus = {
    pods: [
      {
        namespace: 'apps',
        name: 'a',
        uid: 'uid-a',
        phase: 'Swapping',
        containers: [{ name: 'jfs-mount', fromImage: OLD, toImage: NEW, fromImageID: 'sha256:old' }],
        startedAt: T0.toISOString(),
      },
    ],
  };
  const p = plan({
    upgrade: upgrade({}, status),
    pods: obs([pod('a', { image: NEW, waiting: 'CrashLoopBackOff' }), pod('b'), pod('c')]),
    now: at(3),
  });
  t.equal(p.status.pods![0].phase, 'Failed');
  t.match(p.status.pods![0].message, /CrashLoopBackOff/);
  t.same(p.start, [], 'nothing new starts');
  t.equal(p.status.phase, 'Failed');
  t.match(p.status.message, /apps\/a failed: .*CrashLoopBackOff.*the rollout stopped/);
  t.match(
    p.status.conditions?.find((c) => c.type === 'Failed'),
    { status: 'True', reason: 'PodFailed' },
  );
  t.equal(p.status.counts?.failed, 1);
});

t.test('a swap not done within podTimeoutSeconds fails', async (t) => {
  const first = plan({
    upgrade: upgrade({ strategy: { maxUnavailable: 1, podTimeoutSeconds: 60 } }),
    pods: obs([pod('a'), pod('b')]),
    now: T0,
  });
  const status = structuredClone(first.status);
  status.pods![0].phase = 'Swapping';
  const p = plan({
    upgrade: upgrade({ strategy: { maxUnavailable: 1, podTimeoutSeconds: 60 } }, status),
    pods: obs([pod('a'), pod('b')]),
    now: at(61),
  });
  t.equal(p.status.pods![0].phase, 'Failed');
  t.match(p.status.pods![0].message, /not done after 60 s \(in Swapping\)/);
  t.equal(p.status.phase, 'Failed');
});

t.test('pause: nothing new starts, what is under way goes on; resume starts again; abort stops for good', async (t) => {
  const pods = obs(names(4).map((n) => pod(n)));
  const first = plan({ upgrade: upgrade(), pods, now: T0 });
  const paused = plan({ upgrade: upgrade({ paused: true }, first.status), pods, now: at(1) });
  t.same(paused.start, []);
  t.equal(paused.status.phase, 'Paused');
  t.equal(paused.status.counts?.inProgress, 2, 'the two under way stay under way');
  t.match(
    paused.status.conditions?.find((c) => c.type === 'Paused'),
    { status: 'True' },
  );
  // The two finish while paused.
  const done = structuredClone(paused.status);
  for (const r of done.pods!) Object.assign(r, { phase: 'Succeeded', finishedAt: at(2).toISOString() });
  const stillPaused = plan({ upgrade: upgrade({ paused: true }, done), pods, now: at(3) });
  t.same(stillPaused.start, []);
  t.equal(stillPaused.status.phase, 'Paused');
  const resumed = plan({ upgrade: upgrade({ paused: false }, done), pods, now: at(4) });
  t.same(
    resumed.start.map((r) => r.name),
    ['p02', 'p03'],
  );
  const aborted = plan({ upgrade: upgrade({ abort: true }, done), pods, now: at(4) });
  t.same(aborted.start, []);
  t.equal(aborted.status.phase, 'Aborted');
});

t.test('completed once every pod in scope is on the target; pods beyond the partition untouched', async (t) => {
  const pods = [pod('a', { image: NEW }), pod('b', { image: NEW }), pod('c')];
  const p = plan({ upgrade: upgrade({ strategy: { maxUnavailable: 2, partition: 1 } }), pods: obs(pods), now: T0 });
  t.same(p.start, [], 'c is beyond the partition');
  t.equal(p.status.phase, 'Completed');
  t.match(p.status.counts, { current: 2, partitioned: 1, pending: 0 });
});

t.test('a pod created later does not shift the cut under a started pod', async (t) => {
  const first = plan({
    upgrade: upgrade({ strategy: { maxUnavailable: 1, partition: 1 } }),
    pods: obs([pod('b'), pod('c')]),
    now: T0,
  });
  t.same(
    first.start.map((r) => r.name),
    ['b'],
  );
  // "a" sorts first and the cut (the first n − 1) moves: "b" stays in scope, "c" stays beyond.
  const p = plan({
    upgrade: upgrade({ strategy: { maxUnavailable: 1, partition: 1 } }, first.status),
    pods: obs([pod('a'), pod('b'), pod('c')]),
    now: at(1),
  });
  t.equal(p.status.pods?.find((r) => r.name === 'b')?.phase, 'Preparing');
  t.match(p.status.counts, { selected: 3, inScope: 2, partitioned: 1 });
  t.notOk(
    p.start.some((r) => r.name === 'c'),
    'c is never started',
  );
});

t.test('selection by namespace and labels; order by creation', async (t) => {
  const pods = [
    pod('z', { created: 1, labels: { tier: 'web' } }),
    pod('y', { created: 2, labels: { tier: 'web' } }),
    pod('x', { created: 3, labels: { tier: 'db' } }),
    pod('w', { created: 0, labels: { tier: 'web' }, ns: 'other' }),
  ];
  const p = plan({
    upgrade: upgrade({
      selector: { namespaces: ['apps'], podSelector: { matchLabels: { tier: 'web' } } },
      strategy: { maxUnavailable: 1, order: 'creation' },
    }),
    pods: obs(pods),
    now: T0,
  });
  t.equal(p.status.counts?.selected, 2);
  t.same(
    p.start.map((r) => r.name),
    ['z'],
    'the oldest first',
  );
});

t.test('invalid objects say why and start nothing', async (t) => {
  const both = plan({
    upgrade: upgrade({ target: { image: NEW, fromSettings: true } }),
    pods: obs([pod('a')]),
    now: T0,
  });
  t.equal(both.status.phase, 'Invalid');
  t.match(both.status.message, /exactly one of image and fromSettings/);
  const pct = plan({ upgrade: upgrade({ strategy: { maxUnavailable: '0%' } }), pods: obs([pod('a')]), now: T0 });
  t.equal(pct.status.phase, 'Invalid');
  const pvc = plan({ upgrade: upgrade({ selector: { pvcNames: ['data'] } }), pods: obs([pod('a')]), now: T0 });
  t.match(pvc.status.message, /not supported yet/);
  t.same([both.start, pct.start, pvc.start], [[], [], []]);
});

t.test('fromSettings: the per-pod image comes from the settings; a pod they cannot tell waits', async (t) => {
  const p = plan({
    upgrade: upgrade({ target: { fromSettings: true } }),
    pods: obs([pod('a'), pod('b')]),
    settingsImages: (o) => (o.name === 'a' ? { images: { 'jfs-mount': NEW } } : undefined),
    now: T0,
  });
  t.same(
    p.start.map((r) => r.name),
    ['a'],
  );
  t.match(p.status.message, /no target known from the settings: apps\/b/);
});

t.test('fromSettings for a kind whose settings the controller cannot read: Invalid, with the reason', async (t) => {
  const p = plan({ upgrade: upgrade({ target: { fromSettings: true } }), pods: obs([pod('a')]), now: T0 });
  t.equal(p.status.phase, 'Invalid');
  t.match(p.status.message, /fromSettings is not supported for sidecar upgrades yet: .*give target.image/);
  t.same(p.start, []);
  // The reason a pod's settings cannot tell is shown with the pod.
  const why = plan({
    upgrade: upgrade({ target: { fromSettings: true } }),
    pods: obs([pod('a')]),
    settingsImages: () => ({ unknown: 'no PersistentVolume has its volume handle' }),
    now: T0,
  });
  t.match(
    why.status.message,
    /no target known from the settings: apps\/a \(no PersistentVolume has its volume handle\)/,
  );
});

t.test('maxUnavailable as a percentage rounds down, never below one', async (t) => {
  t.equal(maxUnavailableOf('25%', 10), 2);
  t.equal(maxUnavailableOf('5%', 10), 1);
  t.equal(maxUnavailableOf(3, 10), 3);
  t.equal(maxUnavailableOf(undefined, 10), 1);
  t.throws(() => maxUnavailableOf(0, 10));
  t.throws(() => maxUnavailableOf('x', 10));
});

t.test('a pod deleted during its swap leaves the record; the rollout goes on', async (t) => {
  const first = plan({
    upgrade: upgrade({ strategy: { maxUnavailable: 1 } }),
    pods: obs([pod('a'), pod('b')]),
    now: T0,
  });
  const p = plan({
    upgrade: upgrade({ strategy: { maxUnavailable: 1 } }, first.status),
    pods: obs([pod('b')]),
    now: at(1),
  });
  t.same(
    p.start.map((r) => r.name),
    ['b'],
  );
  t.match(p.status.message, /apps\/a went away during its swap/);
});

t.test('image references compare as containerd reports them', async (t) => {
  t.equal(normalizeImage('busybox'), 'docker.io/library/busybox:latest');
  t.equal(normalizeImage('juicedata/mount:ce-v1.3.1'), 'docker.io/juicedata/mount:ce-v1.3.1');
  t.equal(normalizeImage('localhost:5000/a/b'), 'localhost:5000/a/b:latest');
  t.equal(normalizeImage('r.example/x@sha256:ab'), 'r.example/x@sha256:ab');
});
