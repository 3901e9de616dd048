// The sidecar's entrypoint script (CLIENT_ENTRYPOINT_SCRIPT) with the FUSE fd holder, on this host with the real
// juicefs v1.3.1 and no kubelet (the in-place upgrade of issue 13 item 3, reduced to its mechanics):
// - the upgrader's marker is set (`expectHandover`, what `jfs-sidecar fd-holder expect-handover` writes), then
//   SIGTERM (what the kubelet sends when the image changed): the script hands the client over and exits 0; the
//   next container's script (same env) takes the fd and the state: an app's open file keeps working, no write
//   lost, same FUSE connection, a new client process;
// - without the marker (pod deletion) SIGTERM keeps ADR 0013's stop: exit 0 within seconds, the mount gone,
//   though juicefs's supervisor ignores signals with JFS_SUPER_COMM set (the script signals its child);
// - an expired marker arms nothing.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { expectHandover } from '../../src/cli/fd-holder.js';
import { FuseFdHolder } from '../../src/fdpass/holder.js';
import { JUICEFS_FS_TYPE, mountAt } from '../../src/juicefs/mounts.js';
import { CLIENT_ENTRYPOINT_SCRIPT, ENV_METAURL } from '../../src/mount/containers.js';
import { MOUNT_POINT_ENV } from '../../src/contract/keys.js';
import { makeVolume, type TestVolume } from '../env/juicefs.js';

const log = pino({ level: 'warn' });
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
const deviceOf = (mnt: string) => {
  const m = mountAt(mnt);
  return m?.fsType === JUICEFS_FS_TYPE ? m.device : undefined;
};
const probe = (cmd: string) => {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8', timeout: 10_000 });
  return { ok: r.status === 0, out: (r.stdout + r.stderr).trim() };
};

interface Container {
  proc: ChildProcess;
  out: () => string;
  exited: Promise<{ code: number | null; at: number }>;
}

interface World {
  vol: TestVolume;
  mnt: string;
  fdDir: string;
  holder: FuseFdHolder;
  containers: Container[];
  writers: ChildProcess[];
  conn?: string;
}

