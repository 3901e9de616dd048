// The diagnosis core (src/diagnose/): each finding code from one broken object in an otherwise healthy world,
// with its cause and next step in plain words; the healthy worlds give no finding. Every FindingCode is covered
// (the last test checks that list against the type's members as written in types.ts).
import { readFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import { diagnose } from '../../src/diagnose/diagnose.js';
import { describeAppPod, describeMountPod, clientVersion, podStatusText } from '../../src/diagnose/inventory.js';
import type { FindingCode, Gathered } from '../../src/diagnose/types.js';
import {
  crashLoop,
  event,
  healthyMountPod,
  healthySidecar,
  injectedPod,
  juicefsClass,
  mountPod,
  namespace,
  plainPod,
  pvc,
  running,
} from '../fixtures/diagnose-world.js';

const covered = new Set<FindingCode>();

function expectFinding(
  t: Test,
  g: Gathered,
  code: FindingCode,
  cause: RegExp,
  next: RegExp,
  severity: 'error' | 'warning' | 'info' = 'error',
) {
  const d = diagnose(g);
  const f = d.findings.find((x) => x.code === code);
  covered.add(code);
  if (!t.ok(f, `finding ${code} among ${d.findings.map((x) => x.code).join(', ') || 'none'}`)) return d;
  t.equal(f!.severity, severity, `${code} is ${severity}`);
  t.match(f!.cause, cause, `${code}: the cause`);
  t.match(f!.next, next, `${code}: the next step`);
  if (severity !== 'info') {
    t.equal(d.healthy, false, 'not healthy');
    t.match(d.summary, /\S/, 'a summary');
  }
  return d;
}

t.test('healthy worlds: no finding, the chain walked', async (t) => {
  const d = diagnose(healthySidecar());
  t.same(d.findings, [], 'sidecar: no finding');
  t.ok(d.healthy);
  t.match(d.summary, /no problem found/);
  t.same(
    d.chain.map((s) => `${s.subject.kind} ${s.status}`),
    [
      'Pod Running',
      'Namespace sidecar',
      'PersistentVolumeClaim Bound',
      'PersistentVolume Bound',
      'Secret present',
      'Container Running',
      'Container mounted',
    ],
    'pod → namespace → PVC → PV → Secret → sidecar → mount',
  );
  const m = diagnose(healthyMountPod());
  t.same(m.findings, [], 'Mount Pod mode: no finding');
  t.ok(
    m.chain.some((s) => s.subject.kind === 'Pod' && s.details.includes('Mount Pod')),
    'the Mount Pod is a step',
  );
});

t.test('the target does not exist', async (t) => {
  const g = { ...healthySidecar(), pods: [] };
  expectFinding(t, g, 'not-found', /Pod demo\/app does not exist/, /kubectl jfs pods -n demo/);
  const p = { ...healthySidecar(), target: { kind: 'pvc' as const, namespace: 'demo', name: 'nope' } };
  expectFinding(t, p, 'not-found', /PersistentVolumeClaim demo\/nope does not exist/, /kubectl jfs pvc/);
  const v = { ...healthySidecar(), target: { kind: 'pv' as const, name: 'nope' } };
  expectFinding(t, v, 'not-found', /PersistentVolume nope does not exist/, /kubectl jfs pv/);
});

t.test('a pod the webhook refused: its ReplicaSet says why', async (t) => {
  const denied = (msg: string) => ({
    ...healthySidecar(),
    target: { kind: 'pod' as const, namespace: 'demo', name: 'web-5d8f-abcde' },
    pods: [],
    events: [event('ReplicaSet', 'demo', 'web-5d8f', 'FailedCreate', msg)],
  });
  expectFinding(
    t,
    denied(
      'Error creating: admission webhook "sidecar.juicefs.com" denied the request: Secret juicefs-system/gone (of PersistentVolume pv1) not found',
    ),
    'secret-missing',
    /Secret juicefs-system\/gone, which PersistentVolume pv1 names, does not exist/,
    /Create the Secret/,
  );
  expectFinding(
    t,
    denied(
      'Error creating: admission webhook "sidecar.juicefs.com" denied the request: PersistentVolume pv1: mountOptions: unknown option "bogus"',
    ),
    'admission-denied',
    /refuses the pods of ReplicaSet demo\/web-5d8f: PersistentVolume pv1: mountOptions/,
    /retries by itself/,
  );
});

t.test('PVC problems', async (t) => {
  const base = healthySidecar();
  const plain = plainPod('demo', 'app', 'data', 'Pending');
  plain.spec!.nodeName = undefined;
  plain.status!.conditions = [
    {
      type: 'PodScheduled',
      status: 'False',
      message: '0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.',
    },
  ];
  const pending = (spec: object, extra: Partial<Gathered> = {}): Gathered => ({
    ...base,
    pods: [plain],
    pvcs: [pvc('demo', 'data', spec, 'Pending')],
    pvs: [],
    mountChecks: [],
    ...extra,
  });
  expectFinding(
    t,
    { ...base, pods: [plain], pvcs: [] },
    'pvc-missing',
    /demo\/data, which pod app mounts, does not exist/,
    /Create it/,
  );
  const d = expectFinding(
    t,
    pending(
      { storageClassName: 'standard' },
      { storageClasses: [juicefsClass(), { metadata: { name: 'standard' }, provisioner: 'rancher.io/local-path' }] },
    ),
    'pvc-not-juicefs',
    /not a JuiceFS volume: its StorageClass standard belongs to provisioner rancher.io\/local-path/,
    /storageClassName set to a JuiceFS class/,
  );
  t.notOk(
    d.findings.some((f) => f.code === 'pod-unschedulable'),
    'the unscheduled pod is explained by the PVC',
  );
  expectFinding(t, pending({}), 'pvc-not-juicefs', /names no StorageClass and no PersistentVolume/, /storageClassName/);
  expectFinding(
    t,
    pending({ storageClassName: 'gone' }),
    'storageclass-missing',
    /StorageClass gone does not exist/,
    /Create the StorageClass/,
  );
  expectFinding(
    t,
    pending(
      { storageClassName: 'juicefs-sc' },
      {
        events: [
          event('PersistentVolumeClaim', 'demo', 'data', 'ProvisioningFailed', 'rpc error: juicefs format failed'),
        ],
      },
    ),
    'pvc-pending',
    /JuiceFS StorageClass juicefs-sc is still Pending: no PV was provisioned for it \(provisioning failed\)/,
    /controller's logs/,
  );
  const wffc = pending(
    { storageClassName: 'lazy' },
    { storageClasses: [juicefsClass('lazy', { volumeBindingMode: 'WaitForFirstConsumer' })] },
  );
  wffc.pods[0].status!.conditions = [
    { type: 'PodScheduled', status: 'False', message: '0/1 nodes: Insufficient cpu.' },
  ];
  const w = expectFinding(
    t,
    wffc,
    'pvc-waiting-for-consumer',
    /WaitForFirstConsumer/,
    /binds once pod app is scheduled/,
    'info',
  );
  covered.add('pod-unschedulable');
  t.match(
    w.findings.find((f) => f.code === 'pod-unschedulable')?.cause ?? '',
    /not scheduled: 0\/1 nodes: Insufficient cpu/,
    "pod-unschedulable: the scheduler's words",
  );
  expectFinding(
    t,
    { ...base, pvcs: [pvc('demo', 'data', { storageClassName: 'juicefs-sc', volumeName: 'pvc-data' }, 'Lost')] },
    'pvc-lost',
    /is Lost/,
    /Re-create the PV/,
  );
  expectFinding(
    t,
    { ...base, pvs: [] },
    'pv-missing',
    /bound to PersistentVolume pvc-data, which no longer exists/,
    /Re-create the PV/,
  );
});

t.test('Secret problems', async (t) => {
  const d = expectFinding(
    t,
    { ...healthyMountPod(), secrets: [{ namespace: 'juicefs-system', name: 'juicefs-secret', state: 'missing' }] },
    'secret-missing',
    /Secret juicefs-system\/juicefs-secret, which PersistentVolume pvc-shared names for the volume's credentials, does not exist/,
    /kubectl -n juicefs-system create secret generic juicefs-secret/,
  );
  t.same(d.findings[0].subject, { kind: 'Secret', namespace: 'juicefs-system', name: 'juicefs-secret' });
  expectFinding(
    t,
    {
      ...healthySidecar(),
      secrets: [{ namespace: 'juicefs-system', name: 'juicefs-secret', state: 'present', keys: ['name'] }],
    },
    'secret-incomplete',
    /neither metaurl nor token/,
    /edit secret juicefs-secret/,
    'warning',
  );
  // The sidecar cannot start: its copy of the Secret is gone.
  const g = healthySidecar();
  g.pods = [
    injectedPod('demo', 'app', 'data', {
      ...running('jfs-mount'),
      ready: false,
      state: { waiting: { reason: 'CreateContainerConfigError', message: 'secret "juicefs-data-secret" not found' } },
    }),
  ];
  const c = expectFinding(
    t,
    g,
    'secret-missing',
    /cannot start: secret "juicefs-data-secret" not found/,
    /controller makes that copy/,
  );
  t.same(c.findings[0].subject, { kind: 'Secret', namespace: 'demo', name: 'juicefs-data-secret' });
  const unknown = diagnose({
    ...healthySidecar(),
    secrets: [{ namespace: 'juicefs-system', name: 'juicefs-secret', state: 'unknown', reason: 'forbidden' }],
  });
  t.same(unknown.findings, [], 'a Secret the user may not read is no finding');
});

t.test('injection: namespace, webhook, opt-out, node plugin', async (t) => {
  const notInjected = (): Gathered => ({
    ...healthySidecar(),
    pods: [plainPod('demo', 'app', 'data', 'Pending')],
    mountChecks: [],
  });
  expectFinding(
    t,
    notInjected(),
    'webhook-not-called',
    /labelled for injection, yet has no sidecar/,
    /Re-create the pod/,
  );
  expectFinding(
    t,
    { ...notInjected(), webhookConfigs: [] },
    'webhook-config-missing',
    /no JuiceFS MutatingWebhookConfiguration/,
    /kubectl apply -k manifests\//,
  );
  const unlabelled = {
    ...notInjected(),
    namespaces: [namespace('demo')],
    csiDrivers: [],
    events: [
      event(
        'Pod',
        'demo',
        'app',
        'FailedMount',
        'MountVolume.MountDevice failed for volume "pvc-data" : kubernetes.io/csi: attacher.MountDevice failed to create newCsiDriverClient: driver name csi.juicefs.com not found in the list of registered CSI drivers',
      ),
    ],
  };
  const d = expectFinding(
    t,
    unlabelled,
    'namespace-not-labelled',
    /namespace demo is not labelled for sidecar injection, and no JuiceFS node plugin runs/,
    /kubectl label namespace demo juicefs.com\/enable-injection=true/,
  );
  t.match(
    d.findings[0].evidence.join('\n'),
    /not found in the list of registered CSI drivers/,
    'the kubelet event as evidence',
  );
  const optOut = notInjected();
  optOut.pods[0].metadata!.labels = { 'disable.sidecar.juicefs.com/inject': 'true' };
  optOut.mountPods = [mountPod('pvc-data', ['uid-app'])];
  expectFinding(t, optOut, 'injection-opted-out', /opts out of sidecar injection/, /remove the label/, 'info');
});

t.test('Mount Pods: missing, pending, crashing, image', async (t) => {
  const g = healthyMountPod();
  g.pods = [plainPod('demo-mp', 'writer', 'shared', 'Pending')];
  g.mountPods = [];
  g.events = [
    event(
      'Pod',
      'demo-mp',
      'writer',
      'FailedMount',
      'MountVolume.SetUp failed for volume "pvc-shared": rpc error: code = Internal desc = waiting for Mount Pod',
    ),
  ];
  const d = expectFinding(
    t,
    g,
    'mount-pod-missing',
    /no Mount Pod serves it: the node plugin reports a mount failure/,
    /logs ds\/jfs-sidecar-node/,
  );
  t.match(d.findings[0].evidence[0], /FailedMount: MountVolume.SetUp failed/);

  const p = healthyMountPod();
  const mp = mountPod('pvc-shared', ['uid-writer'], {
    ...running('jfs-mount'),
    ready: false,
    state: { waiting: { reason: 'ContainerCreating' } },
  });
  mp.status = {
    phase: 'Pending',
    conditions: [{ type: 'PodScheduled', status: 'False', message: '0/1 nodes are available: 1 Insufficient memory.' }],
  };
  p.mountPods = [mp];
  expectFinding(
    t,
    p,
    'mount-pod-pending',
    /Mount Pod juicefs-system\/juicefs-localhost-pvc-shared-abc is Pending: it cannot be scheduled \(0\/1 nodes are available: 1 Insufficient memory.\)/,
    /juicefs\/mount-memory-request/,
  );

  const c = healthyMountPod();
  c.mountPods = [mountPod('pvc-shared', ['uid-writer'], crashLoop('jfs-mount'))];
  c.logs = [
    {
      namespace: 'juicefs-system',
      pod: 'juicefs-localhost-pvc-shared-abc',
      container: 'jfs-mount',
      previous: true,
      lines: ['2026/12/01 11:59:29.1 juicefs[7] <FATAL>: load setting: database is not formatted'],
    },
  ];
  const cd = expectFinding(
    t,
    c,
    'client-crashed',
    /Mount Pod juicefs-system\/juicefs-localhost-pvc-shared-abc\) keeps crashing \(CrashLoopBackOff, exit code 1, 4 restarts\): no formatted JuiceFS volume is found at the metaurl/,
    /--previous/,
  );
  t.equal(cd.logs.length, 1, 'its log lines come with the diagnosis');

  const i = healthySidecar();
  i.pods = [
    injectedPod('demo', 'app', 'data', {
      ...running('jfs-mount'),
      ready: false,
      state: { waiting: { reason: 'ImagePullBackOff', message: 'pull access denied' } },
    }),
  ];
  expectFinding(
    t,
    i,
    'client-image-pull',
    /juicedata\/mount:ce-v1.3.1 of sidecar jfs-mount of pod demo\/app cannot be pulled \(ImagePullBackOff\)/,
    /juicefs\/mount-image/,
  );
});

