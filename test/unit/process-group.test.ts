// A managed process of the harness may be a process group: it is stopped only
// once no process of the group is left, not when its first process exits (as
// juicefs's supervisor exits before the mount process it started).
import { spawn } from 'node:child_process';
import t from 'tap';
import { killGroup, trackChild, waitGroupGone } from '../../src/local/components.js';

t.test('a child of the group outlives its leader: waited for, then gone once killed', async (t) => {
  // The leader starts a grandchild that ignores SIGTERM, then exits at once.
  const leader = trackChild(
    spawn('sh', ['-c', "trap '' TERM; (trap '' TERM; sleep 30) & sleep 0.2"], { detached: true }),
    { group: true },
  );
  await new Promise((r) => leader.once('exit', r));
  // trackChild kills the group on the leader's exit; the kill may take a moment to land.
  const left = await waitGroupGone(leader, 5000);
  t.same(left, [], 'nothing of the group is left once the leader exited');
});

t.test('without the kill, the time-out names what is still running', async (t) => {
  const leader = spawn('sh', ['-c', 'sleep 30 & sleep 0.2'], { detached: true });
  await new Promise((r) => leader.once('exit', r));
  const left = await waitGroupGone(leader, 300);
  t.equal(left.length, 1, 'the sleep that outlived its leader');
  killGroup(leader, 'SIGKILL');
  t.same(await waitGroupGone(leader, 5000), [], 'gone after SIGKILL (a zombie does not count)');
});
