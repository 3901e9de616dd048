// The node service's own pod and its Node, read at start and again every few minutes (tolerations can be added to a
// running pod; a DaemonSet change replaces the pod, and this process with it), for what Mount Pods inherit
// (./mount-pod-inherit.ts). Without POD_NAME (a node service outside the cluster) nothing is inherited.
import type { CoreV1Api, V1Node, V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { inheritanceOf, NO_INHERITANCE, type MountPodInheritance } from './mount-pod-inherit.js';

const REFRESH_MS = 5 * 60 * 1000;

export class NodePodReader {
  private last: MountPodInheritance | undefined;
  private readAt = 0;

  constructor(
    private readonly core: CoreV1Api,
    private readonly opts: {
      nodeName: string;
      /** The pod's own namespace and name (POD_NAMESPACE, POD_NAME from the downward API). */
      podNamespace?: string;
      podName?: string;
      env: Record<string, string | undefined>;
      log: Logger;
    },
  ) {}

  /** The inheritance as last read; a failed read keeps the previous one (or env-only at first). */
  async current(): Promise<MountPodInheritance> {
    if (this.last && Date.now() - this.readAt < REFRESH_MS) return this.last;
    const { podName, podNamespace, nodeName, env, log } = this.opts;
    let pod: V1Pod | undefined;
    let node: V1Node | undefined;
    try {
      if (podName && podNamespace) pod = await this.core.readNamespacedPod({ name: podName, namespace: podNamespace });
      node = await this.core.readNode({ name: nodeName }).catch(() => undefined);
    } catch (err) {
      log.warn({ err: (err as Error).message, pod: podName }, 'own pod not read: Mount Pods keep what was read before');
      if (this.last) return this.last;
    }
    const { inheritance, warnings } = inheritanceOf(pod, node, env);
    for (const w of warnings) log.warn(w);
    // An unread pod is tried again at the next publish, not in five minutes.
    if (pod || !podName) {
      this.last = inheritance;
      this.readAt = Date.now();
    }
    return pod || !podName ? inheritance : (this.last ?? { ...NO_INHERITANCE, ...inheritance });
  }
}
