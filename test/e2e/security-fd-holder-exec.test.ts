// The upgrader's one exec into the FUSE fd holder (manifests/after-admission.yaml, jfs-sidecar-fd-holder-exec;
// ADR 0006 update): on the real API server with the shipped policies, no kubelet (an admitted exec then fails for
// want of a node: "does not have a host assigned", not 403). The upgrader may run exactly `fd-holder
// expect-handover` in jfs-fd-holder; anything else there is refused to it, and everything there to a namespace user.
import { CoreV1Api, KubeConfig, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { applyObjects } from '../../src/local/components.js';
import { WEBHOOK_NAMESPACE } from '../../src/local/webhook-stack.js';
import { parseManifests } from '../../src/offline/inject-manifests.js';
import { FD_HOLDER_NAME } from '../../src/contract/keys.js';
import { apiMessage, eventually, namespaceUserObjects, startControlPlane, startLoneWebhook } from '../env/harness.js';
import { TESTDATA } from '../golden/golden.js';

t.setTimeout(10 * 60 * 1000);
const NS = 'tenant';
const UPGRADER = 'jfs-sidecar-controller';
const CLI = ['node', '/app/dist/src/cli/main.js'];

function kubeConfigFrom(file: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  return kc;
}

async function exec(kc: KubeConfig, pod: string, container: string, command: string[], sub = 'exec') {
  const cluster = kc.getCurrentCluster()!;
  const url = new URL(`${cluster.server}/api/v1/namespaces/${NS}/pods/${pod}/${sub}`);
  url.searchParams.set('container', container);
  url.searchParams.set('stdout', 'true');
  if (sub === 'exec') for (const c of command) url.searchParams.append('command', c);
  const opts: https.RequestOptions = { method: 'POST', headers: {} };
  await kc.applyToHTTPSOptions(opts);
  return new Promise<{ status: number; message: string }>((resolve, reject) => {
    const req = https.request(url, opts, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        let message = text;
        try {
          message = (JSON.parse(text) as { message?: string }).message ?? text;
        } catch {
          // not a Status
        }
        resolve({ status: res.statusCode ?? 0, message });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('exec into the FUSE fd holder: the upgrader may arm a handover, nothing else; users may not', async (t) => {
  const cp = await startControlPlane(t, { controllerManager: true });
  const admin = cp.adminKubeConfig();
  await startLoneWebhook(t, cp);
  const objs = parseManifests(
    readFileSync(path.join(TESTDATA, 'one-pvc.yaml'), 'utf8')
      .replaceAll('kube-system', WEBHOOK_NAMESPACE)
      .replaceAll('team-a', NS),
    'one-pvc',
  );
  await applyObjects(
    admin,
    objs.filter((o) => o.kind === 'Namespace'),
  );
  await applyObjects(
    admin,
    objs.filter((o) => !['Namespace', 'Pod'].includes(o.kind!)),
  );
  await applyObjects(admin, [
    ...namespaceUserObjects(NS, 'user'),
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: UPGRADER, namespace: WEBHOOK_NAMESPACE } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'test-upgrader-exec' },
      rules: [
        { apiGroups: [''], resources: ['pods'], verbs: ['get'] },
        { apiGroups: [''], resources: ['pods/exec', 'pods/attach'], verbs: ['create', 'get'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'test-upgrader-exec' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'test-upgrader-exec' },
      subjects: [{ kind: 'ServiceAccount', name: UPGRADER, namespace: WEBHOOK_NAMESPACE }],
    },
  ] as KubernetesObject[]);
  const userKc = kubeConfigFrom(await cp.serviceAccountKubeconfig(NS, 'user'));
  const upgraderKc = kubeConfigFrom(await cp.serviceAccountKubeconfig(WEBHOOK_NAMESPACE, UPGRADER));
  const user = userKc.makeApiClient(CoreV1Api);
  const body = structuredClone(objs.find((o): o is V1Pod => o.kind === 'Pod')!);
  body.metadata!.name = 'app';
  let last = '';
  const pod = await eventually(
    () =>
      user.createNamespacedPod({ namespace: NS, body }).catch((err: unknown) => {
        last = apiMessage(err);
        return undefined;
      }),
    20_000,
    'the pod to be admitted',
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last refusal: ${last}`);
  });
  t.equal(pod.spec!.initContainers![0].name, FD_HOLDER_NAME, 'injected with the holder first');

  const arm = [...CLI, 'fd-holder', 'expect-handover'];
  const admitted = (r: { status: number; message: string }) => r.status !== 403 && !/after-admission/.test(r.message);
  const ok = await exec(upgraderKc, 'app', FD_HOLDER_NAME, arm);
  t.ok(admitted(ok), `the upgrader's expect-handover is admitted (${ok.status} ${ok.message})`);
  t.match(ok.message, /host|node/i, 'and fails only for want of a node');
  const withFlags = await exec(upgraderKc, 'app', FD_HOLDER_NAME, [...arm, '--name=jfs-mount', '--ttl=120']);
  t.ok(admitted(withFlags), `with --name and --ttl too (${withFlags.status})`);

  const refusedToUpgrader: [string, string[], string?][] = [
    ['a shell', ['sh', '-c', 'id']],
    ['another subcommand', [...CLI, 'fd-holder', 'run', '--name=jfs-mount']],
    ['an extra argument', [...arm, '--dir=/tmp']],
    ['attach', arm, 'attach'],
  ];
  for (const [what, cmd, sub] of refusedToUpgrader) {
    const r = await exec(upgraderKc, 'app', FD_HOLDER_NAME, cmd, sub);
    t.equal(r.status, 403, `the upgrader, ${what}: 403 (${r.message})`);
  }
  const upgraderIntoClient = await exec(upgraderKc, 'app', 'jfs-mount', arm);
  t.equal(upgraderIntoClient.status, 403, 'the upgrader may not exec into jfs-mount');
  for (const cmd of [arm, ['sh']]) {
    const r = await exec(userKc, 'app', FD_HOLDER_NAME, cmd);
    t.equal(r.status, 403, `a namespace user, ${cmd.join(' ')}: 403 (${r.message})`);
  }
});
