// The validating webhook on a real control plane, registered through the shipped
// ValidatingWebhookConfiguration: a namespace user's marked JuiceFS Secret with a
// metaurl juicefs cannot open, or (with --validate-secret-status) whose metadata
// engine does not answer the real juicefs client, is refused with a message that
// says why; a second PV of one volumeHandle and a PV escaping the volume are
// refused; with the webhook down, failurePolicy Ignore lets everything through.
import { CoreV1Api, KubeConfig, type V1PersistentVolume } from '@kubernetes/client-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { applyObjects } from '../../src/local/components.js';
import { ensureBinaries } from '../../src/local/control-plane.js';
import { startWebhookStack } from '../../src/local/webhook-stack.js';
import { apiMessage, eventually, namespaceUserObjects, startControlPlane } from '../env/harness.js';
import { makeVolume } from '../env/juicefs.js';

const NS = 'team';

t.setTimeout(10 * 60 * 1000);

async function refusal(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (err: unknown) => apiMessage(err),
  );
}

t.test('validating JuiceFS Secrets and PVs before they are stored', async (t) => {
  // kube-controller-manager aggregates the built-in edit role the namespace user is bound to.
  const cp = await startControlPlane(t, { controllerManager: true });
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-validate-'));
  const vol = makeVolume('validate');
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    vol.remove();
  });
  await applyObjects(admin, [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } },
    ...namespaceUserObjects(NS),
  ]);
  const webhook = await startWebhookStack(cp, {
    dir,
    secretNamespaces: ['juicefs-system'],
    withoutController: true,
    validating: true,
    extraArgs: ['--validate-secret-status', `--juicefs=${ensureBinaries(['juicefs']).juicefs}`],
  });
  let stopped = false;
  t.teardown(() => (stopped ? undefined : webhook.stop()));
  const userKc = new KubeConfig();
  userKc.loadFromFile(await cp.serviceAccountKubeconfig(NS, 'user'));
  const user = userKc.makeApiClient(CoreV1Api);
  const marked = (name: string, stringData: Record<string, string>) => ({
    metadata: { name, labels: { 'juicefs.com/validate-secret': 'true' } },
    type: 'Opaque',
    stringData,
  });
  // The configuration's caBundle is written by the webhook as it starts.
  const bad = await eventually(
    () =>
      refusal(
        user.createNamespacedSecret({ namespace: NS, body: marked('bad-scheme', { metaurl: 'postgresql://db/jfs' }) }),
      ),
    30_000,
    'the validating webhook to answer',
  );
  t.match(bad, /denied the request: Secret team\/bad-scheme: metaurl scheme "postgresql" is no metadata engine/, bad);

  t.match(
    await refusal(
      user.createNamespacedSecret({
        namespace: NS,
        body: marked('bad-env', { metaurl: vol.metaurl, envs: '{LD_PRELOAD: /tmp/x.so}' }),
      }),
    ),
    /variable "LD_PRELOAD" may not be set/,
  );
  const unreachable = await refusal(
    user.createNamespacedSecret({
      namespace: NS,
      body: marked('unreachable', { metaurl: `sqlite3://${dir}/no-such-volume.db` }),
    }),
  );
  t.match(unreachable, /Secret team\/unreachable: juicefs status failed/, 'the real client could not open it');
  t.equal(
    await refusal(user.createNamespacedSecret({ namespace: NS, body: marked('good', vol.secrets) })),
    undefined,
    'a Secret of a real, formatted volume is stored',
  );
  t.equal(
    await refusal(
      user.createNamespacedSecret({
        namespace: NS,
        body: { metadata: { name: 'unmarked' }, type: 'Opaque', stringData: { metaurl: 'postgresql://x' } },
      }),
    ),
    undefined,
    "an unmarked Secret is not the webhook's to judge",
  );
  t.match(
    await refusal(
      user.replaceNamespacedSecret({
        name: 'good',
        namespace: NS,
        body: marked('good', { metaurl: 'http://nope' }),
      }),
    ),
    /metaurl scheme "http"/,
    'an UPDATE is judged too',
  );

  const pv = (name: string, handle: string, attributes: Record<string, string> = {}): V1PersistentVolume => ({
    metadata: { name },
    spec: {
      capacity: { storage: '1Gi' },
      accessModes: ['ReadWriteMany'],
      csi: { driver: 'csi.juicefs.com', volumeHandle: handle, volumeAttributes: attributes },
    },
  });
  await core.createPersistentVolume({ body: pv('static-a', 'shared-handle') });
  const twin = await eventually(
    () => refusal(core.createPersistentVolume({ body: pv('static-b', 'shared-handle') })),
    10_000,
    "the webhook's PV cache to hold static-a",
  );
  t.match(twin, /volumeHandle "shared-handle" is already PersistentVolume static-a's/, twin);
  t.match(
    await refusal(core.createPersistentVolume({ body: pv('escape', 'h-2', { subPath: '../../other-team' }) })),
    /PersistentVolume escape: subdirectory "..\/..\/other-team" escapes the volume/,
  );
  t.equal(
    await refusal(core.createPersistentVolume({ body: pv('static-c', 'h-3') })),
    undefined,
    'a fine PV is stored',
  );

  // failurePolicy Ignore: with the webhook gone, nothing is blocked.
  await webhook.stop();
  stopped = true;
  t.equal(
    await refusal(
      user.createNamespacedSecret({ namespace: NS, body: marked('while-down', { metaurl: 'postgresql://x' }) }),
    ),
    undefined,
    'the webhook down: a Secret is stored unchecked (failurePolicy Ignore)',
  );
  t.equal(
    await refusal(core.createPersistentVolume({ body: pv('while-down', 'shared-handle') })),
    undefined,
    'and a PV too',
  );
});
