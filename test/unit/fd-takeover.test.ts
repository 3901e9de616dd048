// Whether a replacing Mount Pod client takes the held FUSE fd over (fd-takeover.ts): a client container that does
// not ask the holder for it within the grace period has it released, so a juicefs < 1.2.1 restart mounts afresh
// instead of waiting on a connection nobody serves (CI failure 3 of the session-6 merge).
import type { V1Pod } from '@kubernetes/client-node';
import t from 'tap';
import { SIDECAR_NAME } from '../../src/contract/keys.js';
import { judgeTakeover, runningClientOf, TAKEOVER_GRACE_MS } from '../../src/node/fd-takeover.js';

const T0 = Date.parse('2026-12-01T21:04:23Z');
const A = { containerId: 'containerd://a', startedAt: T0 - 60_000 };
const B = { containerId: 'containerd://b', startedAt: T0 };

t.test('the first container seen owns the fd; the same container again changes nothing', async (t) => {
  const first = judgeTakeover(undefined, A, undefined, T0);
  t.same(first, { watch: { containerId: A.containerId }, release: false });
  t.same(judgeTakeover(first.watch, A, undefined, T0 + 60_000), first);
});

t.test('no running client (mid-restart): nothing judged, the watch kept', async (t) => {
  const watch = { containerId: A.containerId };
  t.same(judgeTakeover(watch, undefined, undefined, T0), { watch, release: false });
});

t.test('a replacing client that asked after its start owns the fd: no release', async (t) => {
  const r = judgeTakeover({ containerId: A.containerId }, B, T0 + 800, T0 + 2_000);
  t.same(r, { watch: { containerId: B.containerId }, release: false });
  // startedAt has whole seconds: an ask in that second counts even before the timestamp's fraction.
  const sameSecond = judgeTakeover({ containerId: A.containerId }, { ...B, startedAt: T0 + 999 }, T0 + 5, T0 + 1_000);
  t.equal(sameSecond.release, false);
  t.equal(sameSecond.watch?.containerId, B.containerId);
});

t.test('a replacing client that never asks: released once the grace period is over, not before', async (t) => {
  const seen = judgeTakeover({ containerId: A.containerId }, B, T0 - 30_000, T0 + 1_000);
  t.equal(seen.release, false, 'first seen: waits');
  t.same(seen.watch, { containerId: A.containerId, replacement: { containerId: B.containerId, seenAt: T0 + 1_000 } });
  const during = judgeTakeover(seen.watch, B, T0 - 30_000, T0 + TAKEOVER_GRACE_MS);
  t.equal(during.release, false, 'still within the grace period');
  t.same(during.watch, seen.watch, 'the replacement keeps its first-seen time');
  const after = judgeTakeover(during.watch, B, T0 - 30_000, T0 + 1_000 + TAKEOVER_GRACE_MS);
  t.same(after, { watch: { containerId: B.containerId }, release: true });
  // The released client then owns whatever it holds next: no second release for it.
  t.equal(judgeTakeover(after.watch, B, undefined, T0 + 60_000).release, false);
});

t.test('an ask by the old client (before the new one started) does not count as taking it', async (t) => {
  const r = judgeTakeover({ containerId: A.containerId }, B, T0 - 1, T0 + TAKEOVER_GRACE_MS, TAKEOVER_GRACE_MS);
  t.equal(r.release, false, 'first seen now');
  t.equal(judgeTakeover(r.watch, B, T0 - 1, T0 + 2 * TAKEOVER_GRACE_MS).release, true);
});

t.test('a third container replacing an unjudged second starts its own grace period', async (t) => {
  const C = { containerId: 'containerd://c', startedAt: T0 + 5_000 };
  const seenB = judgeTakeover({ containerId: A.containerId }, B, undefined, T0 + 1_000);
  const seenC = judgeTakeover(seenB.watch, C, undefined, T0 + 6_000);
  t.same(seenC.watch?.replacement, { containerId: C.containerId, seenAt: T0 + 6_000 });
  t.equal(judgeTakeover(seenC.watch, C, undefined, T0 + 1_000 + TAKEOVER_GRACE_MS).release, false);
  t.equal(judgeTakeover(seenC.watch, C, undefined, T0 + 6_000 + TAKEOVER_GRACE_MS).release, true);
});

t.test('runningClientOf reads the client container of the pod status', async (t) => {
  const pod = (state: object, id = 'containerd://x'): V1Pod => ({
    status: {
      containerStatuses: [
        { name: SIDECAR_NAME, containerID: id, state, image: '', imageID: '', ready: true, restartCount: 1 },
      ],
    },
  });
  t.same(runningClientOf(pod({ running: { startedAt: new Date(T0) } })), {
    containerId: 'containerd://x',
    startedAt: T0,
  });
  t.same(runningClientOf(pod({ running: {} })), { containerId: 'containerd://x' });
  t.equal(runningClientOf(pod({ waiting: { reason: 'CrashLoopBackOff' } })), undefined, 'not running');
  t.equal(runningClientOf(pod({ running: {} }, '')), undefined, 'no container ID yet');
  t.equal(runningClientOf(undefined), undefined);
  t.equal(runningClientOf({ status: { containerStatuses: [] } }), undefined);
});
