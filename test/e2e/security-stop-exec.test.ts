// The classic-placement stopper's exec hole in the after-admission policy
// (manifests/after-admission.yaml, ADR 0018), through a real kube-apiserver:
// the upgrader identity (the controller's ServiceAccount, with its shipped
// RBAC) may exec exactly `sh -c 'kill -TERM 1'` into a jfs-mount container, and
// nothing else anywhere; a namespace user (built-in `edit`) may not exec even
// that. No kubelet runs: an exec the API server admits fails afterwards for
// want of a node, with another message than the policy's.
import { KubeConfig, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import t from 'tap';
import { STOP_COMMAND } from '../../src/controller/classic-stop.js';
import { applyObjects, readManifest } from '../../src/local/components.js';
import { WEBHOOK_NAMESPACE } from '../../src/local/webhook-stack.js';
import { parseManifests } from '../../src/offline/inject-manifests.js';
import { CoreV1Api } from '@kubernetes/client-node';
import { apiMessage, eventually, namespaceUserObjects, startControlPlane, startLoneWebhook } from '../env/harness.js';
import { TESTDATA } from '../golden/golden.js';

t.setTimeout(10 * 60 * 1000);

const NS = 'tenant';

function kubeConfigFrom(file: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  return kc;
}

interface Connect {
  sub?: 'exec' | 'attach';
  container?: string;
  command?: string[];
  stdin?: boolean;
  tty?: boolean;
}

/** A CONNECT as a client sends it, minus the stream upgrade: admission, then the API server looks for the node. */
async function connect(kc: KubeConfig, pod: string, c: Connect): Promise<{ status: number; message: string }> {
  const cluster = kc.getCurrentCluster()!;
  const url = new URL(`${cluster.server}/api/v1/namespaces/${NS}/pods/${pod}/${c.sub ?? 'exec'}`);
  if (c.container) url.searchParams.set('container', c.container);
  url.searchParams.set('stderr', 'true');
  if (c.stdin) url.searchParams.set('stdin', 'true');
  if (c.tty) url.searchParams.set('tty', 'true');
  for (const a of c.command ?? []) url.searchParams.append('command', a);
  const opts: https.RequestOptions = { method: 'POST', headers: {} };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
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

t.test('the stop exec: the controller may send it, nothing more; users may not', async (t) => {
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
  // The namespace user, and the controller's ServiceAccount with its shipped RBAC (pods/exec create).
  await applyObjects(admin, [
    ...namespaceUserObjects(NS, 'user'),
    ...readManifest('controller.yaml').filter((o: KubernetesObject) => o.kind !== 'Deployment'),
  ]);
  const userKc = kubeConfigFrom(await cp.serviceAccountKubeconfig(NS, 'user'));
  const controllerKc = kubeConfigFrom(await cp.serviceAccountKubeconfig(WEBHOOK_NAMESPACE, 'jfs-sidecar-controller'));
  const user = userKc.makeApiClient(CoreV1Api);
  const template = objs.find((o): o is V1Pod => o.kind === 'Pod')!;
  let last = '';
  const pod = await eventually(
    () =>
      user.createNamespacedPod({ namespace: NS, body: template }).catch((err: unknown) => {
        last = apiMessage(err);
        return undefined;
      }),
    20_000,
    `pod to be admitted (${last})`,
  );
  t.equal(pod.metadata?.labels?.['done.sidecar.juicefs.com/inject'], 'true', 'the pod is injected');
  const name = pod.metadata!.name!;
  const byPolicy = /jfs-sidecar \[after-admission\]/;

  const admitted = await connect(controllerKc, name, { container: 'jfs-mount', command: STOP_COMMAND });
  t.not(admitted.status, 403, `the controller's stop exec is admitted (${admitted.status} ${admitted.message})`);
  t.notMatch(admitted.message, byPolicy, 'not refused by the policy');

  const refusedForController: [string, Connect][] = [
    ['another command', { container: 'jfs-mount', command: ['sh', '-c', 'id'] }],
    ['kill without the shell', { container: 'jfs-mount', command: ['kill', '-TERM', '1'] }],
    ['the stop with a trailing argument', { container: 'jfs-mount', command: [...STOP_COMMAND, 'x'] }],
    ['the stop with stdin', { container: 'jfs-mount', command: STOP_COMMAND, stdin: true }],
    ['the stop with a tty', { container: 'jfs-mount', command: STOP_COMMAND, tty: true }],
    ['the stop into the format step', { container: 'jfs-format', command: STOP_COMMAND }],
    ['the stop into the app', { container: 'app', command: STOP_COMMAND }],
    ['a shell in the app', { container: 'app', command: ['sh', '-c', 'id'] }],
    ['the stop with no container named', { command: STOP_COMMAND }],
    ['attach to the sidecar', { sub: 'attach', container: 'jfs-mount' }],
  ];
  for (const [what, c] of refusedForController) {
    const r = await connect(controllerKc, name, c);
    t.equal(r.status, 403, `controller, ${what}: refused (${r.message})`);
  }
  // RBAC refuses attach before the policy; every other refusal must be the policy's own.
  for (const [what, c] of refusedForController.filter(([, c]) => c.sub !== 'attach')) {
    const r = await connect(controllerKc, name, c);
    t.match(r.message, byPolicy, `controller, ${what}: by the policy`);
  }

  const asUser = await connect(userKc, name, { container: 'jfs-mount', command: STOP_COMMAND });
  t.equal(asUser.status, 403, `a namespace user's stop exec is refused (${asUser.message})`);
  t.match(asUser.message, byPolicy, 'by the policy');
  const userApp = await connect(userKc, name, { container: 'app', command: ['sh', '-c', 'id'] });
  t.not(userApp.status, 403, `the user's own exec into the app is still admitted (${userApp.message})`);

  // Fail closed (ADR 0018): without the upgraders ConfigMap the policy cannot tell who the upgrader is, and every
  // exec outside juicefs-system is refused, the stop too.
  await admin
    .makeApiClient(CoreV1Api)
    .deleteNamespacedConfigMap({ name: 'jfs-sidecar-upgraders', namespace: WEBHOOK_NAMESPACE });
  const closed = await eventually(
    async () => {
      const r = await connect(userKc, name, { container: 'app', command: ['sh', '-c', 'id'] });
      // The API server answers a binding it cannot configure with 422, naming the missing params.
      return /no params found/.test(r.message) ? r : undefined;
    },
    30_000,
    'exec refused without the ConfigMap',
  ).catch(() => undefined);
  t.ok(closed, `without jfs-sidecar-upgraders even the user's exec into the app is refused (${closed?.message})`);
  const stopClosed = await connect(controllerKc, name, { container: 'jfs-mount', command: STOP_COMMAND });
  t.match(
    stopClosed.message,
    /no params found/,
    `and the controller's stop (${stopClosed.status} ${stopClosed.message})`,
  );
});
