// The tap side of the control-plane harness: one control plane per test file,
// torn down with the file (also when it fails), its logs printed on failure.
import { Exec, type KubeConfig, type KubernetesObject, type V1Status } from '@kubernetes/client-node';
import { PassThrough } from 'node:stream';
import { ControlPlane, type ControlPlaneOptions } from '../../src/local/control-plane.js';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { startWebhookStack, WEBHOOK_NAMESPACE, type WebhookStack } from '../../src/local/webhook-stack.js';

export interface TapLike {
  teardown(fn: () => unknown): void;
  passing(): boolean;
  comment(...args: unknown[]): void;
}

export async function startControlPlane(t: TapLike, opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const cp = await ControlPlane.start(opts);
  t.teardown(async () => {
    if (!t.passing()) t.comment(`control plane logs:\n${cp.logs(80)}`);
    await cp.stop();
  });
  // A test process that dies mid-way must not leave the control plane behind
  // ('exit' handlers cannot wait, so the processes are killed at once).
  process.once('exit', () => cp.killNow());
  return cp;
}

export async function eventually<T>(
  fn: () => Promise<T | undefined | false>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
    await sleep(200);
  }
}

/** The API server's own message of a failed client-node call (its Status body), else the error's message. */
export function apiMessage(err: unknown): string {
  const body = (err as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      return (JSON.parse(body) as { message?: string }).message ?? body;
    } catch {
      return body;
    }
  }
  return (err as Error).message;
}

/**
 * The attacker of the security suites: a ServiceAccount of `namespace` with the built-in `edit` role there
 * (pods, PVCs, Secrets, exec; no PVs, StorageClasses or other namespaces). Apply these, then act with
 * `cp.serviceAccountKubeconfig(namespace, name)`.
 */
export function namespaceUserObjects(namespace: string, name = 'user'): KubernetesObject[] {
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: `${name}-edit`, namespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
      subjects: [{ kind: 'ServiceAccount', name, namespace }],
    } as KubernetesObject,
  ];
}

/**
 * The webhook alone, as shipped, for a suite: no controller seals Secret copies (security-credentials.test.ts
 * tests the seal), stopped at teardown, its last log lines printed when the suite failed.
 */
export async function startLoneWebhook(t: TapLike, cp: ControlPlane): Promise<WebhookStack> {
  const stack = await startWebhookStack(cp, {
    dir: cp.dir,
    secretNamespaces: [WEBHOOK_NAMESPACE],
    withoutController: true,
  });
  t.teardown(() => stack.stop());
  t.teardown(() => {
    if (!t.passing() && stack.logFile) {
      t.comment(`webhook log:\n${readFileSync(stack.logFile, 'utf8').split('\n').slice(-40).join('\n')}`);
    }
  });
  return stack;
}

/** Runs a command in a pod's container through the API server and the kubelet (what `kubectl exec` does). */
export async function podExec(
  kc: KubeConfig,
  pod: { namespace: string; name: string; container: string },
  command: string[],
  timeoutMs = 30_000,
): Promise<{ out: string; err: string; status: V1Status }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  const status = await new Promise<V1Status>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`exec ${command.join(' ')} timed out`)), timeoutMs);
    new Exec(kc)
      .exec(pod.namespace, pod.name, pod.container, command, stdout, stderr, null, false, (s) => {
        clearTimeout(timer);
        resolve(s);
      })
      .catch((e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      });
  });
  return { out, err, status };
}

/** A static JuiceFS PV, pre-bound by the admin to the claim it is for (the claimRef rule). */
export function staticJuicefsPv(opts: {
  name: string;
  subPath: string;
  secret: { name: string; namespace: string };
  claim: { namespace: string; name: string };
  fsType?: string;
}): KubernetesObject {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name: opts.name },
    spec: {
      capacity: { storage: '10Gi' },
      accessModes: ['ReadWriteMany'],
      persistentVolumeReclaimPolicy: 'Retain',
      storageClassName: '',
      claimRef: opts.claim,
      csi: {
        driver: 'csi.juicefs.com',
        volumeHandle: opts.name,
        ...(opts.fsType && { fsType: opts.fsType }),
        nodePublishSecretRef: opts.secret,
        volumeAttributes: { subPath: opts.subPath },
      },
    },
  } as KubernetesObject;
}
