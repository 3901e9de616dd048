// The harness itself: a real control plane comes up with RBAC and the
// controller-manager, hands out ServiceAccount kubeconfigs, and goes away
// without leaving a process, port or folder behind.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import t from 'tap';
import { ControlPlane } from '../../src/local/control-plane.js';
import { eventually } from '../env/harness.js';

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });

t.test('control plane lifecycle', async (t) => {
  const started = Date.now();
  const cp = await ControlPlane.start({ controllerManager: true });
  t.comment(`control plane ready in ${Date.now() - started} ms at ${cp.server}`);
  try {
    const core = cp.adminKubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: 'harness' } } });
    // The controller-manager is there: it creates the default ServiceAccount of a new namespace.
    await eventually(
      () => core.readNamespacedServiceAccount({ name: 'default', namespace: 'harness' }),
      30_000,
      'default ServiceAccount',
    );
    await core.createNamespacedServiceAccount({ namespace: 'harness', body: { metadata: { name: 'probe' } } });
    const kcFile = await cp.serviceAccountKubeconfig('harness', 'probe');
    const kc = new KubeConfig();
    kc.loadFromFile(kcFile);
    const asProbe = kc.makeApiClient(CoreV1Api);
    // RBAC is on: a ServiceAccount with no bindings is forbidden.
    await t.rejects(
      asProbe.listNamespacedPod({ namespace: 'harness' }),
      { code: 403 },
      'RBAC denies an unbound ServiceAccount',
    );
  } finally {
    await cp.stop();
  }
  t.notOk(existsSync(cp.dir), 'temporary folder removed');
  t.notOk(await portOpen(cp.apiserverPort), 'API server port closed');
});
