// What the API server would refuse in the injected pod, refused first with a
// denial that says why: the injector's containers must fit the pod they join.
// Pure, like the injector.
import type { V1Container, V1PodSpec } from '@kubernetes/client-node';
import { DenyError } from '../contract/deny.js';

function tcp(protocol: string | undefined): boolean {
  return protocol === undefined || protocol === 'TCP';
}

/**
 * Throws DenyError when a container the injector adds collides with the pod:
 * a port the pod's own containers declare (they share its network namespace;
 * under hostNetwork the node's, where the API server refuses a duplicate host
 * port), a port two added containers take (a volume's `metrics=` option), or
 * two mounts at one path in one added container.
 */
export function checkAddedContainers(original: V1PodSpec, added: V1Container[]): void {
  const own = [...(original.containers ?? []), ...(original.initContainers ?? [])];
  const hostNetwork = original.hostNetwork === true;
  const taken = new Map<number, string>();
  for (const container of added) {
    for (const port of container.ports ?? []) {
      const other = taken.get(port.containerPort);
      if (other) {
        throw new DenyError(
          'invalid-pv',
          `the JuiceFS clients of containers ${other} and ${container.name} would both serve metrics on port ${port.containerPort}; give the volumes' metrics= options distinct ports`,
        );
      }
      taken.set(port.containerPort, container.name);
    }
    for (const port of container.ports ?? []) {
      if (!tcp(port.protocol)) continue;
      for (const app of own) {
        const clash = (app.ports ?? []).find(
          (p) =>
            tcp(p.protocol) &&
            (p.containerPort === port.containerPort || (hostNetwork && p.hostPort === port.containerPort)),
        );
        if (clash) {
          throw new DenyError(
            'invalid-pod',
            `container "${app.name}" declares port ${port.containerPort}, where the JuiceFS client (container ${container.name}) serves its metrics ${hostNetwork ? 'on the node (hostNetwork: true)' : "in the pod's network"}; use another port`,
          );
        }
      }
    }
    const seen = new Set<string>();
    for (const mount of container.volumeMounts ?? []) {
      const at = mount.mountPath.replace(/\/+$/, '') || '/';
      if (seen.has(at)) {
        throw new DenyError(
          'invalid-pv',
          `the JuiceFS client (container ${container.name}) would mount two volumes at ${at}; check the volume's cache-dir option`,
        );
      }
      seen.add(at);
    }
  }
}
