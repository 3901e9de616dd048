// The dashboard like a user sees it (issue 16, items 2 and 3): `jfs-sidecar dashboard` from dist/ with its shipped
// read-only RBAC on a real control plane, driven by Debian's Chromium through playwright-core. The cluster holds
// real objects made through the API server: a JuiceFS StorageClass, a static PV and its Bound PVC, an app pod in
// Mount Pod mode and its Mount Pod (the node service's labels and reference annotation), a sidecar-mode pod, the
// ConfigMap with a mountPodPatch. Checked: each page renders them, the links lead from the app pod to its Mount
// Pod and on to the PV and StorageClass, a change appears live (SSE), the ConfigMap page shows the drift and
// which PVCs the selector matches, the upgrade button creates a JuiceFSUpgrade with the user's own token (the
// dashboard's own identity may not), a user without RBAC sees the API server's 403, bad requests are 400s; axe-core
// finds no serious or critical violation on any page; a screenshot of each page in test/artifacts/dashboard/.
// Log streaming and an upgrade that completes need a kubelet: dashboard-real-node.test.ts.
import { CoreV1Api, CustomObjectsApi, KubeConfig, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import axe from 'axe-core';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import t from 'tap';
import {
  CONFIG_MAP_KEY,
  CONFIG_MAP_NAME,
  MOUNT_POD_APP_VALUE,
  MOUNT_POD_LABEL_APP,
  MOUNT_POD_LABEL_VOLUME_ID,
  SYSTEM_NAMESPACE,
} from '../../src/contract/keys.js';
import { secretCopyName } from '../../src/contract/secret-copy.js';
import { applyObjects, readManifest } from '../../src/local/components.js';
import { DASHBOARD_SA, startDashboardStack } from '../../src/local/dashboard-stack.js';
import { referenceKey, volumeLabel } from '../../src/node/mount-pod-plan.js';
import { UPGRADE_GROUP, UPGRADE_PLURAL, UPGRADE_VERSION, type JuiceFSUpgrade } from '../../src/upgrade/types.js';
import { launchChromium } from '../env/browser.js';
import { apiMessage, eventually, startControlPlane } from '../env/harness.js';

t.setTimeout(5 * 60 * 1000);

const ARTIFACTS = path.resolve(import.meta.dirname, '../artifacts/dashboard');
mkdirSync(ARTIFACTS, { recursive: true });
const NS = 'shop';
const CRD = { group: UPGRADE_GROUP, version: UPGRADE_VERSION, plural: UPGRADE_PLURAL };

const cp = await startControlPlane(t, { controllerManager: true });
const admin = cp.adminKubeConfig();
const core = admin.makeApiClient(CoreV1Api);
const custom = admin.makeApiClient(CustomObjectsApi);

const sc = readManifest('storageclass-example.yaml').filter((o) => o.kind === 'StorageClass');
await applyObjects(admin, [
  ...readManifest('namespace.yaml'),
  ...readManifest('config.yaml'),
  ...sc,
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } },
  {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name: 'shop-data' },
    spec: {
      capacity: { storage: '10Gi' },
      accessModes: ['ReadWriteMany'],
      persistentVolumeReclaimPolicy: 'Retain',
      storageClassName: 'juicefs-sc',
      claimRef: { namespace: NS, name: 'data' },
      csi: {
        driver: 'csi.juicefs.com',
        volumeHandle: 'shop-data',
        nodePublishSecretRef: { name: 'juicefs-secret', namespace: SYSTEM_NAMESPACE },
        volumeAttributes: { subPath: 'shop-data', 'juicefs/mount-image': 'juicedata/mount:ce-v1.3.1' },
      },
    },
  } as KubernetesObject,
  {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: 'data', namespace: NS, labels: { tier: 'gold' } },
    spec: {
      accessModes: ['ReadWriteMany'],
      storageClassName: 'juicefs-sc',
      volumeName: 'shop-data',
      resources: { requests: { storage: '10Gi' } },
    },
  } as KubernetesObject,
]);
// A mountPodPatch for the StorageClass that the running clients do not follow yet.
const cm = await core.readNamespacedConfigMap({ name: CONFIG_MAP_NAME, namespace: SYSTEM_NAMESPACE });
await core.replaceNamespacedConfigMap({
  name: CONFIG_MAP_NAME,
  namespace: SYSTEM_NAMESPACE,
  body: {
    ...cm,
    data: {
      [CONFIG_MAP_KEY]:
        'enableNativeSidecar: true\nmountPodPatch:\n  - pvcSelector:\n      matchStorageClassName: juicefs-sc\n' +
        '    ceMountImage: juicedata/mount:ce-v1.3.2\n    mountOptions: [cache-size=2048]\n',
    },
  },
});
await eventually(
  async () =>
    (await core.readNamespacedPersistentVolumeClaim({ name: 'data', namespace: NS })).status?.phase === 'Bound',
  60_000,
  'PVC shop/data Bound',
);
await eventually(() => core.readNamespacedServiceAccount({ name: 'default', namespace: NS }), 30_000, 'default SA');

