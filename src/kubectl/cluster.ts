// The user's own cluster access, resolved as kubectl resolves it: --kubeconfig, else $KUBECONFIG (a list, merged),
// else ~/.kube/config (else in-cluster); --context picks a context; the namespace is -n, else the context's, else
// "default". `kubectl jfs` acts with these credentials only.
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  StorageV1Api,
} from '@kubernetes/client-node';

export interface GlobalFlags {
  kubeconfig?: string;
  context?: string;
  namespace?: string;
  allNamespaces?: boolean;
}

/** A mistake of the user's (flags, kubeconfig): printed as its message, without a stack. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface Cluster {
  kc: KubeConfig;
  core: CoreV1Api;
  storage: StorageV1Api;
  admission: AdmissionregistrationV1Api;
  custom: CustomObjectsApi;
  /** -n, else the context's namespace, else default. */
  namespace: string;
  /** -A: every namespace (lists only). */
  allNamespaces: boolean;
}

export function connect(flags: GlobalFlags): Cluster {
  const kc = new KubeConfig();
  try {
    if (flags.kubeconfig) kc.loadFromFile(flags.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    throw new UsageError(
      `cannot load the kubeconfig${flags.kubeconfig ? ` ${flags.kubeconfig}` : ''}: ${(err as Error).message}`,
    );
  }
  if (flags.context) {
    if (!kc.getContextObject(flags.context))
      throw new UsageError(
        `context "${flags.context}" does not exist in the kubeconfig (contexts: ${
          kc
            .getContexts()
            .map((c) => c.name)
            .join(', ') || 'none'
        })`,
      );
    kc.setCurrentContext(flags.context);
  }
  if (!kc.getCurrentCluster())
    throw new UsageError(
      'no cluster to talk to: pass --kubeconfig, set KUBECONFIG, or write ~/.kube/config (as for kubectl)',
    );
  const namespace = flags.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    storage: kc.makeApiClient(StorageV1Api),
    admission: kc.makeApiClient(AdmissionregistrationV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    namespace,
    allNamespaces: flags.allNamespaces === true,
  };
}

/** An API error as one line: the API's own message when it sent one. */
export function apiErrorMessage(err: unknown): string {
  const e = err as { code?: number; body?: unknown; message?: string };
  let body: unknown = e.body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      // not JSON: keep the text
    }
  }
  const msg = (body as { message?: unknown } | undefined)?.message;
  if (typeof msg === 'string') return msg;
  if (typeof e.code === 'number') return `HTTP ${e.code}${e.message ? `: ${e.message.split('\n')[0]}` : ''}`;
  return e.message ?? String(err);
}
