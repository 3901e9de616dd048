// The rollout planner: the upgrade object and the observed pods in, the next status and the pods to start
// out. Pure: no I/O, the clock is an input. The reconciler applies what it says; the actuator of the
// upgrade's kind does each pod's I/O steps.
//
// The rules:
// - Selection: the pods of the kind whose namespace and labels match. Order: namespace/name, or oldest first.
// - Partition: of the selected pods in order, the last `partition` are left untouched; a pod once started
//   stays in scope (a pod created later does not shift the cut under a running swap).
// - maxUnavailable: the budget is taken by every selected pod that is not Ready, whatever the reason, and by
//   every pod whose swap is under way (Ready or not): budget = maxUnavailable − |unready ∪ active|. A pod
//   that is not Ready is not started (its swap could not be judged, and it would take a slot from a pod
//   that is serving); it waits, and the rollout does not complete while it does.
// - Failure: a pod whose swap fails (its image does not run on the node, it crashes, or the swap takes longer
//   than podTimeoutSeconds) stops the rollout: nothing new starts, the pods under way finish, the status
//   says which pod and why. The pods not started keep their old client.
// - paused: nothing new starts, what is under way finishes; abort: the same, for good.
import { matchesLabelSelector } from '../config/selector.js';
import { normalizeImage, podKey, type PodObservation } from './clients.js';
import {
  ACTIVE_PHASES,
  DEFAULT_POD_TIMEOUT_SECONDS,
  UPGRADE_KINDS,
  type JuiceFSUpgrade,
  type PodUpgradeProgress,
  type UpgradeCondition,
  type UpgradeCounts,
  type UpgradePhase,
  type UpgradeStatus,
} from './types.js';
import type { SettingsAnswer } from './settings-images.js';

export interface PlanInput {
  upgrade: JuiceFSUpgrade;
  /** Every pod of the upgrade's kind the informer holds (selection happens here). */
  pods: PodObservation[];
  /**
   * For `target.fromSettings`: each client container's image as the settings say now; `{ unknown }` says why they
   * cannot tell (undefined: no reason known).
   */
  settingsImages?: (pod: PodObservation) => SettingsAnswer | undefined;
  now: Date;
}

export interface Plan {
  status: UpgradeStatus;
  /** Pods to start now: their records are in `status.pods` already, in phase Preparing. */
  start: PodUpgradeProgress[];
  /** Records that reached Succeeded or Failed in this plan: the actuator finishes them (e.g. the gate). */
  finished: PodUpgradeProgress[];
}

export class InvalidUpgrade extends Error {
  override name = 'InvalidUpgrade';
}

/** maxUnavailable as a count of `selected` pods: a number ≥ 1, or "N%" rounded down, never below 1. */
export function maxUnavailableOf(value: number | string | undefined, selected: number): number {
  if (value === undefined) return 1;
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 1) throw new InvalidUpgrade(`maxUnavailable ${value}: expected ≥ 1`);
    return value;
  }
  const m = /^(\d+)%$/.exec(value);
  if (!m) throw new InvalidUpgrade(`maxUnavailable "${value}": expected a number or "N%"`);
  const pct = Number(m[1]);
  if (pct < 1 || pct > 100) throw new InvalidUpgrade(`maxUnavailable "${value}": expected 1% to 100%`);
  return Math.max(1, Math.floor((selected * pct) / 100));
}

function validate(u: JuiceFSUpgrade, readsSettings: boolean): void {
  const { spec } = u;
  if (!UPGRADE_KINDS.includes(spec.kind))
    throw new InvalidUpgrade(`kind "${spec.kind}" is not one of ${UPGRADE_KINDS.join(', ')}`);
  const { image, fromSettings } = spec.target ?? {};
  if (!!image === !!fromSettings) throw new InvalidUpgrade('target: give exactly one of image and fromSettings');
  if (fromSettings && !readsSettings)
    throw new InvalidUpgrade(
      `target.fromSettings is not supported for ${spec.kind} upgrades yet: an injected pod does not record the PVC of each client, so its settings cannot be read back; give target.image`,
    );
  const p = spec.strategy?.partition ?? 0;
  if (!Number.isInteger(p) || p < 0) throw new InvalidUpgrade(`partition ${p}: expected an integer ≥ 0`);
  maxUnavailableOf(spec.strategy?.maxUnavailable, 1);
  const sel = spec.selector ?? {};
  if (sel.pvcNames?.length || sel.storageClassNames?.length)
    throw new InvalidUpgrade(
      'selector.pvcNames and selector.storageClassNames are not supported yet: an injected pod does not record the PVC of each client; select by namespaces and podSelector',
    );
}

export function selects(u: JuiceFSUpgrade, pod: PodObservation): boolean {
  const sel = u.spec.selector ?? {};
  if (sel.namespaces?.length && !sel.namespaces.includes(pod.namespace)) return false;
  if (sel.podSelector && !matchesLabelSelector(sel.podSelector, pod.labels)) return false;
  return pod.clients.length > 0;
}

