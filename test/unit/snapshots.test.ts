// Snapshot handles, folders and pages (src/controller/snapshots.ts).
import t from 'tap';
import { PageError, pageOf, parseSnapshotHandle, snapshotDir, timestampOf } from '../../src/controller/snapshots.js';

t.test("handles in the reference's form", async (t) => {
  t.same(parseSnapshotHandle('snapshot-1|pvc-2'), { name: 'snapshot-1', sourceVolumeId: 'pvc-2' });
  t.same(parseSnapshotHandle('a|b|c'), { name: 'a', sourceVolumeId: 'b|c' }, 'split at the first bar');
  for (const bad of ['', 'plain', '|src', 'name|']) t.equal(parseSnapshotHandle(bad), undefined, JSON.stringify(bad));
});

t.test('folders: plain ids as they are, any other as a hash', async (t) => {
  t.equal(snapshotDir('snapshot-1', 'pvc-2'), '.snapshots/pvc-2/snapshot-1');
  t.match(snapshotDir('a/b', '..'), /^\.snapshots\/sha256-[0-9a-f]{64}\/sha256-[0-9a-f]{64}$/);
  t.match(snapshotDir('x'.repeat(300), 'v'), /^\.snapshots\/v\/sha256-/, 'too long for a file name');
});

t.test('pages', async (t) => {
  const items = [1, 2, 3, 4, 5];
  t.same(pageOf(items, 0, ''), { entries: items, nextToken: '' });
  t.same(pageOf(items, 2, ''), { entries: [1, 2], nextToken: '2' });
  t.same(pageOf(items, 2, '4'), { entries: [5], nextToken: '' });
  t.same(pageOf(items, 2, '5'), { entries: [], nextToken: '' }, 'at the end: empty');
  t.throws(() => pageOf(items, 2, '6'), PageError);
  t.throws(() => pageOf(items, 2, '-1'), PageError);
  t.same(timestampOf('2026-12-02T01:02:03.456Z'), { seconds: '1796173323', nanos: 456_000_000 });
});