t.test('sidecar: a crashed client, a client that crashed and came back, a mount not ready', async (t) => {
  const g = healthySidecar();
  g.pods = [injectedPod('demo', 'app', 'data', crashLoop('jfs-mount', 6))];
  g.mountChecks = [];
  g.logs = [
    {
      namespace: 'demo',
      pod: 'app',
      container: 'jfs-mount',
      previous: true,
      lines: ['<FATAL>: dial tcp 10.0.0.1:6379: connect: connection refused'],
    },
  ];
  const d = expectFinding(
    t,
    g,
    'client-crashed',
    /sidecar jfs-mount of pod demo\/app\) keeps crashing \(CrashLoopBackOff, exit code 1, 6 restarts\): it cannot reach the metadata engine/,
    /kubectl -n demo logs app -c jfs-mount --previous/,
  );
  t.match(d.summary, /pod demo\/app: The JuiceFS client/);
  t.match(d.findings[0].evidence.join('\n'), /connection refused/);

  const back = healthySidecar();
  back.pods = [
    injectedPod('demo', 'app', 'data', {
      ...running('jfs-mount'),
      restartCount: 1,
      lastState: { terminated: { exitCode: 137, reason: 'Error', finishedAt: new Date('2026-12-01T11:58:00Z') } },
    }),
  ];
  const b = diagnose(back);
  t.equal(b.findings[0]?.code, 'client-crashed');
  t.equal(b.findings[0]?.severity, 'warning', 'a client that came back is a warning');
  t.match(b.findings[0]?.cause, /crashed 120 s ago \(exit code 137, 1 restarts\) and is running again/);

  const slow = healthySidecar();
  slow.pods = [injectedPod('demo', 'app', 'data', { ...running('jfs-mount'), ready: false })];
  slow.mountChecks = [];
  expectFinding(
    t,
    slow,
    'mount-not-ready',
    /has run for 3600 s but its mount point is not ready/,
    /kubectl -n demo logs app -c jfs-mount/,
  );
  const notMounted = healthySidecar();
  notMounted.mountChecks[0].output =
    'Filesystem 1024-blocks Used Available Capacity Mounted on\noverlay 100 10 90 10% /\n';
  expectFinding(t, notMounted, 'mount-not-ready', /sees no JuiceFS at \/data \(df shows overlay\)/, /pod/);
});

