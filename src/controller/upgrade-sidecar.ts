// The sidecar in-place upgrade (ADR 0017): a canary runs the target image on the pod's node first (it pulls
// the image and proves it starts, with the pod untouched); then the readiness gate goes False so Services
// drain the pod; the FUSE fd is handed to the in-pod holder; `jfs-mount`'s image is patched as the upgrader
// identity (the one change ADR 0006 lets it make); the kubelet (≥ 1.32) restarts the native sidecar in
// place; the planner judges completion from initContainerStatuses (a new imageID, started, ready); finish
// sets the gate True again.
import {
  CoreV1Api,
  Exec,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Pod,
  type V1Status,
} from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import type { Logger } from 'pino';
import { LABEL_DISABLE_INJECTION, LABEL_INJECTION_DONE, SIDECAR_NAME, SYSTEM_NAMESPACE } from '../contract/keys.js';
import { isStatus, unlessNotFound } from '../k8s/errors.js';
import { observeSidecarPod, podKey } from '../upgrade/clients.js';
import { gatePatch, imagePatch } from '../upgrade/patches.js';
import type { JuiceFSUpgrade, PodUpgradeProgress } from '../upgrade/types.js';
import { UpgradeStepFailed, type UpgradeActuator } from './upgrade-actuator.js';

/** The in-pod FUSE fd holder's container (branch wt-fdside): a native sidecar before `jfs-mount`. */
export const FD_HOLDER_CONTAINER = 'jfs-fd-holder';

/**
 * Tells the pod's fd holder that the next SIGTERM of these clients is an upgrade (the outgoing client hands
 * its FUSE fd to the holder instead of unmounting). Resolves with a note for the status, throws
 * UpgradeStepFailed when the holder refuses. Stubbed in unit tests; the default runs the holder's command.
 */
export type HandoverStep = (pod: V1Pod, clients: string[]) => Promise<string | undefined>;

/**
 * How long the holder's arming lasts (its `--ttl`): the image patch follows the exec at once and the kubelet
 * restarts the client within seconds; a stale arming must not turn a later crash or stop into a handover.
 */
export const HANDOVER_TTL_SECONDS = 120;

/**
 * The holder's command (branch wt-fdside, `jfs-sidecar fd-holder expect-handover`), in the exact argv shape its
 * after-admission policy lets the upgrader exec: the project image's node and CLI, one `--name` per client.
 */
export function expectHandoverCommand(containers: string[], ttlSeconds = HANDOVER_TTL_SECONDS): string[] {
  for (const c of containers)
    if (!new RegExp(`^${SIDECAR_NAME}(-[0-9]+)?$`).test(c)) throw new Error(`${c} is not a JuiceFS client container`);
  return [
    'node',
    '/app/dist/src/cli/main.js',
    'fd-holder',
    'expect-handover',
    ...containers.map((c) => `--name=${c}`),
    `--ttl=${ttlSeconds}`,
  ];
}

/**
 * The default handover: one exec of the holder's command in the holder container. A pod without a holder
 * (injected before the holder existed, or `juicefs/fd-holder` off) is swapped all the same: its mount is
 * re-made by the new client and the apps' open files do not survive; the note says so.
 */
export function execHandover(kc: KubeConfig, timeoutMs = 30_000): HandoverStep {
  return async (pod, clients) => {
    const spec = pod.spec!;
    const holder = [...(spec.initContainers ?? []), ...spec.containers].find((c) => c.name === FD_HOLDER_CONTAINER);
    if (!holder) return 'no FUSE fd holder in this pod: the apps’ open files do not survive the swap';
    const cmd = expectHandoverCommand(clients);
    const { status, err } = await execIn(kc, pod, FD_HOLDER_CONTAINER, cmd, timeoutMs);
    if (status.status !== 'Success')
      throw new UpgradeStepFailed(
        `the fd holder refused the handover of ${clients.join(', ')} (${cmd.slice(2).join(' ')}): ${status.message ?? ''} ${err}`.trim(),
      );
    return undefined;
  };
}

