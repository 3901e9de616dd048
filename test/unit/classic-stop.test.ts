// The classic-placement stopper's decision (src/controller/classic-stop.ts), and that the after-admission policy
// admits exactly its command.
import type { V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import t from 'tap';
import { sidecarsToStop, STOP_COMMAND } from '../../src/controller/classic-stop.js';
import { readManifest } from '../../src/local/components.js';

type State = 'running' | number | 'waiting';

function pod(
  restartPolicy: string,
  states: Record<string, State>,
  extra: { phase?: string; deleting?: boolean; init?: string[] } = {},
): V1Pod {
  const status = (name: string, s: State): V1ContainerStatus => ({
    name,
    image: 'x',
    imageID: '',
    ready: s === 'running',
    restartCount: 0,
    state:
      s === 'running'
        ? { running: { startedAt: new Date() } }
        : s === 'waiting'
          ? { waiting: { reason: 'ContainerCreating' } }
          : { terminated: { exitCode: s } },
  });
  return {
    metadata: {
      name: 'p',
      namespace: 'ns',
      uid: 'u1',
      ...(extra.deleting ? { deletionTimestamp: new Date() } : {}),
    },
    spec: {
      restartPolicy,
      initContainers: (extra.init ?? []).map((name) => ({ name })),
      containers: Object.keys(states).map((name) => ({ name })),
    },
    status: {
      phase: extra.phase ?? 'Running',
      containerStatuses: Object.entries(states).map(([n, s]) => status(n, s)),
    },
  };
}

t.test('Never: stops every running sidecar once every app has terminated, whatever its exit code', async (t) => {
  t.same(sidecarsToStop(pod('Never', { 'jfs-mount': 'running', app: 0 })), ['jfs-mount']);
  t.same(sidecarsToStop(pod('Never', { 'jfs-mount': 'running', app: 2 })), ['jfs-mount'], 'a failed app too');
  t.same(
    sidecarsToStop(pod('Never', { 'jfs-mount': 'running', 'jfs-mount-1': 'running', app: 0, app2: 0 })),
    ['jfs-mount', 'jfs-mount-1'],
    'two volumes, two apps',
  );
  t.same(
    sidecarsToStop(pod('Never', { 'jfs-mount': 'running', 'jfs-mount-1': 0, app: 0 })),
    ['jfs-mount'],
    'only running ones',
  );
});

t.test('not while an app runs or has not started', async (t) => {
  t.same(sidecarsToStop(pod('Never', { 'jfs-mount': 'running', app: 0, app2: 'running' })), []);
  t.same(sidecarsToStop(pod('Never', { 'jfs-mount': 'running', app: 'waiting' })), []);
  t.same(
    sidecarsToStop({ ...pod('Never', { 'jfs-mount': 'running', app: 0 }), status: { phase: 'Running' } }),
    [],
    'no statuses yet',
  );
});

t.test('OnFailure: only once every app exited 0 (a failed one is restarted)', async (t) => {
  t.same(sidecarsToStop(pod('OnFailure', { 'jfs-mount': 'running', app: 0 })), ['jfs-mount']);
  t.same(sidecarsToStop(pod('OnFailure', { 'jfs-mount': 'running', app: 1 })), []);
  t.same(sidecarsToStop(pod('OnFailure', { 'jfs-mount': 'running', app: 0, app2: 137 })), []);
});

t.test('never for Always, a pod being deleted, a pod not Running, native sidecars, or no app', async (t) => {
  t.same(sidecarsToStop(pod('Always', { 'jfs-mount': 'running', app: 0 })), []);
  t.same(sidecarsToStop(pod('Never', { 'jfs-mount': 'running', app: 0 }, { deleting: true })), []);
  t.same(sidecarsToStop(pod('Never', { 'jfs-mount': 'running', app: 0 }, { phase: 'Pending' })), []);
  t.same(sidecarsToStop(pod('Never', { app: 0 }, { init: ['jfs-mount'] })), [], 'a native sidecar is the kubelet’s');
  t.same(sidecarsToStop(pod('Never', { 'jfs-mount': 'running' })), [], 'no app container');
  t.same(
    sidecarsToStop(pod('Never', { 'jfs-mount': 'running', 'jfs-format': 0, 'jfs-credentials': 0 })),
    [],
    'injected containers are not apps',
  );
  t.same(sidecarsToStop(pod('Never', { 'my-jfs-mount': 'running', app: 0 })), [], 'a look-alike name is an app');
});

t.test('the exec policy admits exactly STOP_COMMAND', async (t) => {
  const policy = readManifest('after-admission.yaml').find((o) => o.metadata?.name === 'jfs-sidecar-no-exec') as {
    spec: { variables: { name: string; expression: string }[] };
  };
  const stop = policy.spec.variables.find((v) => v.name === 'stop')!.expression;
  const literal = `[${STOP_COMMAND.map((a) => `'${a}'`).join(', ')}]`;
  t.ok(stop.includes(`object.?command.orValue([]) == ${literal}`), `the policy compares the argv with ${literal}`);
});
