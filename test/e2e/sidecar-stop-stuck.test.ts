// The sidecar's stop when its FUSE client no longer answers (ADR 0013, the CI
// hang of the serverless Job): the volume's metadata engine (a Redis of this
// test, on loopback) stops answering while an app's request that needs it is
// under way. That request holds the volume's root, so the stop script's read
// of `.stats` blocked for good in D state before, and with it the stop. Now
// the read is given 2 s: then the script aborts the connection (nothing more
// can be flushed without the metadata engine), which frees the read and the
// app's request, and the stop ends.
//
// The "container" is the test's mount namespace running the rendered sidecar
// command (test/env/sidecar-process.ts), as in sidecar-stop.test.ts.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { MOUNT_POINT_ENV } from '../../src/contract/keys.js';
import { ensureBinaries, freePort } from '../../src/local/control-plane.js';
import { ENV_METAURL } from '../../src/mount/containers.js';
import { argvHere, inNs, renderedSidecar, sleep, startSidecar, SUBDIR } from '../env/sidecar-process.js';

t.setTimeout(3 * 60 * 1000);

/** Processes in uninterruptible sleep (D state) whose command line names `dir`. */
function stuckIn(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (state === 'D' && cmd.includes(dir)) found.push(`${pid} ${cmd.trim()}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

t.test('the metadata engine stops answering mid-request: the stop still ends, and aborts', async (t) => {
  t.equal(process.getuid?.(), 0, 'runs as root (FUSE mounts, mount namespaces)');
  const juicefs = ensureBinaries(['juicefs']).juicefs;
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-stuck-'));
  const port = await freePort();
  const redis: ChildProcess = spawn(
    'redis-server',
    ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  // Registered first, so it runs last: Redis goes only after the sidecar's namespace is gone (tap runs
  // teardowns in reverse order), and a stopped Redis is woken first so that it can exit.
  t.teardown(async () => {
    if (redis.exitCode === null) {
      redis.kill('SIGCONT');
      redis.kill('SIGKILL');
      await new Promise((r) => redis.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const metaurl = `redis://127.0.0.1:${port}/1`;
  let formatted = false;
  for (let i = 0; i < 50 && !formatted; i++) {
    formatted =
      spawnSync(juicefs, ['format', '--storage=file', `--bucket=${dir}/data/`, '--trash-days=0', metaurl, 'stuck'], {
        encoding: 'utf8',
      }).status === 0;
    if (!formatted) await sleep(100);
  }
  t.ok(formatted, 'volume formatted on Redis');
  const mp = path.join(dir, 'pods/uid-1/data');
  const bind = path.join(dir, 'kubelet/volume-subpaths/data/app/0');
  mkdirSync(mp, { recursive: true });
  mkdirSync(bind, { recursive: true });
  const argv = argvHere(renderedSidecar(), { juicefs }, 'sh', path.join(dir, 'cache'), await freePort());
  const s = await startSidecar(t, { remove: () => undefined }, argv, { [ENV_METAURL]: metaurl, [MOUNT_POINT_ENV]: mp });
  const pid = s.child.pid!;
  t.equal(
    inNs(pid, `mount --bind '${mp}' '${bind}' && echo before > '${bind}/before.txt'`).status,
    0,
    'bind made, app wrote through it',
  );

  // The metadata engine stops answering (SIGSTOP: its connections hang, as a dead host's would).
  redis.kill('SIGSTOP');
  const app = spawn('nsenter', ['-t', String(pid), '-m', 'sh', '-c', `echo late > '${bind}/late.txt'`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let appErr = '';
  app.stderr.on('data', (d: Buffer) => (appErr += d.toString()));
  const appDone = new Promise<number | null>((r) => app.once('exit', r));
  await sleep(1000);
  t.equal(app.exitCode, null, "the app's create hangs on the metadata engine");

  const sent = Date.now();
  s.child.kill('SIGTERM');
  const ended = await Promise.race([s.exited, sleep(45_000).then(() => undefined)]);
  if (!ended) t.comment(`still running 45 s after SIGTERM; in D state: ${stuckIn(dir).join('; ')}`);
  t.ok(
    ended,
    'the stop ends within 45 s (before the fix its .stats read waited in D state behind the hung request, and the stop with it: still running at 45 s)',
  );
  const abortedAt = /juicefs does not answer \.stats in 2 s: aborting connection \d+/.test(s.log());
  t.ok(abortedAt, 'the script saw juicefs stuck and aborted its connection');
  t.notMatch(s.log(), /no file open, FUSE session held by other mounts/, 'not taken for the normal path');
  if (ended) {
    t.comment(`exit ${ended.code} ${((ended.at - sent) / 1000).toFixed(2)} s after SIGTERM`);
    t.equal(ended.code, 0, "exits 0 (juicefs's own exit after its 30 s umount timer)");
  }
  t.not(await appDone, 0, `the app's hung create fails instead of hanging (${appErr.trim()})`);
  t.same(stuckIn(dir), [], 'no process left in D state on the volume');

  // Once the metadata engine is back, what was written before is there.
  redis.kill('SIGCONT');
  const check = mkdtempSync(path.join(tmpdir(), 'jfs-stuck-mnt-'));
  t.teardown(() => rmSync(check, { recursive: true, force: true }));
  const m = spawnSync(juicefs, ['mount', '-d', '--no-usage-report', `--cache-dir=${dir}/cache2`, metaurl, check], {
    encoding: 'utf8',
  });
  t.equal(m.status, 0, `a fresh mount ${m.stderr.split('\n').slice(-2).join(' ')}`);
  try {
    t.equal(readFileSync(`${check}/${SUBDIR}/before.txt`, 'utf8'), 'before\n', 'what the app wrote before is kept');
  } finally {
    spawnSync(juicefs, ['umount', check]);
  }
});
