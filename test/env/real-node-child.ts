// A process that starts a control plane and a real node with a running pod,
// prints where they live, and waits to be killed (SIGKILL, as a crash would):
// real-node.test.ts checks that the next start undoes what it left behind.
// usage: real-node-child.ts ARCHIVE... (the pause and busybox image archives)
import { CoreV1Api } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { ControlPlane } from '../../src/local/control-plane.js';
import { startRealNode } from '../../src/local/real-node.js';

const cp = await ControlPlane.start({});
const node = await startRealNode(cp, { importArchives: process.argv.slice(2) });
const core = cp.adminKubeConfig().makeApiClient(CoreV1Api);
// No controller-manager: the ServiceAccount admission plugin needs the default ServiceAccount made by hand.
await core.createNamespacedServiceAccount({ namespace: 'default', body: { metadata: { name: 'default' } } });
await core.createNamespacedPod({
  namespace: 'default',
  body: {
    metadata: { name: 'orphan' },
    spec: {
      nodeName: node.nodeName,
      // No controller-manager, so no kube-root-ca.crt ConfigMap for the projected token volume either.
      automountServiceAccountToken: false,
      containers: [{ name: 'main', image: 'docker.io/library/busybox:1.36', command: ['sleep', '3600'] }],
    },
  },
});
for (;;) {
  const pod = await core.readNamespacedPod({ name: 'orphan', namespace: 'default' });
  if (pod.status?.phase === 'Running') break;
  await sleep(200);
}
console.log(JSON.stringify({ nodeDir: node.dir, cpDir: cp.dir, socket: node.containerdSocket }));
await sleep(3_600_000);
