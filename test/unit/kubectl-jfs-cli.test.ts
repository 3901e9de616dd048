// The plugin's pure pieces: -l selectors as kubectl reads them, the upgrade kind the flags ask for, the
// progress lines, kubectl-like tables and -o, and the diagnosis as text.
import t from 'tap';
import { diagnose } from '../../src/diagnose/diagnose.js';
import { kindOf, parseLabelSelector, renderProgress, targetOf } from '../../src/kubectl/upgrade.js';
import { age, parseOutput, serialise, table } from '../../src/kubectl/output.js';
import { renderDiagnosis } from '../../src/kubectl/render-diagnosis.js';
import type { JuiceFSUpgrade } from '../../src/upgrade/types.js';
import { healthySidecar, injectedPod, plainPod, crashLoop } from '../fixtures/diagnose-world.js';

t.test('label selectors as kubectl -l reads them', async (t) => {
  t.same(parseLabelSelector('app=web,tier==fe'), { matchLabels: { app: 'web', tier: 'fe' } });
  t.same(parseLabelSelector('app!=web, env in (a, b),track notin (canary),gpu,!spot'), {
    matchExpressions: [
      { key: 'app', operator: 'NotIn', values: ['web'] },
      { key: 'env', operator: 'In', values: ['a', 'b'] },
      { key: 'track', operator: 'NotIn', values: ['canary'] },
      { key: 'gpu', operator: 'Exists' },
      { key: 'spot', operator: 'DoesNotExist' },
    ],
  });
  t.same(parseLabelSelector('app.kubernetes.io/name=x'), { matchLabels: { 'app.kubernetes.io/name': 'x' } });
  t.throws(() => parseLabelSelector('app=web,,x'), /an empty requirement/);
  t.throws(() => parseLabelSelector('a b c'), /cannot read "a b c"/);
});

t.test('the kind of upgrade the flags and the pod ask for', async (t) => {
  t.equal(kindOf({}, injectedPod('demo', 'app', 'data')), 'sidecar');
  t.equal(kindOf({ recreate: true }), 'mount-pod-recreate');
  t.equal(kindOf({ binary: true }), 'mount-pod-binary');
  t.throws(() => kindOf({ recreate: true, binary: true }), /exclude each other/);
  t.throws(
    () => kindOf({}, plainPod('demo-mp', 'writer', 'shared')),
    /has no sidecar \(Mount Pod mode\): pass --recreate/,
  );
});

t.test('the progress display', async (t) => {
  const u: JuiceFSUpgrade = {
    metadata: { name: 'up1' },
    spec: { kind: 'sidecar', target: { image: 'mount:next' } },
    status: {
      phase: 'Progressing',
      counts: {
        selected: 4,
        inScope: 4,
        succeeded: 1,
        inProgress: 1,
        failed: 0,
        pending: 2,
        partitioned: 0,
        unavailable: 1,
        current: 0,
      },
      pods: [
        {
          namespace: 'demo',
          name: 'a',
          uid: '1',
          phase: 'Succeeded',
          containers: [{ name: 'jfs-mount', fromImage: 'mount:old', toImage: 'mount:next' }],
        },
        { namespace: 'demo', name: 'b', uid: '2', phase: 'Swapping', containers: [] },
      ],
    },
  };
  const lines = renderProgress(u, 8);
  t.equal(lines[0], 'up1  sidecar → mount:next  Progressing');
  t.equal(lines[1], '[##......] 1/4 upgraded, 1 in progress, 2 pending, 0 failed, 0 partitioned, 1 unavailable');
  t.equal(lines[2], '  demo/a  Succeeded  jfs-mount: mount:old → mount:next');
  t.equal(lines[3], '  demo/b  Swapping');
  t.match(
    renderProgress({ ...u, spec: { ...u.spec, paused: true, abort: true } })[0],
    /Progressing \(aborting\) \(paused\)/,
  );
  t.match(
    renderProgress({ metadata: { name: 'x' }, spec: { kind: 'sidecar', target: { fromSettings: true } } })[0],
    /the image of the settings {2}Pending/,
  );
});

t.test('tables and -o like kubectl', async (t) => {
  const rows = [
    { a: 'x', b: '' },
    { a: 'longer', b: 'y' },
  ];
  const cols = [
    { header: 'NAME', value: (r: (typeof rows)[0]) => r.a },
    { header: 'B', value: (r: (typeof rows)[0]) => r.b },
    { header: 'WIDE', value: () => 'w', wide: true },
  ];
  t.equal(table(rows, cols, false), 'NAME     B\nx        <none>\nlonger   y\n');
  t.equal(table(rows, cols, true), 'NAME     B        WIDE\nx        <none>   w\nlonger   y        w\n');
  t.equal(parseOutput(undefined), 'table');
  t.equal(parseOutput('yaml'), 'yaml');
  t.throws(() => parseOutput('xml'), /unable to match a printer suitable for the output format "xml"/);
  t.same(JSON.parse(serialise('X', [{ a: 1 }], 'json')), {
    apiVersion: 'v1',
    kind: 'List',
    metadata: { listKind: 'X' },
    items: [{ a: 1 }],
  });
  t.match(serialise('X', [{ a: 1 }], 'yaml'), /kind: List\n[\s\S]*- a: 1/);
  const now = Date.parse('2026-12-01T12:00:00Z');
  t.equal(age('2026-12-01T11:59:30Z', now), '30s');
  t.equal(age('2026-12-01T11:00:00Z', now), '60m');
  t.equal(age('2026-11-29T12:00:00Z', now), '2d');
});

t.test('the diagnosis as text', async (t) => {
  const healthy = renderDiagnosis(diagnose(healthySidecar()));
  t.match(healthy, /^Debugging pod demo\/app\n\nChain:\n {2}✓ Pod demo\/app: Running/);
  t.match(healthy, /Findings: none[\s\S]*Healthy: pod demo\/app: no problem found/);
  const g = healthySidecar();
  g.pods = [injectedPod('demo', 'app', 'data', crashLoop('jfs-mount'))];
  g.logs = [{ namespace: 'demo', pod: 'app', container: 'jfs-mount', previous: true, lines: ['<FATAL>: boom'] }];
  const broken = renderDiagnosis(diagnose(g));
  t.match(broken, /✗ Container demo\/app\/jfs-mount: CrashLoopBackOff/);
  t.match(
    broken,
    /PROBLEM \[client-crashed\] The JuiceFS client[\s\S]* {4}\| waiting: CrashLoopBackOff[\s\S]* {2}Next: Read why/,
  );
  t.match(broken, /Last log lines of demo\/app jfs-mount \(previous run\):\n {4}<FATAL>: boom/);
  t.match(broken, /Result: pod demo\/app: The JuiceFS client/);
});

t.test('the target: --image, else the settings (Mount Pods only; a sidecar upgrade needs --image)', async (t) => {
  t.same(targetOf('sidecar', 'juicedata/mount:ce-v1.3.1'), { image: 'juicedata/mount:ce-v1.3.1' });
  t.same(targetOf('mount-pod-recreate', undefined), { fromSettings: true });
  t.same(targetOf('mount-pod-binary', undefined), { fromSettings: true });
  t.throws(() => targetOf('sidecar', undefined), /a sidecar upgrade needs --image/);
});