// An app pod in Mount Pod mode (its PVC volume as it is), bound to a node no kubelet runs: it stays Pending.
const web = await core.createNamespacedPod({
  namespace: NS,
  body: {
    metadata: { name: 'web-0', labels: { app: 'web' } },
    spec: {
      nodeName: 'node-a',
      containers: [{ name: 'app', image: 'busybox', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
    },
  },
});
// Its Mount Pod, labelled and annotated as the node service makes them.
const target = `/var/lib/kubelet/pods/${web.metadata!.uid}/volumes/kubernetes.io~csi/shop-data/mount`;
await core.createNamespacedPod({
  namespace: SYSTEM_NAMESPACE,
  body: {
    metadata: {
      name: 'juicefs-node-a-shop-data-abcdef',
      labels: { [MOUNT_POD_LABEL_APP]: MOUNT_POD_APP_VALUE, [MOUNT_POD_LABEL_VOLUME_ID]: volumeLabel('shop-data') },
      annotations: { [referenceKey(target)]: target },
    },
    spec: {
      nodeName: 'node-a',
      containers: [
        {
          name: 'jfs-mount',
          image: 'juicedata/mount:ce-v1.3.1',
          command: ['juicefs', 'mount', '--cache-dir=/var/jfsCache', '$(JFS_METAURL)', '/jfs/shop-data'],
        },
      ],
    },
  },
});
// A pod as the webhook leaves a sidecar-mode pod: the client reads the PVC's Secret copy.
const sidecarPod = (name: string): V1Pod => ({
  metadata: { name, labels: { app: name } },
  spec: {
    nodeName: 'node-b',
    initContainers: [
      {
        name: 'jfs-mount',
        image: 'juicedata/mount:ce-v1.3.1',
        restartPolicy: 'Always',
        command: ['sh', '-c', 'exec "$@"', 'jfs-mount', 'juicefs', 'mount', '--cache-dir=/var/jfsCache'],
        env: [{ name: 'JFS_METAURL', valueFrom: { secretKeyRef: { name: secretCopyName('data'), key: 'metaurl' } } }],
      },
    ],
    containers: [{ name: 'app', image: 'busybox' }],
  },
});
await core.createNamespacedPod({ namespace: NS, body: sidecarPod('api-0') });

// Users: one who may create upgrades, one who may do nothing.
await applyObjects(admin, [
  { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'operator', namespace: NS } },
  { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'nobody', namespace: NS } },
  {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: 'juicefs-upgrader-e2e' },
    rules: [{ apiGroups: [UPGRADE_GROUP], resources: [UPGRADE_PLURAL], verbs: ['get', 'list', 'create', 'patch'] }],
  } as KubernetesObject,
  {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: 'juicefs-upgrader-e2e' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'juicefs-upgrader-e2e' },
    subjects: [{ kind: 'ServiceAccount', name: 'operator', namespace: NS }],
  } as KubernetesObject,
]);
const tokenOf = async (name: string) => {
  const kc = new KubeConfig();
  kc.loadFromFile(await cp.serviceAccountKubeconfig(NS, name));
  return kc.getCurrentUser()!.token!;
};
const operatorToken = await tokenOf('operator');
const nobodyToken = await tokenOf('nobody');

