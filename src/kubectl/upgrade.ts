// `kubectl jfs upgrade`: creates a JuiceFSUpgrade (src/upgrade/types.ts; reconciled by the controller's leader)
// and watches it with a live progress display; `upgrade status|pause|resume|abort NAME` read or patch one.
//
// One pod: the object's selector has namespaces and a label selector but no pod name, so the pod is labelled
// `jfs-sidecar.juicefs.com/upgrade-pod=<upgrade name>` (metadata stays open after admission) and selected by it.
import {
  PatchStrategy,
  setHeaderOptions,
  Watch,
  type V1LabelSelector,
  type V1LabelSelectorRequirement,
  type V1Pod,
} from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { isMountPod, isInjected, mountPodsOfPod } from '../diagnose/inventory.js';
import { MOUNT_POD_APP_VALUE, MOUNT_POD_LABEL_APP, SYSTEM_NAMESPACE } from '../contract/keys.js';
import { isStatus } from '../k8s/errors.js';
import {
  UPGRADE_API_VERSION,
  UPGRADE_GROUP,
  UPGRADE_KIND,
  UPGRADE_KINDS,
  UPGRADE_PLURAL,
  UPGRADE_VERSION,
  type JuiceFSUpgrade,
  type UpgradeKind,
  type UpgradeSpec,
} from '../upgrade/types.js';
import { apiErrorMessage, UsageError, type Cluster } from './cluster.js';

const CRD = { group: UPGRADE_GROUP, version: UPGRADE_VERSION, plural: UPGRADE_PLURAL };
/** The label `upgrade POD` puts on the one pod it upgrades. */
export const UPGRADE_POD_LABEL = `${UPGRADE_GROUP}/upgrade-pod`;
const FINAL_PHASES = new Set(['Completed', 'Failed', 'Aborted', 'Invalid']);

/** A label selector as kubectl's -l takes it: `a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, comma-joined. */
export function parseLabelSelector(text: string): V1LabelSelector {
  const matchLabels: Record<string, string> = {};
  const matchExpressions: V1LabelSelectorRequirement[] = [];
  // Split on commas outside parentheses.
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  const KEY = '([A-Za-z0-9][-A-Za-z0-9_./]*)';
  for (const raw of parts.map((p) => p.trim())) {
    if (!raw) throw new UsageError(`selector "${text}": an empty requirement`);
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^${KEY}\\s*(==|=)\\s*([-A-Za-z0-9_.]*)$`).exec(raw))) matchLabels[m[1]] = m[3];
    else if ((m = new RegExp(`^${KEY}\\s*!=\\s*([-A-Za-z0-9_.]*)$`).exec(raw)))
      matchExpressions.push({ key: m[1], operator: 'NotIn', values: [m[2]] });
    else if ((m = new RegExp(`^${KEY}\\s+(in|notin)\\s*\\(([^)]*)\\)$`).exec(raw)))
      matchExpressions.push({
        key: m[1],
        operator: m[2] === 'in' ? 'In' : 'NotIn',
        values: m[3]
          .split(',')
          .map((v) => v.trim())
          .filter(Boolean),
      });
    else if ((m = new RegExp(`^!${KEY}$`).exec(raw))) matchExpressions.push({ key: m[1], operator: 'DoesNotExist' });
    else if ((m = new RegExp(`^${KEY}$`).exec(raw))) matchExpressions.push({ key: m[1], operator: 'Exists' });
    else throw new UsageError(`selector "${text}": cannot read "${raw}" (e.g. app=web,tier in (a,b),!canary)`);
  }
  return {
    ...(Object.keys(matchLabels).length ? { matchLabels } : {}),
    ...(matchExpressions.length ? { matchExpressions } : {}),
  };
}

export interface UpgradeFlags {
  selector?: string;
  recreate?: boolean;
  binary?: boolean;
  image?: string;
  maxUnavailable?: string;
  partition?: string;
  name?: string;
  watch: boolean;
  /** Namespace of the Mount Pods (the Mount Pod kinds select there). */
  systemNamespace?: string;
}

/** `--max-unavailable`: a number ≥ 1 or "N%", as the CRD takes it. */
function maxUnavailableOf(text: string | undefined): number | string | undefined {
  if (text === undefined) return undefined;
  if (/^\d+%$/.test(text)) return text;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--max-unavailable ${text}: a whole number ≥ 1 or "N%"`);
  return n;
}

function partitionOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--partition ${text}: a whole number ≥ 0`);
  return n;
}

/** The kind the flags ask for; Mount Pod kinds only when this build's types (and so the CRD) know them. */
export function kindOf(flags: Pick<UpgradeFlags, 'recreate' | 'binary'>, pod?: V1Pod): UpgradeKind {
  if (flags.recreate && flags.binary) throw new UsageError('--recreate and --binary exclude each other');
  const wanted: UpgradeKind | undefined = flags.recreate
    ? 'mount-pod-recreate'
    : flags.binary
      ? 'mount-pod-binary'
      : undefined;
  if (wanted && !UPGRADE_KINDS.includes(wanted))
    throw new UsageError(
      `--${flags.recreate ? 'recreate' : 'binary'} is not supported by this cluster's upgrade controller ` +
        `(JuiceFSUpgrade kinds: ${UPGRADE_KINDS.join(', ')})`,
    );
  if (wanted) return wanted;
  if (pod && !isInjected(pod))
    throw new UsageError(
      `pod ${pod.metadata?.namespace}/${pod.metadata?.name} has no sidecar (Mount Pod mode): pass --recreate (a new ` +
        'Mount Pod takes the FUSE connection over) or --binary (a new binary in the running Mount Pod)',
    );
  return 'sidecar';
}

/** The upgrade's target: the image asked for, else the image each pod's settings name now (Mount Pods only). */
export function targetOf(kind: UpgradeKind, image: string | undefined): UpgradeSpec['target'] {
  if (image) return { image };
  if (kind === 'sidecar')
    throw new UsageError(
      'a sidecar upgrade needs --image: an injected pod does not record which PVC each client serves, so the image ' +
        'its settings name now cannot be read back (Mount Pods can: --recreate or --binary without --image)',
    );
  return { fromSettings: true };
}

const defaultName = () =>
  `jfs-upgrade-${new Date().toISOString().slice(0, 10).replace(/-/g, '')}-${randomBytes(3).toString('hex')}`;

