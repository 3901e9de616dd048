// Reliability of Mount Pod mode on the real node (kubelet + containerd, the
// node plugin as its DaemonSet): 200 NodePublishVolume/NodeUnpublishVolume
// calls on the node plugin's socket in random interleavings (up to 8 in
// flight) across 3 PVs, one with a delete delay, and a Mount Pod's container
// SIGKILLed in the middle (the kubelet restarts it). Afterwards no Mount Pod is
// without references, no reference is without its target, no mount is stale
// or left over. Seeded: JFS_RELIABILITY_SEED=<n> replays a run's operations
// (the schedule is drawn from the seed alone, before the run, so how long each
// call takes cannot change which calls are made).
import type { V1Pod } from '@kubernetes/client-node';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { MOUNT_ROOT } from '../../src/contract/keys.js';
import { mountAt, readMounts, type MountEntry } from '../../src/juicefs/mounts.js';
import { targetState } from '../../src/node/bind.js';
import { mountPointOf, referencesOf } from '../../src/node/mount-pod-plan.js';
import { eventually } from '../env/harness.js';
import { SMALL_MOUNT_POD, startRealNodeHarness } from '../env/real-node-harness.js';

/** JFS_RELIABILITY_OPERATIONS=<n> for a shorter run: its operations are the first n of the seed's full schedule. */
const OPERATIONS = Number(process.env.JFS_RELIABILITY_OPERATIONS ?? 200);
const IN_FLIGHT = 8;
const PVS = ['pv-r1', 'pv-r2', 'pv-r3'];

t.setTimeout(20 * 60 * 1000);