/** One exec in a pod's container: its status, stderr and stdout (the Mount Pod upgrades read its output too). */
export async function execIn(
  kc: KubeConfig,
  pod: V1Pod,
  container: string,
  command: string[],
  timeoutMs: number,
): Promise<{ status: V1Status; err: string; out: string }> {
  const stderr = new PassThrough();
  const stdout = new PassThrough();
  let err = '';
  let out = '';
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  const status = await new Promise<V1Status>((resolve, reject) => {
    const timer = setTimeout(() => reject(new UpgradeStepFailed(`${command.join(' ')}: no answer`)), timeoutMs);
    new Exec(kc)
      .exec(pod.metadata!.namespace!, pod.metadata!.name!, container, command, stdout, stderr, null, false, (s) => {
        clearTimeout(timer);
        resolve(s);
      })
      .catch((e: unknown) => {
        clearTimeout(timer);
        reject(new UpgradeStepFailed(`exec into ${container}: ${e instanceof Error ? e.message : String(e)}`));
      });
  });
  return { status, err: err.trim(), out };
}

export const CANARY_LABEL = 'app.kubernetes.io/name';
export const CANARY_LABEL_VALUE = 'jfs-upgrade-canary';

/** The canary of one image on one node: runs `juicefs version` (the image must hold a client that starts). */
export function canaryPod(node: string, image: string): V1Pod {
  const hash = createHash('sha256').update(`${node}\n${image}`).digest('hex').slice(0, 12);
  return {
    metadata: {
      name: `jfs-upgrade-canary-${hash}`,
      namespace: SYSTEM_NAMESPACE,
      labels: { [CANARY_LABEL]: CANARY_LABEL_VALUE, [LABEL_DISABLE_INJECTION]: 'true' },
    },
    spec: {
      nodeName: node,
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 0,
      tolerations: [{ operator: 'Exists' }],
      enableServiceLinks: false,
      containers: [
        {
          name: 'canary',
          image,
          command: ['juicefs', 'version'],
          resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '256Mi' } },
          securityContext: { allowPrivilegeEscalation: false },
        },
      ],
    },
  };
}

/** A canary's verdict from its status: undefined while it runs. */
export function canaryVerdict(pod: V1Pod): { ok: boolean; message: string } | undefined {
  const s = pod.status?.containerStatuses?.[0];
  const waiting = s?.state?.waiting;
  if (
    waiting?.reason &&
    /ErrImagePull|ImagePullBackOff|InvalidImageName|CreateContainer|RunContainerError/.test(waiting.reason)
  )
    return { ok: false, message: `${waiting.reason}: ${waiting.message ?? ''}`.trim() };
  const term = s?.state?.terminated;
  // The container's exit is reported before the pod's phase moves on.
  if (pod.status?.phase === 'Succeeded' || term?.exitCode === 0) return { ok: true, message: 'juicefs version ran' };
  if (pod.status?.phase === 'Failed' || term)
    return {
      ok: false,
      message: `juicefs version exited ${term?.exitCode ?? '?'}${term?.reason ? ` (${term.reason})` : ''}${term?.message ? `: ${term.message.trim()}` : ''}`,
    };
  return undefined;
}

export interface SidecarActuatorOptions {
  kubeConfig: KubeConfig;
  handover?: HandoverStep;
  log: Logger;
  now?: () => Date;
}

export class SidecarActuator implements UpgradeActuator {
  readonly kind = 'sidecar' as const;
  readonly pods = { labelSelector: `${LABEL_INJECTION_DONE}=true` };
  private readonly core: CoreV1Api;
  private readonly handover: HandoverStep;
  /** Canaries that passed (node + image): the image is on the node and runs; no second canary is needed. */
  private readonly passed = new Set<string>();
  private readonly now: () => Date;

  constructor(private readonly opts: SidecarActuatorOptions) {
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.handover = opts.handover ?? execHandover(opts.kubeConfig);
    this.now = opts.now ?? (() => new Date());
  }

  observe(pod: V1Pod) {
    return observeSidecarPod(pod);
  }

