// Helpers of the node side: $(VAR) expansion as kubelet does it (for tests
// that run a rendered command here), and real bind mounts (root).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { bindMount, kubeletPodUid, rebind, targetState, unmountTarget } from '../../src/node/bind.js';
import { expand } from '../../src/local/expand.js';
import { mountAt } from '../../src/juicefs/mounts.js';

t.test('$(VAR) expansion', async (t) => {
  const vars = { A: 'x', B: 'y$(A)' };
  t.equal(expand('$(A)/$(B)', vars), 'x/y$(A)', 'single pass: values are not expanded again');
  t.equal(expand('$$(A)', vars), '$(A)', '$$ escapes');
  t.equal(expand('$(MISSING)', vars), '$(MISSING)', 'undefined stays as written');
  t.equal(expand('cost: $5 $(A', vars), 'cost: $5 $(A', 'unterminated stays');
  t.equal(expand('end$', vars), 'end$');
});

const run = (cmd: string, args: string[]) => execFileSync(cmd, args);
const mountsAt = (p: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[4] === p).length;

t.test('pod UID of a kubelet target path', async (t) => {
  t.equal(
    kubeletPodUid('/var/lib/kubelet/pods/0a1b2c3d-0000-4000-8000-00000000abcd/volumes/kubernetes.io~csi/pv-1/mount'),
    '0a1b2c3d-0000-4000-8000-00000000abcd',
  );
  t.equal(kubeletPodUid('/tmp/csi-sanity/target'), undefined, 'not a kubelet path');
});

t.test(
  'bind mounts, read-only and idempotent',
  { skip: process.getuid?.() !== 0 ? 'needs root' : false },
  async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'jfs-bind-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const src = path.join(dir, 'src');
    mkdirSync(src);
    writeFileSync(path.join(src, 'f'), 'hello');
    const rw = path.join(dir, 'rw');
    const ro = path.join(dir, 'ro');
    await bindMount(src, rw, false);
    await bindMount(src, rw, false);
    t.equal(readFileSync(path.join(rw, 'f'), 'utf8'), 'hello', 'bound');
    writeFileSync(path.join(rw, 'g'), 'via target');
    t.equal(readFileSync(path.join(src, 'g'), 'utf8'), 'via target', 'writes reach the source');
    await bindMount(src, ro, true);
    t.throws(() => writeFileSync(path.join(ro, 'h'), 'x'), { code: 'EROFS' }, 'read-only target');
    t.equal(targetState(mountAt(rw)!, mountAt(ro)), 'ok', 'binds of one filesystem share its device');
    const other = path.join(dir, 'other');
    mkdirSync(other);
    run('mount', ['-t', 'tmpfs', 'tmpfs', other]);
    t.equal(targetState(mountAt(other)!, mountAt(rw)), 'stale', 'a bind of another filesystem is stale');
    t.equal(targetState(mountAt(other)!, undefined), 'unmounted');
    await rebind(other, rw, false);
    t.equal(targetState(mountAt(other)!, mountAt(rw)), 'ok', 'rebound to the new source');
    t.notOk(readdirSync(rw).includes('f'), 'the old filesystem is no longer there');
    await rebind(other, rw, false);
    t.equal(mountsAt(rw), 1, 'rebinding does not stack mounts');
    await unmountTarget(rw);
    await unmountTarget(ro);
    await unmountTarget(other);
    const mounts = execFileSync('cat', ['/proc/self/mountinfo'], { encoding: 'utf8' });
    t.notOk(mounts.includes(rw) || mounts.includes(ro), 'unmounted');
  },
);
