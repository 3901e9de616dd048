// Ephemeral containers of an injected pod (`kubectl debug`, the
// pods/ephemeralcontainers subresource). In sidecar mode the shared volume is
// the node's whole mount root (every pod's FUSE mount lives under it) and the
// cache volumes are the node's cache folders: app containers reach only their
// own pod's part through the per-pod subPathExpr the injector writes, but the
// API server forbids subPath and subPathExpr in ephemeral containers, so that
// rule cannot apply there. An ephemeral container therefore may not mount any
// volume an injected container mounts, in either mode (serverless volumes are
// per pod, but one rule is simpler to trust and loses nothing: the pod's data is
// reachable through its app containers), nor target an injected container's
// process namespace (the privileged client's /proc holds its credentials and
// its view of the mount root). Pure: the webhook decides with it.
import type { V1Container, V1EphemeralContainer, V1Pod } from '@kubernetes/client-node';
import { DenyError } from '../contract/deny.js';
import { CREDENTIALS_AUDIENCE, CREDENTIALS_INIT_NAME, FORMAT_INIT_NAME, SIDECAR_NAME } from '../contract/keys.js';

const INJECTED_NAME = new RegExp(`^(${SIDECAR_NAME}|${FORMAT_INIT_NAME}|${CREDENTIALS_INIT_NAME})(-[0-9]+)?$`);

/** Whether a container is one the injector adds (jfs-mount, jfs-format, jfs-credentials, and their -<i>). */
export function isInjectedContainer(c: Pick<V1Container, 'name'>): boolean {
  return INJECTED_NAME.test(c.name);
}

/**
 * The denial for the ephemeral containers that `pod` adds to `old` (those of
 * `old` were admitted before), or undefined when they touch nothing injected.
 */
export function ephemeralContainersDenial(pod: V1Pod, old: V1Pod | undefined): DenyError | undefined {
  const injected = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].filter(isInjectedContainer);
  if (injected.length === 0) return undefined;
  // The injector's volumes: the shared volume and the cache folders, host paths or emptyDirs that its containers
  // mount (not, say, the service account token the API server mounts into every container).
  // In broker mode also the projected token of the broker's audience (the kubelet keeps it fresh all the pod's life).
  const own = new Set(
    (pod.spec?.volumes ?? [])
      .filter(
        (v) =>
          v.hostPath !== undefined ||
          v.emptyDir !== undefined ||
          // Cache storage an admin gave the client (inline CSI, generic ephemeral): a node's or the client's own.
          v.csi !== undefined ||
          v.ephemeral !== undefined ||
          v.projected?.sources?.some((s) => s.serviceAccountToken?.audience === CREDENTIALS_AUDIENCE),
      )
      .map((v) => v.name),
  );
  const guarded = new Set(
    injected.flatMap((c) => (c.volumeMounts ?? []).map((m) => m.name)).filter((name) => own.has(name)),
  );
  const injectedNames = new Set(injected.map((c) => c.name));
  const admitted = new Set((old?.spec?.ephemeralContainers ?? []).map((c) => c.name));
  const added = (pod.spec?.ephemeralContainers ?? []).filter((c: V1EphemeralContainer) => !admitted.has(c.name));
  for (const c of added) {
    const mount = (c.volumeMounts ?? []).find((m) => guarded.has(m.name));
    if (mount) {
      return new DenyError(
        'ephemeral-container',
        `ephemeral container ${c.name} may not mount volume "${mount.name}": the JuiceFS injector's volumes hold other pods' mounts and caches on the node, and an ephemeral container cannot have the per-pod subPathExpr that keeps app containers to their own; debug through the app container's mount instead`,
      );
    }
    if (c.targetContainerName && injectedNames.has(c.targetContainerName)) {
      return new DenyError(
        'ephemeral-container',
        `ephemeral container ${c.name} may not target ${c.targetContainerName}: the JuiceFS client's processes are not for debugging from the pod`,
      );
    }
  }
  return undefined;
}