/** Each client's target image for this pod, or why the settings cannot tell. */
function targetsOf(input: PlanInput, pod: PodObservation): SettingsAnswer {
  const { image } = input.upgrade.spec.target;
  if (image) return { images: Object.fromEntries(pod.clients.map((c) => [c.name, image])) };
  return input.settingsImages?.(pod) ?? { unknown: '' };
}

const sameImage = (a: string | undefined, b: string) => a !== undefined && normalizeImage(a) === normalizeImage(b);

/** A swap under way, judged from the pod: done, failed (why), or still going. */
function judgeSwap(rec: PodUpgradeProgress, pod: PodObservation): { done: boolean; failed?: string } {
  let done = true;
  for (const c of rec.containers) {
    const o = pod.clients.find((x) => x.name === c.name);
    if (!o) return { done: false, failed: `container ${c.name} is gone from the pod` };
    const onTarget = sameImage(o.statusImage, c.toImage);
    if (o.problem && onTarget) return { done: false, failed: `${c.name} on ${c.toImage}: ${o.problem}` };
    // The image ID must change (the kubelet really restarted the container), and the new client must be up.
    const swapped = onTarget && !!o.imageID && o.imageID !== c.fromImageID;
    if (!(swapped && o.started && o.ready)) done = false;
  }
  return { done };
}

function condition(
  prev: UpgradeCondition[] | undefined,
  type: UpgradeCondition['type'],
  on: boolean,
  reason: string,
  message: string,
  now: string,
  generation?: number,
): UpgradeCondition {
  const status = on ? 'True' : 'False';
  const old = prev?.find((c) => c.type === type);
  const lastTransitionTime = old && old.status === status ? old.lastTransitionTime : now;
  return { type, status, reason, message, lastTransitionTime, observedGeneration: generation };
}