const dash = await startDashboardStack(cp, { allowWrites: true });
t.teardown(() => dash.stop());
const chrome = await launchChromium();
t.teardown(() => chrome.close());
const page = await chrome.context.newPage();
const consoleErrors: string[] = [];
page.on('console', (m) => {
  if (m.type() === 'error') consoleErrors.push(m.text());
});

const go = async (hash: string) => {
  await page.goto(`${dash.url}#/${hash}`);
};
const shot = (name: string) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
/** axe-core in the page (through the debugger protocol, which the page's CSP does not govern). */
const axeCheck = async (p: Page) => {
  await p.evaluate(axe.source);
  const res: axe.AxeResults = await p.evaluate(() =>
    (window as unknown as { axe: typeof axe }).axe.run(document, { resultTypes: ['violations'] }),
  );
  return res.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join('; ')}`);
};

t.test('the pods page lists the real app pods with their mode, PVC and client', async (t) => {
  await go('pods');
  const table = page.getByRole('table').first();
  await table.getByRole('link', { name: 'shop/web-0' }).waitFor();
  await table.getByRole('link', { name: 'shop/api-0' }).waitFor();
  const webRow = table.getByRole('row').filter({ hasText: 'shop/web-0' });
  t.match(await webRow.innerText(), /mount-pod[\s\S]*node-a[\s\S]*shop\/data[\s\S]*juicefs-system\/juicefs-node-a/);
  const apiRow = table.getByRole('row').filter({ hasText: 'shop/api-0' });
  t.match(await apiRow.innerText(), /sidecar[\s\S]*node-b[\s\S]*shop\/data[\s\S]*juicedata\/mount:ce-v1\.3\.1/);
  await shot('pods');
  t.same(await axeCheck(page), [], 'axe: no serious or critical violations on the pods page');
});

t.test('a link from the app pod leads to its Mount Pod, on to the PV and StorageClass, and back', async (t) => {
  await go('pods');
  await page.getByRole('link', { name: 'shop/web-0' }).click();
  await page.getByRole('heading', { name: 'App pod shop/web-0' }).waitFor();
  // The diagnosis of `kubectl jfs debug` (src/diagnose/), read with the dashboard's own read-only identity.
  await page.getByRole('table', { name: 'The chain walked' }).waitFor();
  t.match(
    await page.getByRole('table', { name: 'The chain walked' }).innerText(),
    /Pod shop\/web-0[\s\S]*PersistentVolumeClaim shop\/data[\s\S]*Bound/,
    'the diagnosis walks the chain from the pod',
  );
  t.match(
    await page.getByRole('table', { name: /^Findings/ }).innerText(),
    /error[\s\S]*Mount Pod juicefs-system\/juicefs-node-a-shop-data-abcdef is Pending/,
    'and says what is wrong: its Mount Pod is Pending (no kubelet runs node-a)',
  );
  await shot('app-pod');
  t.same(await axeCheck(page), [], 'axe: app pod page');
  await page
    .getByRole('link', { name: /juicefs-system\/juicefs-node-a-shop-data/ })
    .first()
    .click();
  await page.getByRole('heading', { name: /Mount Pod juicefs-system\/juicefs-node-a-shop-data-abcdef/ }).waitFor();
  t.match(
    await page.locator('dl.facts').innerText(),
    /shop-data[\s\S]*shop\/web-0/,
    'the Mount Pod names its PV and app pod',
  );
  await shot('mount-pod');
  t.same(await axeCheck(page), [], 'axe: Mount Pod page');
  await page.locator('dl.facts').getByRole('link', { name: 'shop-data' }).click();
  await page.getByRole('heading', { name: 'PV shop-data' }).waitFor();
  t.match(await page.locator('dl.facts').innerText(), /shop\/data[\s\S]*juicefs-sc/);
  await shot('pv');
  t.same(await axeCheck(page), [], 'axe: PV page');
  await page.locator('dl.facts').getByRole('link', { name: 'juicefs-sc' }).click();
  await page.getByRole('heading', { name: 'StorageClass juicefs-sc' }).waitFor();
  await shot('storage-class');
  t.same(await axeCheck(page), [], 'axe: StorageClass page');
  await page.locator('dl.facts').getByRole('link', { name: 'shop/data' }).click();
  await page.getByRole('heading', { name: 'PVC shop/data' }).waitFor();
  await page.locator('dl.facts').getByRole('link', { name: 'shop/web-0' }).click();
  await page.getByRole('heading', { name: 'App pod shop/web-0' }).waitFor();
  t.pass('back at the app pod from its PVC');
});

t.test('mounts, volumes and events pages', async (t) => {
  await go('mounts');
  await page.getByRole('img', { name: /JuiceFS clients per node/ }).waitFor();
  t.match(
    await page.getByRole('img', { name: /JuiceFS clients per node/ }).getAttribute('aria-label'),
    /node-a: 1 Mount Pods, 0 pods with sidecars; node-b: 0 Mount Pods, 1 pods with sidecars/,
    'the picture counts the clients per node',
  );
  await page.getByRole('table', { name: /Sidecars \(1\)/ }).waitFor();
  await shot('mounts');
  t.same(await axeCheck(page), [], 'axe: mounts page');
  await go('volumes');
  await page
    .getByRole('table', { name: /PersistentVolumeClaims \(1\)/ })
    .getByRole('link', { name: 'shop/data' })
    .waitFor();
  await shot('volumes');
  t.same(await axeCheck(page), [], 'axe: volumes page');
  await go('events');
  await page.getByRole('heading', { name: 'Events' }).waitFor();
  t.same(await axeCheck(page), [], 'axe: events page');
});

t.test('a new pod appears without a reload (informers → SSE)', async (t) => {
  await go('pods');
  await page.getByRole('link', { name: 'shop/api-0' }).waitFor();
  const started = Date.now();
  await core.createNamespacedPod({ namespace: NS, body: sidecarPod('api-1') });
  await page.getByRole('link', { name: 'shop/api-1' }).waitFor({ timeout: 10_000 });
  t.comment(`pod created → on the open page in ${Date.now() - started} ms`);
  t.pass('the new pod is listed live');
});

t.test('the ConfigMap page: drift of running clients and the PVCs each pvcSelector matches', async (t) => {
  await go('config');
  const drift = page.getByRole('table', { name: /Clients whose image or mount options/ });
  await drift.waitFor();
  t.match(
    await drift.innerText(),
    /shop\/api-0[\s\S]*jfs-mount[\s\S]*ce-v1\.3\.1[\s\S]*ce-v1\.3\.2[\s\S]*cache-size=2048/,
  );
  const patches = page.getByRole('table', { name: /Each pvcSelector/ });
  t.match(await patches.innerText(), /mountPodPatch\[0\][\s\S]*matchStorageClassName[\s\S]*shop\/data/);
  // An edit shows its diff before it is saved.
  const text = page.getByLabel(/config\.yaml/);
  await text.fill(`${await text.inputValue()}upgradeReadinessGate: false\n`);
  t.match(await page.getByLabel('what saving changes').innerText(), /\+ upgradeReadinessGate: false/);
  await shot('config');
  t.same(await axeCheck(page), [], 'axe: ConfigMap page');
  // Saving without a token: refused by the dashboard before the API server is asked.
  await page.getByRole('button', { name: 'Save config.yaml' }).click();
  await page.getByRole('alert').filter({ hasText: 'your own Kubernetes credentials' }).waitFor();
  t.pass('no token, no write');
});

t.test('the upgrade button acts with the user: refused without RBAC (403 shown), created with it', async (t) => {
  // The dashboard's own identity may not create upgrades (the shipped RBAC is read-only).
  const dashKc = new KubeConfig();
  dashKc.loadFromFile(dash.kubeconfig);
  const asDashboard = await dashKc
    .makeApiClient(CustomObjectsApi)
    .createClusterCustomObject({
      ...CRD,
      body: {
        apiVersion: `${UPGRADE_GROUP}/${UPGRADE_VERSION}`,
        kind: 'JuiceFSUpgrade',
        metadata: { name: 'x' },
        spec: {},
      },
    })
    .then(
      () => 'created',
      (err) => apiMessage(err),
    );
  t.match(asDashboard, /forbidden/, `the dashboard's ServiceAccount (${DASHBOARD_SA}) cannot create one`);

  const upgradeVia = async (token: string) => {
    await go('pods');
    if (token) {
      await page.getByLabel('Your bearer token (for write actions)').fill(token);
      await page.getByRole('button', { name: /Use|Update/ }).click();
    }
    await page.getByRole('link', { name: 'shop/api-0' }).click();
    await page.getByLabel('New client image').fill('juicedata/mount:ce-v1.3.2');
    await page.getByRole('button', { name: 'Upgrade this pod' }).click();
  };
  await upgradeVia(nobodyToken);
  const refusal = page.getByRole('alert').filter({ hasText: /403/ });
  await refusal.waitFor();
  t.match(
    await refusal.innerText(),
    /403[\s\S]*forbidden[\s\S]*system:serviceaccount:shop:nobody/,
    'the API server’s 403, plainly',
  );
  await shot('upgrade-refused');

  await upgradeVia(operatorToken);
  const created = page.getByRole('status').filter({ hasText: /Upgrade .* created/ });
  await created.waitFor();
  const name = (await created.getByRole('link').innerText()).trim();
  const u = (await custom.getClusterCustomObject({ ...CRD, name })) as JuiceFSUpgrade;
  t.same(
    { kind: u.spec.kind, target: u.spec.target, selector: u.spec.selector },
    {
      kind: 'sidecar',
      target: { image: 'juicedata/mount:ce-v1.3.2' },
      selector: { namespaces: [NS], podSelector: { matchLabels: { app: 'api-0' } } },
    },
    'the JuiceFSUpgrade selects that one pod',
  );
  await created.getByRole('link').click();
  await page.getByRole('heading', { name: `Upgrade ${name}` }).waitFor();
  await page.getByRole('progressbar').waitFor();
  await shot('upgrade');
  t.same(await axeCheck(page), [], 'axe: upgrade page');
  // Pause through the page, with the same token.
  await page.getByRole('button', { name: 'Pause' }).click();
  await eventually(
    async () => ((await custom.getClusterCustomObject({ ...CRD, name })) as JuiceFSUpgrade).spec.paused === true,
    10_000,
    'upgrade paused',
  );
  await page.getByRole('button', { name: 'Resume' }).waitFor();
  await go('upgrades');
  await page.getByRole('table', { name: /JuiceFSUpgrade objects \(1\)/ }).waitFor();
  await shot('upgrades');
  t.same(await axeCheck(page), [], 'axe: upgrades page');
});