async function world(t: Test): Promise<World> {
  const vol = makeVolume('handover');
  const mnt = mkdtempSync(path.join(tmpdir(), 'jfs-ho-mnt-'));
  const fdDir = path.join(vol.dir, 'fd', 'jfs-mount');
  mkdirSync(fdDir, { recursive: true });
  const holder = await FuseFdHolder.listen(path.join(fdDir, 'fuse.sock'), { log });
  const w: World = { vol, mnt, fdDir, holder, containers: [], writers: [] };
  t.teardown(async () => {
    for (const p of w.writers) p.kill('SIGKILL');
    for (const c of w.containers) {
      try {
        process.kill(-c.proc.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await w.holder.close();
    w.holder.release();
    spawnSync('umount', ['-l', mnt]);
    const connDir = `/sys/fs/fuse/connections/${w.conn}`;
    if (w.conn && existsSync(connDir)) writeFileSync(`${connDir}/abort`, '1');
    rmSync(mnt, { recursive: true, force: true });
    vol.remove();
  });
  return w;
}

/** One "container": the entrypoint script as the injector renders it, in its own process group. */
function startContainer(w: World): Container {
  const argv = [
    '-c',
    CLIENT_ENTRYPOINT_SCRIPT,
    'jfs-mount',
    w.vol.juicefs,
    'mount',
    '--no-usage-report',
    '--no-bgjob',
    `--cache-dir=${w.vol.dir}/cache`,
  ];
  const proc = spawn('sh', argv, {
    env: {
      ...process.env,
      [ENV_METAURL]: w.vol.metaurl,
      [MOUNT_POINT_ENV]: w.mnt,
      JFS_FD_DIR: w.fdDir,
      JFS_SUPER_COMM: path.join(w.fdDir, 'fuse.sock'),
      _FUSE_STATE_PATH: path.join(w.fdDir, 'state.json'),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
    proc.once('exit', (code) => resolve({ code, at: Date.now() })),
  );
  const c = { proc, out: () => out, exited };
  w.containers.push(c);
  return c;
}

/** The app: holds `file` open, appends a counter every 100 ms, records each result (outside the volume). */
function startWriter(w: World, file: string, results: string) {
  const script = `
    const fs = require('node:fs');
    const fd = fs.openSync(process.argv[1], 'a');
    let i = 0, worst = 0, last = Date.now();
    setInterval(() => {
      i++;
      const t0 = Date.now();
      try { fs.writeSync(fd, i + '\\n'); fs.appendFileSync(process.argv[2], 'ok ' + i + '\\n'); }
      catch (e) { fs.appendFileSync(process.argv[2], 'ERR ' + i + ' ' + e.code + '\\n'); }
      const gap = Date.now() - last; last = Date.now(); worst = Math.max(worst, gap);
      fs.writeFileSync(process.argv[2] + '.stall', String(worst));
    }, 100);`;
  const proc = spawn(process.execPath, ['-e', script, file, results], { stdio: 'ignore' });
  w.writers.push(proc);
  return proc;
}

async function mounted(w: World, c: Container) {
  const device = await until('mounted', () => deviceOf(w.mnt), 30_000).catch((e: Error) => {
    throw new Error(`${e.message}\n${c.out()}`);
  });
  w.conn = device.split(':')[1];
  await until('the holder has the fd', () => w.holder.held());
  return device;
}

const juicefsPids = (group: number) =>
  spawnSync('pgrep', ['-g', String(group), 'juicefs'], { encoding: 'utf8' })
    .stdout.trim()
    .split('\n')
    .filter(Boolean);

t.test(
  'marker set, SIGTERM: handed over; the next container takes fd and state; the open file keeps working',
  async (t) => {
    const w = await world(t);
    const first = startContainer(w);
    const device = await mounted(w, first);
    const results = path.join(w.vol.dir, 'writer.log');
    startWriter(w, `${w.mnt}/app.log`, results);
    await until('writes', () => existsSync(results) && readFileSync(results, 'utf8').includes('ok 5'));
    const oldPids = juicefsPids(first.proc.pid!);

    t.same(expectHandover(path.dirname(w.fdDir), [], 60), ['jfs-mount'], 'armed');
    const t0 = Date.now();
    process.kill(first.proc.pid!, 'SIGTERM');
    const end = await first.exited;
    t.equal(end.code, 0, `the old container exits 0 (${end.at - t0} ms after SIGTERM)`);
    t.match(first.out(), /handed the FUSE connection over/);
    t.ok(existsSync(path.join(w.fdDir, 'state.json')), 'the open handles are saved on the shared volume');
    t.notOk(existsSync(path.join(w.fdDir, 'handover')), 'the marker was consumed');
    t.equal(deviceOf(w.mnt), device, 'the mount stays meanwhile');

    // The kubelet starts the container again (with the new image, in the upgrade).
    const second = startContainer(w);
    await until('new client serves', () => probe(`ls ${w.mnt}`).ok, 30_000);
    t.comment(`client back ${Date.now() - t0} ms after SIGTERM`);
    await sleep(1500);
    const newPids = juicefsPids(second.proc.pid!);
    t.ok(newPids.length > 0 && newPids.every((p) => !oldPids.includes(p)), `new client processes ${newPids.join(',')}`);
    t.equal(deviceOf(w.mnt), device, 'same FUSE connection');
    t.match(second.out(), /load \d+ handles/, 'the new client loaded the saved handles');
    const lines = readFileSync(results, 'utf8').trim().split('\n');
    t.same(
      lines.filter((l) => l.startsWith('ERR')),
      [],
      `no write failed (${lines.length} writes)`,
    );
    const content = readFileSync(`${w.mnt}/app.log`, 'utf8').trim().split('\n').map(Number);
    const ok = lines.filter((l) => l.startsWith('ok')).map((l) => Number(l.split(' ')[1]));
    t.ok(
      ok.every((i) => content.includes(i)),
      `every acknowledged write is in the file (${content.length} lines)`,
    );
    const stall = Number(readFileSync(`${results}.stall`, 'utf8'));
    t.comment(`longest write stall of the app during the handover: ${stall} ms`);
  },
);

t.test(
  'no marker, SIGTERM: the ADR 0013 stop (exit 0 within seconds, mount gone), with JFS_SUPER_COMM set',
  async (t) => {
    const w = await world(t);
    const c = startContainer(w);
    await mounted(w, c);
    const t0 = Date.now();
    process.kill(c.proc.pid!, 'SIGTERM');
    const end = await c.exited;
    t.equal(end.code, 0, 'exit 0');
    t.ok(end.at - t0 < 5000, `stopped in ${end.at - t0} ms`);
    t.equal(deviceOf(w.mnt), undefined, 'unmounted');
    t.notOk(existsSync(path.join(w.fdDir, 'state.json')), 'no state handed over');
    t.same(juicefsPids(c.proc.pid!), [], 'no juicefs process left');
  },
);

t.test('an expired marker arms nothing', async (t) => {
  const w = await world(t);
  const c = startContainer(w);
  await mounted(w, c);
  expectHandover(path.dirname(w.fdDir), ['jfs-mount'], -1);
  process.kill(c.proc.pid!, 'SIGTERM');
  const end = await c.exited;
  t.equal(end.code, 0);
  t.notMatch(c.out(), /handed the FUSE connection over/);
  t.equal(deviceOf(w.mnt), undefined, 'stopped as usual: unmounted');
});
