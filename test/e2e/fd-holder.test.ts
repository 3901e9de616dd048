// The FUSE fd holder (src/fdpass/) against the real juicefs client on this host, no kubelet: FUSE as root,
// a SQLite + file volume. What survives what:
// - first mount: the holder stores the client's /dev/fuse fd;
// - SIGKILL of the whole client (supervisor + mount process, as a container crash), then a new
//   `juicefs mount` with the same JFS_SUPER_COMM: the same FUSE connection (device number) serves again,
//   new opens work, a file open at the crash gets EBADF (its handle died with the process);
// - SIGHUP of the mount process (juicefs's graceful restart, in the same supervisor): the open file keeps working;
// - handover to a new supervisor (what the sidecar's upgrade does): stop the supervisor, SIGHUP the mount
//   process, move its state file, kill the old supervisor, start a new client with `_FUSE_STATE_PATH`:
//   the open file keeps working across the process change;
// - a restarted holder gets the fd back from the running supervisor's own socket (pullFuseFd).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { FuseFdHolder, pullFuseFd, type HeldFd } from '../../src/fdpass/holder.js';
import { mountAt, JUICEFS_FS_TYPE } from '../../src/juicefs/mounts.js';
import { makeVolume, type TestVolume } from '../env/juicefs.js';

const log = pino({ level: process.env.FD_HOLDER_LOG ?? 'warn' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => T | undefined | false, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(50);
  }
}

interface Client {
  proc: ChildProcess;
  out: () => string;
}

/** `juicefs mount` in the foreground, in its own process group (so one kill reaches supervisor and child). */
function startClient(vol: TestVolume, mnt: string, env: Record<string, string>): Client {
  const proc = spawn(
    vol.juicefs,
    ['mount', '--no-usage-report', `--cache-dir=${vol.dir}/cache`, '--no-bgjob', vol.metaurl, mnt],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return { proc, out: () => out };
}

/** The supervisor's mount process: its child. */
function mountProcess(supervisor: number): number | undefined {
  const r = spawnSync('pgrep', ['-P', String(supervisor)], { encoding: 'utf8' });
  const pid = Number(r.stdout.trim().split('\n')[0]);
  return pid > 0 ? pid : undefined;
}

const processState = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
  } catch {
    return undefined;
  }
};

/**
 * An "app" in its own process (a blocked FUSE call must not block the test): it opens `file` once and,
 * for each line on stdin, appends it and answers `ok` or the error code.
 */
function startWriter(w: World, file: string) {
  const script = `
    const fs = require('node:fs');
    const fd = fs.openSync(process.argv[1], 'a');
    process.stdout.write('open\\n');
    require('node:readline').createInterface({ input: process.stdin }).on('line', (l) => {
      try { fs.writeSync(fd, l + '\\n'); fs.fsyncSync(fd); process.stdout.write('ok\\n'); }
      catch (e) { process.stdout.write((e.code || String(e)) + '\\n'); }
    });`;
  const proc = spawn(process.execPath, ['-e', script, file], { stdio: ['pipe', 'pipe', 'inherit'] });
  w.stops.push(() => proc.kill('SIGKILL'));
  const answers: string[] = [];
  let buf = '';
  proc.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    answers.push(...lines);
  });
  return {
    proc,
    opened: () => until('writer open', () => answers.includes('open')),
    async write(line: string, ms = 15_000): Promise<string> {
      const n = answers.length;
      proc.stdin.write(line + '\n');
      return until(`write ${line}`, () => answers.length > n && answers[n], ms);
    },
  };
}

/** A check through the mount in a child process with a timeout: a dead connection blocks instead of failing. */
function probe(cmd: string): { ok: boolean; out: string } {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8', timeout: 10_000 });
  return { ok: r.status === 0, out: (r.stdout + r.stderr).trim() };
}

const deviceOf = (mnt: string) => {
  const m = mountAt(mnt);
  return m?.fsType === JUICEFS_FS_TYPE ? m.device : undefined;
};

interface World {
  vol: TestVolume;
  mnt: string;
  sock: string;
  holder: FuseFdHolder;
  stored: HeldFd[];
  clients: Client[];
  /** The FUSE connection number (the device minor): the teardown aborts it if anything still holds it. */
  conn?: string;
  stops: (() => void)[];
}