t.test('bad requests get a 400 and a message; the process stays up', async (t) => {
  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(`${dash.url}api/upgrades`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-jfs-dashboard': '1',
        authorization: `Bearer ${operatorToken}`,
        ...headers,
      },
      body,
    });
  const malformed = await post('{"spec": ');
  t.equal(malformed.status, 400, 'malformed JSON');
  const noImage = await post(JSON.stringify({ spec: { kind: 'sidecar', target: {} } }));
  t.equal(noImage.status, 400);
  t.match(((await noImage.json()) as { message: string }).message, /spec\.target needs an image/);
  const badKind = await post(JSON.stringify({ spec: { kind: 'everything', target: { image: 'x' } } }));
  t.match(((await badKind.json()) as { message: string }).message, /spec\.kind must be one of/);
  const noHeader = await post(JSON.stringify({ spec: { target: { image: 'x' } } }), { 'x-jfs-dashboard': '' });
  t.equal(noHeader.status, 400, 'a write without the page header (a cross-site form) is refused');
  const badConfig = await fetch(`${dash.url}api/config`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', 'x-jfs-dashboard': '1', authorization: `Bearer ${operatorToken}` },
    body: JSON.stringify({ text: 'mountPodPatch: 3\n' }),
  });
  t.equal(badConfig.status, 400);
  t.match(((await badConfig.json()) as { message: string }).message, /config\.yaml is not valid/);
  const logOfNothing = await fetch(`${dash.url}api/logs/shop/web-0/nope`);
  t.equal(logOfNothing.status, 404, 'the log of a container the pod does not have');
  const healthy = await fetch(`${dash.url}healthz`);
  t.equal(healthy.status, 200, 'still serving');
  t.same(
    consoleErrors.filter((e) => !/status of 40[0-9]/.test(e)),
    [],
    'no errors in the browser console',
  );
});
