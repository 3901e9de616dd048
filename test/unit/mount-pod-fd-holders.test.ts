// The node service's fd holders per Mount Pod folder (src/node/mount-pod-fd-holders.ts), on a scratch root: a
// holder listens before the pod exists, recover() keeps the folders of live Mount Pods and removes the others,
// remove() takes the folder away. The hand-over itself, with the real juicefs, is test/e2e/mount-pod-fd-real-node.
import type { V1Pod } from '@kubernetes/client-node';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { MountPodFdHolders } from '../../src/node/mount-pod-fd-holders.js';
import { FD_HOLDER_SOCKET, FD_VOLUME_NAME } from '../../src/node/mount-pod-plan.js';

const podWith = (fdDir: string): V1Pod => ({
  metadata: { name: path.basename(fdDir) },
  spec: {
    containers: [{ name: 'jfs-mount', env: [{ name: 'JFS_MOUNT_POINT', value: `${fdDir}-mnt` }] }],
    volumes: [{ name: FD_VOLUME_NAME, hostPath: { path: fdDir } }],
  },
});

t.test('holders per Mount Pod folder: listen first, recover after a restart, remove when gone', async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'fd-holders-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const log = pino({ level: 'silent' });
  const live = path.join(root, 'pv-a-1234');
  const mountPoint = path.join(root, 'mnt', 'pv-a-1234');

  const first = new MountPodFdHolders(log, root);
  await first.ensure(live, mountPoint);
  t.ok(existsSync(path.join(live, FD_HOLDER_SOCKET)), 'listening in the folder before the Mount Pod exists');
  t.ok(existsSync(mountPoint), 'the mount point made (juicefs does not with JFS_SUPER_COMM)');
  t.equal(await first.holds(live), false, 'no fd until a client hands one over');
  await t.rejects(first.ensure('/elsewhere/x', mountPoint), /not under/, 'only folders under its root');
  await first.close();

  // A restart: the live Mount Pod's folder keeps a holder, a folder of no Mount Pod goes.
  const stale = path.join(root, 'pv-gone-5678');
  mkdirSync(stale);
  writeFileSync(path.join(stale, 'state1.json'), '{}');
  const second = new MountPodFdHolders(log, root);
  await second.recover([podWith(live)]);
  t.ok(existsSync(path.join(live, FD_HOLDER_SOCKET)), 'the live one listens again');
  t.notOk(existsSync(stale), 'the folder of no Mount Pod removed');
  await second.remove(live);
  t.notOk(existsSync(live), 'removed with its Mount Pod');
  await second.close();
});