t.test('the mount from the app: transport endpoint, quota', async (t) => {
  const g = healthySidecar();
  g.mountChecks[0] = { ...g.mountChecks[0], ok: false, output: 'df: /data: Transport endpoint is not connected\n' };
  const d = expectFinding(
    t,
    g,
    'transport-endpoint-not-connected',
    /Transport endpoint is not connected/,
    /restart the app \(kubectl -n demo delete pod app/,
  );
  t.match(d.findings[0].evidence[0], /df: \/data/);
  const ev = healthyMountPod();
  ev.events = [
    event(
      'Pod',
      'demo-mp',
      'writer',
      'FailedMount',
      'stat /var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/pvc-shared/mount: transport endpoint is not connected',
    ),
  ];
  expectFinding(t, ev, 'transport-endpoint-not-connected', /lost the JuiceFS client/, /restart the app/);

  const full = healthySidecar();
  full.mountChecks[0].output =
    'Filesystem 1024-blocks Used Available Capacity Mounted on\nJuiceFS:e2e 1048576 1048576 0 100% /data\n';
  expectFinding(t, full, 'quota-exceeded', /\/data is full \(100% used\)/, /expanding the PVC/);
  const logged = healthySidecar();
  logged.logs = [
    {
      namespace: 'demo',
      pod: 'app',
      container: 'app',
      previous: false,
      lines: ['sh: write error: Disk quota exceeded'],
    },
  ];
  expectFinding(t, logged, 'quota-exceeded', /quota is full \(container app logs it\)/, /expand the PVC/);
});

t.test('an app that crashes on its own', async (t) => {
  const g = healthySidecar();
  g.pods[0].status!.containerStatuses = [crashLoop('app')];
  expectFinding(
    t,
    g,
    'app-crashing',
    /The app container app itself keeps crashing \(exit code 1\); its JuiceFS volumes look fine/,
    /logs app -c app --previous/,
    'warning',
  );
});

t.test('inventory: modes, clients, Mount Pods, status text', async (t) => {
  const g = healthySidecar();
  const info = describeAppPod(g.pods[0], g)!;
  t.equal(info.mode, 'sidecar');
  t.same(info.pvcs, ['data'], 'the PVC read back from the Secret copy the sidecar references');
  t.equal(info.clients[0].version, 'ce-v1.3.1');
  const serverless = injectedPod('demo', 's', 'data');
  serverless.spec!.volumes = [{ name: 'data', emptyDir: {} }];
  t.equal(describeAppPod(serverless, g)!.mode, 'serverless');
  const m = healthyMountPod();
  const mi = describeAppPod(m.pods[0], m)!;
  t.equal(mi.mode, 'mount-pod');
  t.same(mi.mountPods, ['juicefs-system/juicefs-localhost-pvc-shared-abc']);
  const row = describeMountPod(m.mountPods[0], m.pods);
  t.same(row.appPods, ['demo-mp/writer']);
  t.equal(row.references, 1);
  t.equal(describeAppPod(plainPod('demo', 'other', 'not-a-pvc'), g), undefined, 'no JuiceFS volume: not listed');
  t.equal(clientVersion('registry:5000/juicedata/mount:ce-v1.3.1-next'), 'ce-v1.3.1-next');
  t.equal(clientVersion('juicedata/mount@sha256:0123456789abcdef0123'), 'sha256:0123456789ab');
  t.equal(podStatusText(injectedPod('demo', 'x', 'data', crashLoop('jfs-mount'))), 'Init:CrashLoopBackOff');
  t.equal(podStatusText(g.pods[0]), 'Running');
});

t.test('every finding code has a case', async (t) => {
  const text = readFileSync(new URL('../../src/diagnose/types.ts', import.meta.url), 'utf8');
  const block = /export type FindingCode =([^;]+);/.exec(text)![1];
  const codes = [...block.matchAll(/'([a-z-]+)'/g)].map((m) => m[1]);
  t.same(
    codes.filter((c) => !covered.has(c as FindingCode)),
    [],
    'no code without a case',
  );
});

t.test('the JuiceFS mount paths of the apps: sidecar, serverless, Mount Pod mode', async (t) => {
  const { juicefsMountsOf } = await import('../../src/diagnose/inventory.js');
  const pod = injectedPod('demo', 'app', 'data');
  pod.spec!.volumes!.push({ name: 'kube-api-access', projected: { sources: [] } });
  pod.spec!.containers[0].volumeMounts!.push({ name: 'kube-api-access', mountPath: '/var/run/secrets/x' });
  pod.spec!.initContainers![0].volumeMounts!.push({ name: 'kube-api-access', mountPath: '/var/run/secrets/x' });
  t.same(juicefsMountsOf(pod, []), [{ container: 'app', path: '/data' }], 'not the token the sidecar mounts too');
  const serverless = injectedPod('demo', 's', 'data');
  serverless.spec!.volumes = [{ name: 'data', emptyDir: {} }];
  serverless.spec!.initContainers![0].volumeMounts = [{ name: 'data', mountPath: '/jfs/data' }];
  t.same(
    juicefsMountsOf(serverless, []),
    [{ container: 'app', path: '/data' }],
    'serverless: the emptyDir under /jfs/',
  );
  t.same(juicefsMountsOf(plainPod('demo-mp', 'w', 'shared'), ['shared']), [{ container: 'app', path: '/data' }]);
});