export function plan(input: PlanInput): Plan {
  const { upgrade, now } = input;
  const nowIso = now.toISOString();
  const prev = upgrade.status ?? {};
  const generation = upgrade.metadata?.generation;
  const conds = (phase: UpgradePhase, reason: string, message: string): UpgradeCondition[] => [
    condition(prev.conditions, 'Progressing', phase === 'Progressing', reason, message, nowIso, generation),
    condition(prev.conditions, 'Paused', phase === 'Paused', reason, message, nowIso, generation),
    condition(prev.conditions, 'Completed', phase === 'Completed', reason, message, nowIso, generation),
    condition(prev.conditions, 'Failed', phase === 'Failed', reason, message, nowIso, generation),
  ];
  try {
    validate(upgrade, input.settingsImages !== undefined);
  } catch (err) {
    if (!(err instanceof InvalidUpgrade)) throw err;
    const status: UpgradeStatus = {
      ...prev,
      observedGeneration: generation,
      phase: 'Invalid',
      message: err.message,
      conditions: conds('Invalid', 'Invalid', err.message),
    };
    return { status, start: [], finished: [] };
  }
  const spec = upgrade.spec;
  const order = spec.strategy?.order ?? 'name';
  const selected = input.pods
    .filter((p) => selects(upgrade, p))
    .sort((a, b) =>
      order === 'creation'
        ? a.createdAt.localeCompare(b.createdAt) || podKey(a).localeCompare(podKey(b))
        : podKey(a).localeCompare(podKey(b)),
    );
  const byKey = new Map(selected.map((p) => [podKey(p), p]));
  const timeoutMs = (spec.strategy?.podTimeoutSeconds ?? DEFAULT_POD_TIMEOUT_SECONDS) * 1000;

  // Records of earlier reconciles, moved on by what the pods show now.
  const finished: PodUpgradeProgress[] = [];
  const notes: string[] = [];
  const records: PodUpgradeProgress[] = [];
  for (const old of prev.pods ?? []) {
    const pod = byKey.get(podKey(old));
    const rec = { ...old };
    if (!pod || pod.uid !== old.uid) {
      // A pod deleted under the rollout is not a failure of the rollout; a failed one stays to explain it.
      if (old.phase === 'Failed' || old.phase === 'Succeeded') records.push(rec);
      else notes.push(`${podKey(old)} went away during its swap`);
      continue;
    }
    if (rec.phase === 'Swapping') {
      const j = judgeSwap(rec, pod);
      if (j.failed) Object.assign(rec, { phase: 'Failed', message: j.failed, finishedAt: nowIso });
      else if (j.done) Object.assign(rec, { phase: 'Succeeded', message: undefined, finishedAt: nowIso });
    }
    if (ACTIVE_PHASES.includes(rec.phase) && rec.startedAt && now.getTime() - Date.parse(rec.startedAt) > timeoutMs) {
      Object.assign(rec, {
        phase: 'Failed',
        finishedAt: nowIso,
        message: `not done after ${timeoutMs / 1000} s (in ${rec.phase}${rec.message ? `: ${rec.message}` : ''})`,
      });
    }
    if ((rec.phase === 'Succeeded' || rec.phase === 'Failed') && rec.phase !== old.phase) finished.push(rec);
    records.push(rec);
  }
  const recordOf = new Map(records.map((r) => [podKey(r), r]));

  // The cut: the first (selected − partition) pods in order, and any pod already started.
  const partition = spec.strategy?.partition ?? 0;
  const cut = Math.max(0, selected.length - partition);
  const inScope = selected.filter((p, i) => i < cut || recordOf.has(podKey(p)));
  const partitioned = selected.length - inScope.length;

  const active = records.filter((r) => ACTIVE_PHASES.includes(r.phase));
  const failed = records.filter((r) => r.phase === 'Failed');
  const unavailableKeys = new Set([...selected.filter((p) => !p.ready).map(podKey), ...active.map(podKey)]);
  const max = maxUnavailableOf(spec.strategy?.maxUnavailable, selected.length);

  // What is left to do, in order; pods already on the target need nothing.
  let current = 0;
  const waiting: PodObservation[] = [];
  const unknown: string[] = [];
  const targetOf = new Map<string, Record<string, string>>();
  for (const p of inScope) {
    if (recordOf.has(podKey(p))) continue;
    const answer = targetsOf(input, p);
    if (!('images' in answer)) {
      unknown.push(answer.unknown ? `${podKey(p)} (${answer.unknown})` : podKey(p));
      continue;
    }
    const targets = answer.images;
    targetOf.set(podKey(p), targets);
    if (p.clients.every((c) => sameImage(c.specImage, targets[c.name] ?? c.specImage))) current++;
    else waiting.push(p);
  }

  const stopped = failed.length > 0 || spec.abort === true || spec.paused === true;
  const start: PodUpgradeProgress[] = [];
  const notReady: string[] = [];
  if (!stopped) {
    for (const p of waiting) {
      if (unavailableKeys.size >= max) break;
      if (!p.ready) {
        notReady.push(podKey(p));
        continue;
      }
      const targets = targetOf.get(podKey(p))!;
      const rec: PodUpgradeProgress = {
        namespace: p.namespace,
        name: p.name,
        uid: p.uid,
        phase: 'Preparing',
        containers: p.clients
          .filter((c) => !sameImage(c.specImage, targets[c.name] ?? c.specImage))
          .map((c) => ({ name: c.name, fromImage: c.specImage, toImage: targets[c.name], fromImageID: c.imageID })),
        startedAt: nowIso,
      };
      start.push(rec);
      records.push(rec);
      unavailableKeys.add(podKey(p));
    }
  }
  const startedKeys = new Set(start.map(podKey));
  const pending = waiting.filter((p) => !startedKeys.has(podKey(p))).length + unknown.length;

  const counts: UpgradeCounts = {
    selected: selected.length,
    inScope: inScope.length,
    succeeded: records.filter((r) => r.phase === 'Succeeded').length,
    inProgress: records.filter((r) => ACTIVE_PHASES.includes(r.phase)).length,
    failed: failed.length,
    pending,
    partitioned,
    unavailable: unavailableKeys.size,
    current,
  };
  const firstFailed = records.find((r) => r.phase === 'Failed');
  let phase: UpgradePhase;
  let reason: string;
  let message: string;
  if (firstFailed) {
    phase = 'Failed';
    reason = 'PodFailed';
    message = `${podKey(firstFailed)} failed: ${firstFailed.message ?? 'no reason given'}; the rollout stopped, pods not started keep their client`;
  } else if (spec.abort) {
    phase = 'Aborted';
    reason = 'Aborted';
    message = `aborted: ${counts.succeeded} pod(s) upgraded, ${counts.inProgress} finishing, ${pending} left on their client`;
  } else if (pending === 0 && counts.inProgress === 0) {
    phase = 'Completed';
    reason = 'Completed';
    message = `${counts.succeeded} pod(s) upgraded, ${current} already current, ${partitioned} beyond the partition`;
  } else if (spec.paused) {
    phase = 'Paused';
    reason = 'Paused';
    message = `paused: ${counts.inProgress} finishing, ${pending} waiting`;
  } else {
    phase = 'Progressing';
    reason = 'Progressing';
    const extra = [
      notReady.length ? `not Ready, waiting: ${notReady.join(', ')}` : '',
      unknown.length ? `no target known from the settings: ${unknown.join(', ')}` : '',
    ].filter(Boolean);
    message = `${counts.succeeded}/${inScope.length - current} upgraded, ${counts.inProgress} in progress, ${counts.unavailable}/${max} unavailable${extra.length ? `; ${extra.join('; ')}` : ''}`;
  }
  if (notes.length) message += `; ${notes.join('; ')}`;
  const status: UpgradeStatus = {
    observedGeneration: generation,
    phase,
    message,
    counts,
    pods: records.sort((a, b) => podKey(a).localeCompare(podKey(b))),
    conditions: conds(phase, reason, message),
  };
  return { status, start, finished };
}