/** A small seeded PRNG (mulberry32), so a failing interleaving can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))] ?? 0;

t.test(
  `${OPERATIONS} publish/unpublish in random interleavings across ${PVS.length} PVs`,
  { skip: process.getuid?.() !== 0 ? 'real mounts need root' : false },
  async (t) => {
    const seed = Number(process.env.JFS_RELIABILITY_SEED ?? Date.now() % 1_000_000);
    t.comment(`seed ${seed} (JFS_RELIABILITY_SEED=${seed} replays this interleaving)`);
    const random = prng(seed);
    // A volume name of this run's own: other runs of this suite on the machine use the same PV names and mount root.
    const h = await startRealNodeHarness(t, { volumeName: `reliable-${process.pid}` });
    const { vol, dir, call, mountPods: allMountPods } = h;
    /** A mount of this run's volume at a Mount Pod mount point of one of its PVs. */
    const ofThisRun = (m: MountEntry) =>
      m.source === `JuiceFS:${vol.name}` && PVS.some((pv) => m.mountPoint.startsWith(`${MOUNT_ROOT}/${pv}-`));
    const context = (pv: string) => ({
      subPath: pv,
      ...SMALL_MOUNT_POD,
      ...(pv === 'pv-r3' ? { 'juicefs/mount-delete-delay': '1s' } : {}),
    });
    const publish = (pv: string, target: string) =>
      call('NodePublishVolume', {
        volume_id: pv,
        target_path: target,
        volume_capability: { mount: { mount_flags: [] }, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } },
        secrets: vol.secrets,
        volume_context: context(pv),
      });
    const unpublish = (pv: string, target: string) =>
      call('NodeUnpublishVolume', { volume_id: pv, target_path: target });
    const mountPods = async (): Promise<V1Pod[]> =>
      (await allMountPods()).filter((p) => !p.metadata?.deletionTimestamp);

    // The schedule, from the seed alone: each unpublish names a target an earlier operation published.
    type Operation = { kind: 'publish' | 'unpublish'; pv: string; target: string };
    const schedule: Operation[] = [];
    const planned = new Map<string, string>();
    for (let i = 0; i < OPERATIONS; i++) {
      const live = [...planned.keys()];
      if (live.length > 0 && (random() < 0.45 || live.length >= 24)) {
        const target = live[Math.floor(random() * live.length)];
        schedule.push({ kind: 'unpublish', pv: planned.get(target)!, target });
        planned.delete(target);
      } else {
        const pv = PVS[Math.floor(random() * PVS.length)];
        const target = path.join(dir, 'targets', `t${i}`, 'mount');
        schedule.push({ kind: 'publish', pv, target });
        planned.set(target, pv);
      }
    }

    // What kubelet would believe: target → PV, for every publish that returned OK and was not unpublished since.
    const published = new Map<string, string>();
    /** Each target's publish call, which its unpublish waits for (kubelet never unpublishes a publish under way). */
    const publishing = new Map<string, Promise<unknown>>();
    const latencies = { publish: [] as number[], unpublish: [] as number[] };
    let next = 0;
    let crashed = false;
    const started = Date.now();

    const operation = async (i: number) => {
      const { kind, pv, target } = schedule[i];
      const run = async () => {
        // A Mount Pod's container crashes in the middle of the run; its targets must come back.
        if (i === Math.floor(OPERATIONS / 2) && !crashed) {
          const victim = (await mountPods()).find(
            (p) => referencesOf(p).length > 0 && p.status?.containerStatuses?.[0]?.state?.running,
          );
          if (victim) {
            h.killContainer(victim);
            crashed = true;
          }
        }
        if (kind === 'unpublish') {
          await publishing.get(target);
          const t0 = Date.now();
          await unpublish(pv, target);
          latencies.unpublish.push(Date.now() - t0);
          published.delete(target);
        } else {
          mkdirSync(path.dirname(target), { recursive: true });
          const t0 = Date.now();
          await publish(pv, target);
          latencies.publish.push(Date.now() - t0);
          published.set(target, pv);
        }
      };
      const call = run();
      // Recorded before anything else runs, so a later unpublish of this target always waits for it.
      if (kind === 'publish') publishing.set(target, call);
      await call;
    };
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < OPERATIONS) await operation(next++);
      }),
    );
    const elapsed = Date.now() - started;
    t.comment(
      `${OPERATIONS} operations (${latencies.publish.length} publishes, ${latencies.unpublish.length} unpublishes, ${IN_FLIGHT} in flight) in ${(elapsed / 1000).toFixed(1)} s; ` +
        `publish median ${median(latencies.publish)} ms p99 ${p99(latencies.publish)} ms; unpublish median ${median(latencies.unpublish)} ms p99 ${p99(latencies.unpublish)} ms; Mount Pod crash injected: ${crashed}`,
    );
    t.ok(crashed, "a Mount Pod's container was SIGKILLed mid-run");

    const invariants = async () => {
      const pods = await mountPods();
      const problems: string[] = [];
      const referenced = new Map<string, V1Pod>();
      for (const pod of pods) {
        const refs = referencesOf(pod);
        if (refs.length === 0 && !pod.metadata?.annotations?.['juicefs-delete-at'])
          problems.push(`Mount Pod ${pod.metadata?.name} has no reference`);
        for (const r of refs) referenced.set(r, pod);
      }
      for (const [target, pod] of referenced) {
        if (!published.has(target)) problems.push(`reference without a published target: ${target}`);
        const source = mountAt(mountPointOf(pod) ?? '');
        if (!source || targetState(source, mountAt(target)) !== 'ok')
          problems.push(`target not bound to its Mount Pod's live mount: ${target}`);
      }
      for (const target of published.keys())
        if (!referenced.has(target)) problems.push(`published target without a reference: ${target}`);
      for (const m of readMounts()) {
        if (m.mountPoint.startsWith(`${dir}/targets/`) && !published.has(m.mountPoint))
          problems.push(`mount left at an unpublished target: ${m.mountPoint}`);
        if (ofThisRun(m) && !pods.some((p) => mountPointOf(p) === m.mountPoint))
          problems.push(`Mount Pod mount with no Mount Pod: ${m.mountPoint}`);
      }
      return problems;
    };
    // Settled: the crashed Mount Pod's targets are re-bound, delete delays have run out.
    let problems: string[] = [];
    await eventually(async () => (problems = await invariants()).length === 0, 60_000, 'invariants hold').catch(
      () => undefined,
    );
    t.same(
      problems,
      [],
      `after the run, ${published.size} targets still published: every Mount Pod referenced, every reference a live bind, nothing stale`,
    );

    for (const [target, pv] of published) await unpublish(pv, target);
    published.clear();
    await eventually(async () => (await mountPods()).length === 0, 60_000, 'all Mount Pods deleted').catch(
      () => undefined,
    );
    t.same(await mountPods(), [], 'no Mount Pod once everything is unpublished');
    // A deleted Mount Pod keeps its mount until the kubelet has run its preStop (`umount -l`): the last one is
    // pv-r3's, deleted by the sweep once its delete delay is over, moments before this point. Checking the mounts
    // while it terminates reported its live mount as "left" (the CI failure of this suite); what must hold is that
    // none is left once the kubelet has stopped every Mount Pod.
    const terminating = (await allMountPods()).map((p) => p.metadata?.name);
    const upWhileTerminating = readMounts().filter(ofThisRun).length;
    t.comment(
      `Mount Pods still terminating when the last was deleted: ${terminating.join(', ') || 'none'}; mounts of this run up then: ${upWhileTerminating}`,
    );
    await eventually(async () => (await allMountPods()).length === 0, 60_000, 'all Mount Pods terminated').catch(
      () => undefined,
    );
    t.same(
      (await allMountPods()).map((p) => p.metadata?.name),
      [],
      'every Mount Pod has terminated',
    );
    t.same(
      readMounts().filter((m) => m.mountPoint.startsWith(`${dir}/`) || ofThisRun(m)),
      [],
      'no mount left on the machine',
    );
  },
);
