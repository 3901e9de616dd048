// The webhook as a cluster runs it — `jfs-sidecar webhook` with the shipped
// namespace, RBAC (through its ServiceAccount) and ConfigMap, registered through
// the shipped MutatingWebhookConfiguration pointed at loopback — on a control
// plane of ours. Shared by `jfs-sidecar local`, tests and bench (as
// controller-stack.ts and real-node-stack.ts are for the controller and the node).
import type {
  KubeConfig,
  V1MutatingWebhookConfiguration,
  V1ValidatingWebhookConfiguration,
} from '@kubernetes/client-node';
import path from 'node:path';
import { SYSTEM_NAMESPACE } from '../contract/keys.js';
import { applyObjects, readManifest, WebhookProcess } from './components.js';
import { freePort, type ControlPlane } from './control-plane.js';

export const WEBHOOK_NAMESPACE = SYSTEM_NAMESPACE;

/** A shipped webhook configuration, pointed at a webhook on loopback; everything else as shipped. */
function atLoopback<C extends V1MutatingWebhookConfiguration | V1ValidatingWebhookConfiguration>(
  file: string,
  port: number,
): C {
  const [config] = readManifest(file) as C[];
  for (const w of config.webhooks ?? []) {
    const p = w.clientConfig.service?.path ?? '/';
    w.clientConfig = { url: `https://127.0.0.1:${port}${p}` };
  }
  return config;
}

/** The shipped MutatingWebhookConfiguration, pointed at a webhook on loopback; everything else as shipped. */
export function loopbackWebhookConfiguration(port: number): V1MutatingWebhookConfiguration {
  return atLoopback('mutating-webhook.yaml', port);
}

/** The webhook's namespace and its registration, pointed at `port` on loopback (no process: see startWebhookStack). */
export async function registerLoopbackWebhook(kc: KubeConfig, port: number): Promise<void> {
  await applyObjects(kc, [...readManifest('namespace.yaml'), loopbackWebhookConfiguration(port)]);
}

export interface WebhookStackOptions {
  /** Namespaces whose JuiceFS Secrets the webhook may read (--secret-namespace). */
  secretNamespaces: string[];
  /** The webhook's output goes to webhook.log here; without it, it is dropped. */
  dir?: string;
  /**
   * No controller runs beside it (admission-only tests, bench): admit pods without the controller's seal on the
   * PVC's Secret copy (`--no-require-secret-copy-seal`, ADR 0010).
   */
  withoutController?: boolean;
  /** More flags of `jfs-sidecar webhook` (e.g. the credential broker's). */
  extraArgs?: string[];
  /** Also register the shipped ValidatingWebhookConfiguration (Secrets, PVs) at the webhook. */
  validating?: boolean;
}

export interface WebhookStack {
  port: number;
  /** The webhook's ServiceAccount kubeconfig: what the shipped RBAC lets it do. */
  kubeconfig: string;
  webhook: WebhookProcess;
  logFile?: string;
  stop(): Promise<void>;
}

export async function startWebhookStack(cp: ControlPlane, opts: WebhookStackOptions): Promise<WebhookStack> {
  const admin = cp.adminKubeConfig();
  // The shipped ServiceAccount, RBAC, global ConfigMap and after-admission policies; the Deployment's container
  // runs here as a process.
  await applyObjects(admin, [
    ...readManifest('namespace.yaml'),
    ...readManifest('rbac.yaml'),
    ...readManifest('config.yaml'),
    // What keeps injected pods as admitted (pod UPDATE, exec): policies the API server runs itself.
    ...readManifest('after-admission.yaml'),
  ]);
  const port = await freePort();
  await registerLoopbackWebhook(admin, port);
  if (opts.validating) await applyObjects(admin, [atLoopback('validating-webhook.yaml', port)]);
  const kubeconfig = await cp.serviceAccountKubeconfig(WEBHOOK_NAMESPACE, 'jfs-sidecar-webhook');
  const logFile = opts.dir ? path.join(opts.dir, 'webhook.log') : undefined;
  const webhook = await WebhookProcess.start({
    kubeconfig,
    namespace: WEBHOOK_NAMESPACE,
    secretNamespaces: opts.secretNamespaces,
    port,
    logFile,
    extraArgs: [...(opts.withoutController ? ['--no-require-secret-copy-seal'] : []), ...(opts.extraArgs ?? [])],
  });
  return { port, kubeconfig, webhook, logFile, stop: () => webhook.stop() };
}