/** Builds and creates the upgrade; returns its name. */
export async function createUpgrade(c: Cluster, podName: string | undefined, flags: UpgradeFlags): Promise<string> {
  if (!podName && !flags.selector) throw new UsageError('name a pod, or pass --selector (-l) to upgrade many');
  if (podName && flags.selector) throw new UsageError('name a pod or pass --selector, not both');
  const name = flags.name ?? defaultName();
  let pod: V1Pod | undefined;
  if (podName) {
    try {
      pod = await c.core.readNamespacedPod({ namespace: c.namespace, name: podName });
    } catch (err) {
      throw new UsageError(
        isStatus(err, 404)
          ? `pod ${c.namespace}/${podName} not found`
          : `cannot read pod ${c.namespace}/${podName}: ${apiErrorMessage(err)}`,
      );
    }
    if (isMountPod(pod))
      throw new UsageError(
        `${podName} is a Mount Pod: name an app pod it serves (kubectl jfs mounts shows them), or select app pods with -l`,
      );
  }
  const kind = kindOf(flags, pod);
  const target = targetOf(kind, flags.image);
  // The Mount Pod kinds replace Mount Pod clients: they select Mount Pods (in the system namespace), not app pods.
  const forMountPods = kind !== 'sidecar';
  const system = flags.systemNamespace ?? SYSTEM_NAMESPACE;
  let labelled: { namespace: string; name: string }[] = pod ? [{ namespace: c.namespace, name: podName! }] : [];
  if (forMountPods && pod) {
    if (isInjected(pod))
      throw new UsageError(
        `pod ${c.namespace}/${podName} runs its client as a sidecar: upgrade it in place (no --recreate or --binary, ` +
          'which replace the client of a Mount Pod)',
      );
    let mountPods: V1Pod[];
    try {
      mountPods = (
        await c.core.listNamespacedPod({
          namespace: system,
          labelSelector: `${MOUNT_POD_LABEL_APP}=${MOUNT_POD_APP_VALUE}`,
        })
      ).items;
    } catch (err) {
      throw new UsageError(`cannot list the Mount Pods in ${system}: ${apiErrorMessage(err)}`);
    }
    const serving = mountPodsOfPod(pod, mountPods);
    if (!serving.length)
      throw new UsageError(`no Mount Pod in ${system} serves pod ${c.namespace}/${podName} (kubectl jfs mounts)`);
    labelled = serving.map((m) => ({ namespace: system, name: m.metadata!.name! }));
  }
  const spec: UpgradeSpec = {
    kind,
    target,
    selector: {
      ...(forMountPods ? { namespaces: [system] } : c.allNamespaces ? {} : { namespaces: [c.namespace] }),
      podSelector: podName ? { matchLabels: { [UPGRADE_POD_LABEL]: name } } : parseLabelSelector(flags.selector ?? ''),
    },
    strategy: {
      ...(flags.maxUnavailable !== undefined ? { maxUnavailable: maxUnavailableOf(flags.maxUnavailable) } : {}),
      ...(flags.partition !== undefined ? { partition: partitionOf(flags.partition) } : {}),
    },
  };
  for (const target of labelled)
    try {
      await c.core.patchNamespacedPod(
        { ...target, body: { metadata: { labels: { [UPGRADE_POD_LABEL]: name } } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    } catch (err) {
      throw new UsageError(
        `cannot label pod ${target.namespace}/${target.name} for the upgrade: ${apiErrorMessage(err)}`,
      );
    }
  try {
    await c.custom.createClusterCustomObject({
      ...CRD,
      body: { apiVersion: UPGRADE_API_VERSION, kind: UPGRADE_KIND, metadata: { name }, spec },
    });
  } catch (err) {
    if (isStatus(err, 404))
      throw new UsageError(
        `this cluster does not serve ${UPGRADE_PLURAL}.${UPGRADE_GROUP}: an admin applies manifests/upgrade-crd.yaml and runs the controller with --upgrades`,
      );
    throw new UsageError(`cannot create JuiceFSUpgrade ${name}: ${apiErrorMessage(err)}`);
  }
  return name;
}

export async function readUpgrade(c: Cluster, name: string): Promise<JuiceFSUpgrade> {
  try {
    return (await c.custom.getClusterCustomObject({ ...CRD, name })) as JuiceFSUpgrade;
  } catch (err) {
    if (isStatus(err, 404)) throw new UsageError(`JuiceFSUpgrade ${name} not found (kubectl get juicefsupgrades)`);
    throw new UsageError(`cannot read JuiceFSUpgrade ${name}: ${apiErrorMessage(err)}`);
  }
}

/** pause / resume / abort: a merge patch of spec.paused or spec.abort. */
export async function setUpgradeFlag(c: Cluster, name: string, what: 'pause' | 'resume' | 'abort'): Promise<void> {
  await readUpgrade(c, name);
  const spec = what === 'abort' ? { abort: true } : { paused: what === 'pause' };
  try {
    await c.custom.patchClusterCustomObject(
      { ...CRD, name, body: { spec } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  } catch (err) {
    throw new UsageError(`cannot ${what} JuiceFSUpgrade ${name}: ${apiErrorMessage(err)}`);
  }
}

/** The progress of one upgrade as lines: a bar and counts, then one line per pod. */
export function renderProgress(u: JuiceFSUpgrade, width = 30): string[] {
  const s = u.status ?? {};
  const n = s.counts;
  const phase = u.spec.abort && s.phase !== 'Aborted' ? `${s.phase ?? 'Pending'} (aborting)` : (s.phase ?? 'Pending');
  const done = (n?.succeeded ?? 0) + (n?.current ?? 0);
  const total = n?.inScope ?? 0;
  const filled = total ? Math.round((done / total) * width) : 0;
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
  const lines = [
    `${u.metadata?.name}  ${u.spec.kind} → ${u.spec.target.image ?? 'the image of the settings'}  ${phase}${u.spec.paused ? ' (paused)' : ''}`,
    `${bar} ${done}/${total} upgraded` +
      (n
        ? `, ${n.inProgress} in progress, ${n.pending} pending, ${n.failed} failed, ${n.partitioned} partitioned, ${n.unavailable} unavailable`
        : ''),
    ...(s.message ? [`  ${s.message}`] : []),
    ...(s.pods ?? []).map(
      (p) =>
        `  ${p.namespace}/${p.name}  ${p.phase}${p.containers.length ? `  ${p.containers.map((x) => `${x.name}: ${x.fromImage} → ${x.toImage}`).join('; ')}` : ''}${p.message ? `  (${p.message})` : ''}`,
    ),
  ];
  return lines;
}

export interface ProgressOutput {
  write(text: string): void;
  isTTY: boolean;
}

/**
 * Watches the upgrade until a final phase (resolves with it) or `signal` (resolves undefined: the upgrade goes on).
 * A TTY is redrawn in place; otherwise a line is printed for every change.
 */
export async function watchUpgrade(
  c: Cluster,
  name: string,
  out: ProgressOutput,
  signal?: AbortSignal,
): Promise<string | undefined> {
  let drawn = 0;
  let lastText = '';
  let lastPodPhases = new Map<string, string>();
  const draw = (u: JuiceFSUpgrade) => {
    const lines = renderProgress(u);
    if (out.isTTY) {
      const text = lines.join('\n');
      if (text === lastText) return;
      lastText = text;
      out.write(`${drawn ? `\x1b[${drawn}A\x1b[J` : ''}${text}\n`);
      drawn = lines.length;
      return;
    }
    // One line per change: the upgrade's summary when it changes, and each pod's phase when it changes.
    const summary = lines.slice(0, 2).join('  ');
    if (summary !== lastText) out.write(`${new Date().toISOString()}  ${summary}\n`);
    lastText = summary;
    const phases = new Map((u.status?.pods ?? []).map((p) => [`${p.namespace}/${p.name}`, p.phase]));
    for (const [pod, phase] of phases)
      if (lastPodPhases.get(pod) !== phase) {
        const p = (u.status?.pods ?? []).find((x) => `${x.namespace}/${x.name}` === pod);
        out.write(`${new Date().toISOString()}  ${pod} ${phase}${p?.message ? ` (${p.message})` : ''}\n`);
      }
    lastPodPhases = phases;
  };
  const first = await readUpgrade(c, name);
  draw(first);
  if (FINAL_PHASES.has(first.status?.phase ?? '')) return first.status?.phase;
  return new Promise<string | undefined>((resolve, reject) => {
    let settled = false;
    let req: { abort(): void } | undefined;
    const finish = (phase: string | undefined) => {
      if (settled) return;
      settled = true;
      req?.abort();
      resolve(phase);
    };
    signal?.addEventListener('abort', () => finish(undefined), { once: true });
    const watch = new Watch(c.kc);
    const start = () => {
      if (settled) return;
      watch
        .watch(
          `/apis/${UPGRADE_GROUP}/${UPGRADE_VERSION}/${UPGRADE_PLURAL}`,
          { fieldSelector: `metadata.name=${name}` },
          (type: string, obj: JuiceFSUpgrade) => {
            if (type === 'DELETED') {
              out.write(`JuiceFSUpgrade ${name} was deleted\n`);
              finish('Deleted');
              return;
            }
            draw(obj);
            if (FINAL_PHASES.has(obj.status?.phase ?? '')) finish(obj.status?.phase);
          },
          // A watch ends after the API server's timeout or a dropped connection: start another.
          (err: unknown) => {
            if (settled) return;
            if (err && isStatus(err, 403, 404)) {
              settled = true;
              reject(new UsageError(`watching JuiceFSUpgrade ${name}: ${apiErrorMessage(err)}`));
              return;
            }
            setTimeout(start, 1000);
          },
        )
        .then(
          (r) => {
            req = r;
            if (settled) r.abort();
          },
          () => setTimeout(start, 1000),
        );
    };
    start();
  });
}