async function world(t: Test): Promise<World> {
  const vol = makeVolume('fdholder');
  const mnt = mkdtempSync(path.join(tmpdir(), 'jfs-fdh-mnt-'));
  const sock = path.join(vol.dir, 'fuse_fd_csi_comm.sock');
  const holder = await FuseFdHolder.listen(sock, { log });
  const w: World = { vol, mnt, sock, holder, stored: [], clients: [], stops: [] };
  holder.on('stored', (h) => w.stored.push(h));
  t.teardown(async () => {
    for (const stop of w.stops) stop();
    for (const c of w.clients) {
      try {
        process.kill(-c.proc.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await w.holder.close();
    w.holder.release(); // the last reference: the kernel ends the connection, so the lazy umount completes
    spawnSync('umount', ['-l', mnt]);
    // The connection's fusectl entry goes with its superblock; if it is still there, end it for sure
    // (writing abort to a connection nobody holds is a no-op), so no process is left waiting on it.
    const connDir = `/sys/fs/fuse/connections/${w.conn}`;
    if (w.conn && existsSync(connDir)) writeFileSync(`${connDir}/abort`, '1');
    rmSync(mnt, { recursive: true, force: true });
    vol.remove();
  });
  return w;
}

async function mountFirst(w: World, env: Record<string, string> = {}): Promise<{ client: Client; device: string }> {
  const client = startClient(w.vol, w.mnt, { JFS_SUPER_COMM: w.sock, ...env });
  w.clients.push(client);
  const device = await until('first mount', () => deviceOf(w.mnt));
  w.conn = device.split(':')[1];
  await until('holder stored the fd', () => w.stored.length > 0);
  return { client, device };
}

t.test('first mount: the holder stores the fd of the client', async (t) => {
  const w = await world(t);
  const { device } = await mountFirst(w);
  const held = w.holder.held();
  t.ok(held, 'an fd is held');
  t.ok(held!.setting.length >= 40, `the setting is the client's FUSE InitIn (${held!.setting.length} bytes)`);
  t.match(readFileSync(`/proc/self/fdinfo/${held!.fd}`, 'utf8'), /flags/, 'the held fd is open in this process');
  t.equal(spawnSync('readlink', [`/proc/self/fd/${held!.fd}`], { encoding: 'utf8' }).stdout.trim(), '/dev/fuse');
  t.ok(probe(`echo hi > ${w.mnt}/first && cat ${w.mnt}/first`).ok, `the mount works (device ${device})`);
});

t.test(
  'SIGKILL of the whole client, then a new client: same connection, new opens work, old open file EBADF',
  async (t) => {
    const w = await world(t);
    const { client, device } = await mountFirst(w);
    const writer = startWriter(w, `${w.mnt}/open-at-crash`);
    await writer.opened();
    t.equal(await writer.write('before'), 'ok');
    const storedBefore = w.stored.length;

    process.kill(-client.proc.pid!, 'SIGKILL');
    await until('client gone', () => client.proc.exitCode !== null || client.proc.signalCode !== null);
    t.equal(deviceOf(w.mnt), device, 'the mount stays after the crash (same device)');

    const t0 = Date.now();
    const next = startClient(w.vol, w.mnt, { JFS_SUPER_COMM: w.sock });
    w.clients.push(next);
    await until('the new client handed its fd back', () => w.stored.length > storedBefore);
    await until('new client serves', () => probe(`ls ${w.mnt}`).ok);
    const recovery = Date.now() - t0;
    t.equal(deviceOf(w.mnt), device, `same FUSE connection after the new client (recovered in ${recovery} ms)`);
    t.ok(probe(`echo after > ${w.mnt}/opened-after && cat ${w.mnt}/opened-after`).ok, 'a file opened after works');
    t.equal(probe(`cat ${w.mnt}/open-at-crash`).out, 'before', 'what was written before the crash is there');
    t.equal(
      await writer.write('after'),
      'EBADF',
      'the file open at the crash: EBADF (its handle died with the client)',
    );
    t.notOk(next.out().includes('mount on top'), 'the new client did not mount on top');
  },
);

t.test('SIGHUP of the mount process: its supervisor restarts it, the open file keeps working', async (t) => {
  const w = await world(t);
  const { client, device } = await mountFirst(w);
  const writer = startWriter(w, `${w.mnt}/kept`);
  await writer.opened();
  t.equal(await writer.write('1'), 'ok');
  const child = await until('mount process', () => mountProcess(client.proc.pid!));
  process.kill(child, 'SIGHUP');
  await until('a new mount process', () => {
    const c = mountProcess(client.proc.pid!);
    return c !== undefined && c !== child;
  });
  t.equal(await writer.write('2'), 'ok', 'the open file keeps working');
  t.equal(deviceOf(w.mnt), device, 'same connection');
  t.equal(probe(`cat ${w.mnt}/kept`).out, '1\n2', 'both writes are in the file');
});

t.test('handover to a new supervisor with _FUSE_STATE_PATH: the open file keeps working', async (t) => {
  const w = await world(t);
  const statePath = path.join(w.vol.dir, 'state.json');
  const { client, device } = await mountFirst(w, { _FUSE_STATE_PATH: statePath });
  const writer = startWriter(w, `${w.mnt}/handed-over`);
  await writer.opened();
  t.equal(await writer.write('old client'), 'ok');
  const sup = client.proc.pid!;
  const child = await until('mount process', () => mountProcess(sup));

  // The stop of the upgrade path: the supervisor is stopped first so that it neither restarts its child
  // nor is gone when the child writes /tmp/state<ppid>.json; then the child flushes, saves its handles, exits.
  const t0 = Date.now();
  process.kill(sup, 'SIGSTOP');
  process.kill(child, 'SIGHUP');
  await until('mount process exited', () => processState(child) === 'Z' || processState(child) === undefined);
  const written = `/tmp/state${sup}.json`;
  t.ok(existsSync(written), `the mount process saved its handles in ${written}`);
  renameSync(written, statePath);
  process.kill(-sup, 'SIGKILL');
  await until('old client gone', () => client.proc.signalCode !== null || client.proc.exitCode !== null);

  const next = startClient(w.vol, w.mnt, { JFS_SUPER_COMM: w.sock, _FUSE_STATE_PATH: statePath });
  w.clients.push(next);
  t.equal(await writer.write('new client'), 'ok', `the open file keeps working (${Date.now() - t0} ms after the stop)`);
  t.equal(deviceOf(w.mnt), device, 'same connection');
  t.ok(
    next.out().includes('load 1 handles') || /load \d+ handles/.test(next.out()),
    'the new client loaded the handles',
  );
  t.equal(probe(`cat ${w.mnt}/handed-over`).out, 'old client\nnew client', 'no write lost');
  t.ok(existsSync(`${statePath}.bak`) && !existsSync(statePath), 'the state file was consumed (renamed .bak)');
});

t.test('a restarted holder pulls the fd back from the running supervisor, which keeps serving', async (t) => {
  const w = await world(t);
  const { client, device } = await mountFirst(w);
  const commPath = `/tmp/fuse_fd_comm.${client.proc.pid!}`;
  t.ok(existsSync(commPath), `the supervisor serves ${commPath}`);
  // The holder "restarts": it loses what it held.
  await w.holder.close();
  w.holder.release();
  const pulled = await pullFuseFd(commPath);
  t.ok(pulled, 'pulled an fd from the supervisor');
  w.holder = await FuseFdHolder.listen(w.sock, { log, adopt: pulled });
  w.holder.on('stored', (h) => w.stored.push(h));
  t.ok(probe(`echo x > ${w.mnt}/after-pull && cat ${w.mnt}/after-pull`).ok, 'the mount still works');
  // The supervisor still has its fd: a crash of its mount process is recovered as before, and the
  // supervisor hands the new mount process's fd to the new holder.
  const child = await until('mount process', () => mountProcess(client.proc.pid!));
  const storedBefore = w.stored.length;
  process.kill(child, 'SIGKILL');
  await until('a new mount process', () => {
    const c = mountProcess(client.proc.pid!);
    return c !== undefined && c !== child;
  });
  await until('serves again', () => probe(`ls ${w.mnt}`).ok);
  await until('the new holder got the fd of the new mount process', () => w.stored.length > storedBefore);
  t.not(w.holder.held()?.fd, pulled!.fd, 'the adopted fd was replaced by the new one');
  // And what the holder keeps now brings the mount back after a whole-client crash.
  process.kill(-client.proc.pid!, 'SIGKILL');
  await until('client gone', () => client.proc.signalCode !== null || client.proc.exitCode !== null);
  const next = startClient(w.vol, w.mnt, { JFS_SUPER_COMM: w.sock });
  w.clients.push(next);
  await until('new client serves', () => probe(`ls ${w.mnt}/after-pull`).ok);
  t.equal(deviceOf(w.mnt), device, 'same connection, from the held fd');
});

t.test('release() with no client left ends the connection', async (t) => {
  const w = await world(t);
  const { client } = await mountFirst(w);
  process.kill(-client.proc.pid!, 'SIGKILL');
  await until('client gone', () => client.proc.signalCode !== null || client.proc.exitCode !== null);
  w.holder.release();
  t.equal(w.holder.held(), undefined);
  // The kernel aborted the connection: I/O fails at once instead of blocking.
  await until('the mount fails fast', () => {
    const r = probe(`ls ${w.mnt} 2>&1`);
    return !r.ok && /not connected|No such device/.test(r.out);
  });
  t.pass('ENOTCONN once the last fd is closed');
});
