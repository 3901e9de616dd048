// Prometheus metrics of the controller and the node service (issue 14 item 5): every CSI call through a real gRPC
// server on a socket is counted by method and result and timed; the reference driver's error counters keep its
// names; the node's target health is read from the mount table (pure part here; the gauges in the real-node e2e);
// /metrics serves the text format.
import type { V1Pod } from '@kubernetes/client-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { referenceKey } from '../../src/contract/mount-pod-refs.js';
import { CsiMetrics } from '../../src/csi/metrics.js';
import { Code, CsiError, startCsiServer } from '../../src/csi/server.js';
import type { MountEntry } from '../../src/juicefs/mounts.js';
import { csiClient } from '../../src/local/csi-client.js';
import { targetHealth } from '../../src/node/node-metrics.js';
import { startHealthServer } from '../../src/util/health-server.js';

const log = pino({ level: 'silent' });
const value = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

t.test('CSI calls are counted by method and code, timed, and failures feed the reference counters', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-csi-metrics-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const metrics = new CsiMetrics({ role: 'both', withDefaults: false });
  const sock = path.join(dir, 'csi.sock');
  const server = await startCsiServer(
    sock,
    {
      Controller: {
        CreateVolume: async () => {
          throw new CsiError(Code.RESOURCE_EXHAUSTED, 'no room');
        },
      },
      Node: {
        NodePublishVolume: async () => ({}),
        NodeUnpublishVolume: async () => {
          throw new Error('a bug');
        },
      },
    },
    log,
    metrics,
  );
  t.teardown(() => server.close());
  const controller = csiClient(sock, 'Controller');
  const node = csiClient(sock, 'Node');
  t.teardown(() => (controller.close(), node.close()));
  await t.rejects(controller.call('CreateVolume', { name: 'v' }));
  await t.rejects(controller.call('CreateVolume', { name: 'v' }));
  await node.call('NodePublishVolume', { volume_id: 'v', target_path: '/t' });
  await t.rejects(node.call('NodeUnpublishVolume', { volume_id: 'v', target_path: '/t' }));

  const { contentType, body } = await metrics.render();
  t.match(contentType, /^text\/plain/);
  t.equal(value(body, 'jfs_sidecar_csi_operations_total{method="CreateVolume",code="RESOURCE_EXHAUSTED"}'), 2);
  t.equal(value(body, 'jfs_sidecar_csi_operations_total{method="NodePublishVolume",code="OK"}'), 1);
  t.equal(value(body, 'jfs_sidecar_csi_operations_total{method="NodeUnpublishVolume",code="INTERNAL"}'), 1);
  t.equal(value(body, 'jfs_sidecar_csi_operation_duration_seconds_count{method="CreateVolume"}'), 2);
  t.equal(value(body, 'juicefs_provision_errors'), 2, "the reference's name for CreateVolume failures");
  t.equal(value(body, 'juicefs_volume_errors'), 0, 'no NodePublishVolume failed');
  t.equal(value(body, 'juicefs_volume_del_errors'), 1, 'one NodeUnpublishVolume failed');
});

t.test('each process exposes only its own reference counters', async (t) => {
  const names = async (role: 'controller' | 'node') =>
    (await new CsiMetrics({ role, withDefaults: false }).render()).body
      .split('\n')
      .filter((l) => l.startsWith('# TYPE juicefs_'))
      .map((l) => l.split(' ')[2]);
  t.same(await names('controller'), ['juicefs_provision_errors']);
  t.same((await names('node')).sort(), ['juicefs_volume_del_errors', 'juicefs_volume_errors']);
});

t.test('target health: bound to the serving JuiceFS mount of a Ready Mount Pod, else 0', async (t) => {
  const mp = '/var/lib/juicefs/volume/pv-a-1234567890';
  const target = '/var/lib/kubelet/pods/11111111-1111-1111-1111-111111111111/volumes/kubernetes.io~csi/pv-a/mount';
  const other = '/var/lib/kubelet/pods/22222222-2222-2222-2222-222222222222/volumes/kubernetes.io~csi/pv-a/mount';
  const pod = (ready: boolean): V1Pod => ({
    metadata: {
      name: 'juicefs-node-pv-a-1234567890',
      labels: { 'volume-id': 'pv-a' },
      annotations: { [referenceKey(target)]: target, [referenceKey(other)]: other },
    },
    spec: {
      containers: [{ name: 'jfs-mount', env: [{ name: 'JFS_MOUNT_POINT', value: mp }] }],
    },
    status: { conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
  });
  const entry = (mountPoint: string, device: string, fsType = 'fuse.juicefs'): MountEntry => ({
    device,
    mountPoint,
    readOnly: false,
    root: '/',
    fsType,
    source: 'JuiceFS:vol',
  });
  const mounts = [entry(mp, '0:50'), entry(target, '0:50'), entry(other, '0:40')];
  const health = targetHealth([pod(true)], mounts);
  t.same(
    health.map((h) => [h.podUid, h.healthy]).sort(),
    [
      ['11111111-1111-1111-1111-111111111111', true],
      ['22222222-2222-2222-2222-222222222222', false],
    ],
    'bound to the current connection: healthy; to an old one: not',
  );
  t.ok(
    targetHealth([pod(false)], mounts).every((h) => !h.healthy),
    'a Mount Pod not Ready serves no target',
  );
  t.ok(
    targetHealth([pod(true)], [entry(target, '0:50')]).every((h) => !h.healthy),
    'nothing mounted at the mount point',
  );
  t.equal(health[0].volumeId, 'pv-a');
});

t.test('/metrics, /healthz and /readyz over HTTP', async (t) => {
  const metrics = new CsiMetrics({ role: 'controller', withDefaults: false });
  const server = await startHealthServer('127.0.0.1:0', { metrics: () => metrics.render(), ready: () => ({ x: 1 }) });
  t.teardown(() => server.close());
  const fetchText = (p: string) =>
    new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
      get({ host: '127.0.0.1', port: server.port, path: p }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
      }).on('error', reject);
    });
  const m = await fetchText('/metrics');
  t.equal(m.status, 200);
  t.match(m.type, /text\/plain/);
  t.match(m.body, /# TYPE juicefs_provision_errors counter/);
  t.same(JSON.parse((await fetchText('/readyz')).body), { status: 'ok', x: 1 });
  t.equal((await fetchText('/nothing')).status, 404);
  await t.rejects(
    startHealthServer('nonsense', {}, '--metrics-address'),
    /--metrics-address "nonsense" is not host:port/,
  );
});
