// Write actions act as the person using the dashboard (ADR 0023): their bearer token, as an auth proxy or
// `kubectl proxy`-style front sets it in Authorization (or the token field of the page does), is sent to the
// API server in place of the dashboard's own credentials. The API server's answer, a 403 included, is
// returned as it is; the dashboard's ServiceAccount never writes.
import {
  CustomObjectsApi,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1ConfigMap,
} from '@kubernetes/client-node';
import { CONFIG_MAP_KEY, CONFIG_MAP_NAME } from '../contract/keys.js';
import {
  UPGRADE_API_VERSION,
  UPGRADE_GROUP,
  UPGRADE_KIND,
  UPGRADE_PLURAL,
  UPGRADE_VERSION,
  type JuiceFSUpgrade,
  type UpgradeSpec,
} from '../upgrade/types.js';

/** An error for the browser: the HTTP status to answer and a plain message. */
export class UserFacingError extends Error {
  override name = 'UserFacingError';
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** The bearer token of `Authorization: Bearer <token>`; undefined when there is none. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m?.[1];
}

/** The dashboard's cluster (server, CA) with the user's token as the only credential. */
export function userKubeConfig(base: KubeConfig, token: string): KubeConfig {
  const cluster = base.getCurrentCluster();
  if (!cluster) throw new UserFacingError(500, 'the dashboard has no cluster in its kubeconfig');
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [cluster],
    users: [{ name: 'dashboard-user', token }],
    contexts: [{ name: 'dashboard-user', cluster: cluster.name, user: 'dashboard-user' }],
    currentContext: 'dashboard-user',
  });
  return kc;
}

/** The API server's status and message of a failed call, for the browser as the API server said it. */
export function apiFailure(err: unknown): UserFacingError {
  if (err instanceof UserFacingError) return err;
  const e = err as { code?: unknown; body?: unknown; message?: unknown };
  if (typeof e.code === 'number' && e.code >= 400 && e.code < 600) {
    let message = typeof e.body === 'string' ? e.body : '';
    try {
      const status = JSON.parse(message) as { message?: string };
      if (status.message) message = status.message;
    } catch {
      // not a Status: the body as it is
    }
    return new UserFacingError(e.code, `the API server answered ${e.code}: ${message || String(e.message)}`);
  }
  return new UserFacingError(502, `the API server could not be reached: ${String(e.message ?? err)}`);
}

const CRD = { group: UPGRADE_GROUP, version: UPGRADE_VERSION, plural: UPGRADE_PLURAL };

export type UpgradeAction = 'pause' | 'resume' | 'abort';
const ACTIONS: Record<UpgradeAction, Partial<UpgradeSpec>> = {
  pause: { paused: true },
  resume: { paused: false },
  abort: { abort: true },
};
export const isUpgradeAction = (a: string): a is UpgradeAction => Object.hasOwn(ACTIONS, a);

export class UserApi {
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;

  constructor(kc: KubeConfig) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  async createUpgrade(name: string | undefined, spec: UpgradeSpec): Promise<JuiceFSUpgrade> {
    const metadata = name ? { name } : { generateName: 'dashboard-' };
    try {
      return (await this.custom.createClusterCustomObject({
        ...CRD,
        body: { apiVersion: UPGRADE_API_VERSION, kind: UPGRADE_KIND, metadata, spec },
      })) as JuiceFSUpgrade;
    } catch (err) {
      throw apiFailure(err);
    }
  }

  async actOnUpgrade(name: string, action: UpgradeAction): Promise<JuiceFSUpgrade> {
    try {
      return (await this.custom.patchClusterCustomObject(
        { ...CRD, name, body: { spec: ACTIONS[action] } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      )) as JuiceFSUpgrade;
    } catch (err) {
      throw apiFailure(err);
    }
  }

  /**
   * Replaces the ConfigMap's config.yaml; `resourceVersion` is the version the user edited, so an edit over
   * someone else's newer one is refused by the API server (409) instead of silently undoing theirs.
   */
  async writeConfig(namespace: string, text: string, resourceVersion: string | undefined): Promise<V1ConfigMap> {
    try {
      const current = await this.core.readNamespacedConfigMap({ name: CONFIG_MAP_NAME, namespace });
      const body: V1ConfigMap = {
        ...current,
        metadata: { ...current.metadata, resourceVersion: resourceVersion ?? current.metadata?.resourceVersion },
        data: { ...(current.data ?? {}), [CONFIG_MAP_KEY]: text },
      };
      return await this.core.replaceNamespacedConfigMap({ name: CONFIG_MAP_NAME, namespace, body });
    } catch (err) {
      throw apiFailure(err);
    }
  }
}