  async step(pod: V1Pod, rec: PodUpgradeProgress, upgrade: JuiceFSUpgrade): Promise<Partial<PodUpgradeProgress>> {
    switch (rec.phase) {
      case 'Preparing':
        return this.prepare(pod, rec);
      case 'Draining':
        if (!(pod.spec?.readinessGates ?? []).length || !observeSidecarPod(pod).hasGate)
          return { phase: 'HandingOver', message: 'no upgrade readiness gate: Services are not drained first' };
        await this.setGate(pod, false, 'Upgrading', `upgrade ${upgrade.metadata?.name}: the client is being swapped`);
        return { phase: 'HandingOver', message: undefined };
      case 'HandingOver': {
        const note = await this.handover(
          pod,
          rec.containers.map((c) => c.name),
        );
        const images = Object.fromEntries(rec.containers.map((c) => [c.name, c.toImage]));
        await this.patchPod(pod, imagePatch(pod, images, upgrade.metadata!.name!), false);
        return { phase: 'Swapping', message: note };
      }
      default:
        return {};
    }
  }

  async finish(pod: V1Pod, rec: PodUpgradeProgress): Promise<void> {
    // A failed swap leaves the gate False: the pod's client is not the one it should be, Services keep away.
    // A pod that failed before its swap (the canary) was never drained.
    if (rec.phase !== 'Succeeded' || !observeSidecarPod(pod).hasGate) return;
    await this.setGate(pod, true, 'Upgraded', `client swapped to ${rec.containers.map((c) => c.toImage).join(', ')}`);
  }

  private async prepare(pod: V1Pod, rec: PodUpgradeProgress): Promise<Partial<PodUpgradeProgress>> {
    const node = pod.spec?.nodeName;
    if (!node) throw new UpgradeStepFailed('the pod has no node');
    for (const image of new Set(rec.containers.map((c) => c.toImage))) {
      const key = `${node}\n${image}`;
      if (this.passed.has(key)) continue;
      const want = canaryPod(node, image);
      const name = want.metadata!.name!;
      let canary = await unlessNotFound(this.core.readNamespacedPod({ name, namespace: SYSTEM_NAMESPACE }));
      if (!canary) {
        try {
          canary = await this.core.createNamespacedPod({ namespace: SYSTEM_NAMESPACE, body: want });
        } catch (err) {
          if (!isStatus(err, 409)) throw err;
          return { message: `canary ${name} of ${image} on ${node}: starting` };
        }
      }
      const verdict = canaryVerdict(canary);
      if (!verdict) return { message: `canary ${name} of ${image} on ${node}: running` };
      await unlessNotFound(this.core.deleteNamespacedPod({ name, namespace: SYSTEM_NAMESPACE, gracePeriodSeconds: 0 }));
      if (!verdict.ok)
        throw new UpgradeStepFailed(`${image} does not start on ${node} (canary ${name}): ${verdict.message}`);
      this.passed.add(key);
      this.opts.log.info({ pod: podKey(rec), node, image }, 'canary passed');
    }
    return { phase: 'Draining', message: undefined };
  }

  private async setGate(pod: V1Pod, ready: boolean, reason: string, message: string): Promise<void> {
    // The informer's copy may be behind a write of our own: read the pod for its resourceVersion.
    const fresh = await this.core.readNamespacedPod({ name: pod.metadata!.name!, namespace: pod.metadata!.namespace! });
    if (fresh.metadata?.uid !== pod.metadata?.uid) throw new UpgradeStepFailed('the pod was replaced');
    const ops = gatePatch(fresh, ready, reason, message, this.now());
    if (ops.length) await this.patchPod(fresh, ops, true);
  }

  private async patchPod(pod: V1Pod, body: object[], status: boolean): Promise<void> {
    const args = { name: pod.metadata!.name!, namespace: pod.metadata!.namespace!, body };
    const opts = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);
    try {
      if (status) await this.core.patchNamespacedPodStatus(args, opts);
      else await this.core.patchNamespacedPod(args, opts);
    } catch (err) {
      // 403: the after-admission policy refused (this identity is not the ConfigMap's upgrader); 422: a test failed.
      if (isStatus(err, 403) || isStatus(err, 422))
        throw new UpgradeStepFailed(`the API server refused the ${status ? 'gate' : 'image'} patch: ${describe(err)}`);
      throw err;
    }
  }
}

function describe(err: unknown): string {
  const body = (err as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      return (JSON.parse(body) as { message?: string }).message ?? body;
    } catch {
      return body;
    }
  }
  return err instanceof Error ? err.message : String(err);
}
