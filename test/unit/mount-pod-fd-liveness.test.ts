// The dead-fd defect (ADR 0015's CI run): a held fd whose FUSE connection is no longer mounted where the client
// mounts is dropped, never handed to a new client. Real sockets and real descriptors (a client here speaks juicefs's
// side of JFS_SUPER_COMM over usocket); only the mount table is a function the test sets.
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { USocket } from 'usocket';
import { closeAll, readOneWithFds, send } from '../../src/fdpass/exchange.js';
import { FuseFdHolder } from '../../src/fdpass/holder.js';
import { endSocket } from '../../src/fdpass/lifecycle.js';
import { CLOSE } from '../../src/fdpass/protocol.js';

/** One exchange as juicefs's getFuseFd/sendFuseFd: how many fds the holder offered; then hand `give` over or CLOSE. */
async function exchange(socket: string, give?: number): Promise<{ offered: number; setting: string }> {
  const sock = new USocket();
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.connect(socket, () => resolve());
    });
    const { data, fds } = await readOneWithFds(sock, 5000);
    const offered = fds.length;
    closeAll(fds);
    if (give === undefined) await send(sock, { data: CLOSE, fds: [0] });
    else await send(sock, { data: Buffer.alloc(104, 7), fds: [give] });
    return { offered, setting: data.toString('latin1') };
  } finally {
    endSocket(sock);
  }
}

const settle = () => new Promise((r) => setTimeout(r, 100));

t.test('a held fd is offered only while its connection is still mounted', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fd-liveness-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let mounted: string | undefined = '0:101';
  const holder = await FuseFdHolder.listen(path.join(dir, 's.sock'), {
    log: pino({ level: 'silent' }),
    connection: () => mounted,
  });
  t.teardown(() => holder.close());
  const socket = path.join(dir, 's.sock');

  const fd = openSync('/dev/null', 'r');
  await exchange(socket, fd);
  closeSync(fd); // the holder has its own copy (SCM_RIGHTS dups it)
  await settle();
  t.equal(holder.held()?.connection, '0:101', 'the connection mounted when the fd was stored is recorded');
  t.equal((await exchange(socket)).offered, 2, 'live: the next client is offered the dummy and the held fd');

  mounted = undefined; // the mount point was unmounted (a Mount Pod's preStop, an unpublish)
  const dead = holder.held()!.fd;
  const after = await exchange(socket);
  t.equal(after.offered, 1, 'dead: only the dummy, so the client mounts afresh');
  t.equal(after.setting, 'FUSE', "juicefs's initial setting, as for a holder that holds nothing");
  t.equal(holder.held(), undefined, 'the dead fd is no longer held');
  t.throws(() => fstatSync(dead), /EBADF/, 'and it is closed, so the kernel can end that connection');

  // A new fd stored under another connection, then a different connection mounted there: dead too.
  mounted = '0:102';
  const next = openSync('/dev/null', 'r');
  await exchange(socket, next);
  closeSync(next);
  await settle();
  t.equal(holder.held()?.connection, '0:102');
  mounted = '0:103';
  t.equal(holder.live(), undefined, 'a fd whose connection was replaced at the mount point is dropped');
  t.equal((await exchange(socket)).offered, 1);
});

t.test('a fd stored before its connection could be named takes the one mounted next', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fd-liveness-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let mounted: string | undefined;
  const adopt = { fd: openSync('/dev/null', 'r'), setting: Buffer.alloc(104, 1) };
  const holder = await FuseFdHolder.listen(path.join(dir, 's.sock'), {
    log: pino({ level: 'silent' }),
    adopt,
    connection: () => mounted,
  });
  t.teardown(async () => {
    holder.release();
    await holder.close();
  });
  t.equal(holder.held()?.connection, undefined, 'nothing mounted when adopted');
  mounted = '0:55';
  t.equal(holder.live()?.connection, '0:55', 'named on the next look');
  mounted = undefined;
  t.equal(holder.live(), undefined, 'dropped once unmounted');
});

t.test('without a connection function every held fd counts as live (the sidecar holder)', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fd-liveness-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const holder = await FuseFdHolder.listen(path.join(dir, 's.sock'), {
    log: pino({ level: 'silent' }),
    adopt: { fd: openSync('/dev/null', 'r'), setting: Buffer.alloc(104, 1) },
  });
  t.teardown(async () => {
    holder.release();
    await holder.close();
  });
  t.ok(holder.live());
  t.equal((await exchange(path.join(dir, 's.sock'))).offered, 2);
});
