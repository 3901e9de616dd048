// The kubelet plugin-registration API served by the node service
// (src/node/registration.ts), with a grpc-js client playing the kubelet as
// pkg/kubelet/pluginmanager does: find the socket in the folder, GetInfo,
// NodeGetInfo on the endpoint it names, NotifyRegistrationStatus.
import * as grpc from '@grpc/grpc-js';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, rmSync, watch, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { csiClient } from '../../src/local/csi-client.js';
import { runNode } from '../../src/node/run.js';
import { loadRegistration, registrationSocket, startRegistration } from '../../src/node/registration.js';

type Call = (method: string, req: Record<string, unknown>) => Promise<Record<string, unknown>>;

/** A registration client on a socket, as the kubelet dials it. */
function kubelet(socket: string): { call: Call; close(): void } {
  const { Registration } = loadRegistration().pluginregistration;
  const client = new Registration(`unix://${socket}`, grpc.credentials.createInsecure());
  const methods = client as unknown as Record<
    string,
    (req: unknown, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void
  >;
  return {
    call: (method, req) =>
      new Promise((resolve, reject) =>
        methods[method].call(client, req, (err, res) => (err ? reject(err) : resolve(res))),
      ),
    close: () => client.close(),
  };
}

/** A logger whose lines the test can read. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

const until = async (what: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
};

const isSocket = (file: string) => existsSync(file) && lstatSync(file).isSocket();

t.test('the node service registers with a kubelet-like client, end to end', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-reg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const registry = path.join(dir, 'plugins_registry');
  const csiSock = path.join(dir, 'plugins/csi.juicefs.com/csi.sock');
  const { log, lines } = capture();
  const node = await runNode({
    endpoint: `unix://${csiSock}`,
    nodeId: 'node-1',
    namespace: 'juicefs-system',
    // no kubeconfig (and not in a cluster): Mount Pod mode off; registration needs only NodeGetInfo
    registration: { dir: registry, kubeletEndpoint: csiSock },
    log,
  });
  const socket = registrationSocket(registry);
  t.equal(path.basename(socket), 'csi.juicefs.com-reg.sock', 'named as node-driver-registrar names it');
  t.ok(isSocket(socket), 'a Unix socket in the registration folder');

  // The kubelet's steps.
  const k = kubelet(socket);
  const info = await k.call('GetInfo', {});
  t.same(
    info,
    { type: 'CSIPlugin', name: 'csi.juicefs.com', endpoint: csiSock, supported_versions: ['1.0.0'] },
    'PluginInfo',
  );
  const csi = csiClient(info.endpoint as string, 'Node');
  const nodeInfo = await csi.call('NodeGetInfo', {});
  t.equal(nodeInfo.node_id, 'node-1', 'the endpoint it names is the CSI server');
  csi.close();
  t.same(await k.call('NotifyRegistrationStatus', { plugin_registered: true, error: '' }), {});
  t.ok(
    lines.some((l) => l.msg === 'registered with the kubelet'),
    'logs the registration',
  );
  k.close();

  await node.close();
  t.notOk(existsSync(socket), 'stop removes the registration socket (the kubelet then deregisters the driver)');
  await t.rejects(
    new Promise((resolve, reject) => net.createConnection(csiSock).once('connect', resolve).once('error', reject)),
    'the CSI server is closed too',
  );
});

t.test('a stale socket is replaced; a socket path holding something else is an error', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-reg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socket = registrationSocket(dir);
  // A socket left by a process that died: it exits while listening, so nothing unlinks the file.
  const died = spawnSync(process.execPath, [
    '-e',
    `require('node:net').createServer().listen(${JSON.stringify(socket)}, () => process.exit(0))`,
  ]);
  t.equal(died.status, 0);
  t.ok(isSocket(socket), 'a stale socket is there');
  const { log } = capture();
  const reg = await startRegistration({ dir, kubeletEndpoint: '/k/csi.sock', log });
  const k = kubelet(socket);
  t.equal((await k.call('GetInfo', {})).name, 'csi.juicefs.com', 'served on the re-created socket');
  k.close();
  await reg.close();
  t.notOk(existsSync(socket));

  writeFileSync(socket, 'not a socket');
  await t.rejects(startRegistration({ dir, kubeletEndpoint: '/k/csi.sock', log }), /is not a socket/);
  t.ok(existsSync(socket), 'a file that is not a socket is left alone');
  rmSync(socket);
  await t.rejects(startRegistration({ dir, kubeletEndpoint: 'relative/csi.sock', log }), /absolute path/);
  t.same(
    (
      await (async () => {
        const r = await startRegistration({ dir, kubeletEndpoint: 'unix:///host/csi.sock', log });
        const c = kubelet(r.socket);
        const i = await c.call('GetInfo', {});
        c.close();
        await r.close();
        return i;
      })()
    ).endpoint,
    '/host/csi.sock',
    'a unix:// endpoint is given to the kubelet as the plain path it dials',
  );
});

t.test('a failed registration is logged and retried on a new socket', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-reg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { log, lines } = capture();
  const reg = await startRegistration({ dir, kubeletEndpoint: '/k/csi.sock', log, retryMs: 200 });
  t.teardown(() => reg.close());
  // What the kubelet watches: create and delete events in the folder (fsnotify; fs.watch here).
  let events = 0;
  const watcher = watch(dir, (_type, name) => name === path.basename(reg.socket) && events++);
  t.teardown(() => watcher.close());
  const k = kubelet(reg.socket);
  const why = 'RegisterPlugin error -- plugin registration failed with err: rpc error: code = Unavailable';
  await k.call('NotifyRegistrationStatus', { plugin_registered: false, error: why });
  k.close();
  const failure = lines.find((l) => l.kubeletError === why);
  t.ok(failure, 'the kubelet error is logged as given');
  t.equal(failure?.level, 50, 'at error level');
  t.match(failure?.msg, /did NOT register.*--kubelet-plugin-endpoint/, 'and says what to check');
  t.notOk(reg.registered());
  // The kubelet retries only on a new create event: the socket is re-created.
  await until(() => events >= 2 && isSocket(reg.socket));
  const k2 = kubelet(reg.socket);
  t.equal((await k2.call('GetInfo', {})).type, 'CSIPlugin', 'the new socket serves');
  await k2.call('NotifyRegistrationStatus', { plugin_registered: true, error: '' });
  k2.close();
  t.ok(reg.registered(), 'registered after the retry');
});
