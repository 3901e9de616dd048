// `kubectl jfs accesslog POD` and `warmup POD [PATH]`: through exec, streaming, Ctrl-C stops.
//
// Where the exec goes: in Mount Pod mode into the Mount Pod's client (its mount point is the container's
// JFS_MOUNT_POINT). In sidecar mode the after-admission policy refuses exec into injected containers to everyone
// (ADR 0006), so the access log is read through an app container, whose mount path is the volume's root (the
// sidecar mounts the PV's subdirectory there); warmup needs the juicefs binary, which only the client has, so a
// sidecar-mode warmup runs `juicefs warmup` only where exec into the client is admitted, and says so otherwise.
import type { V1Pod } from '@kubernetes/client-node';
import type { Writable } from 'node:stream';
import { MOUNT_POINT_ENV, MOUNT_POD_APP_VALUE, MOUNT_POD_LABEL_APP, SYSTEM_NAMESPACE } from '../contract/keys.js';
import {
  describeAppPod,
  isMountPod,
  juicefsMountsOf,
  mountPodsOfPod,
  sidecarContainers,
} from '../diagnose/inventory.js';
import { isStatus } from '../k8s/errors.js';
import { apiErrorMessage, UsageError, type Cluster } from './cluster.js';
import { execStream, type PodRef } from './exec.js';

export interface ExecIo {
  stdout: Writable;
  stderr: Writable;
  signal?: AbortSignal;
}

interface ClientTarget {
  /** Where to exec. */
  ref: PodRef;
  /** The volume's root as that container sees it. */
  root: string;
  /** Exec lands in the client container itself (it has the juicefs binary). */
  isClient: boolean;
  /** For messages. */
  what: string;
}

async function readPod(c: Cluster, namespace: string, name: string): Promise<V1Pod> {
  try {
    return await c.core.readNamespacedPod({ namespace, name });
  } catch (err) {
    if (isStatus(err, 404)) throw new UsageError(`pod ${namespace}/${name} not found`);
    throw new UsageError(`cannot read pod ${namespace}/${name}: ${apiErrorMessage(err)}`);
  }
}

/** The clients of one app pod (or the Mount Pod itself), with the PVC each serves when known. */
async function clientTargets(c: Cluster, podName: string, systemNamespace: string): Promise<ClientTarget[]> {
  const pod = await readPod(c, c.namespace, podName);
  const ns = pod.metadata?.namespace ?? c.namespace;
  if (isMountPod(pod)) {
    const root = pod.spec?.containers?.[0]?.env?.find((e) => e.name === MOUNT_POINT_ENV)?.value;
    const container = pod.spec?.containers?.[0]?.name ?? '';
    if (!root) throw new UsageError(`Mount Pod ${ns}/${podName} names no ${MOUNT_POINT_ENV}`);
    return [{ ref: { namespace: ns, name: podName, container }, root, isClient: true, what: `Mount Pod ${podName}` }];
  }
  if (sidecarContainers(pod).length > 0)
    // The app containers that mount the shared volume, at their mount path (the volume's root).
    return juicefsMountsOf(pod, [])
      .filter((m, i, all) => all.findIndex((x) => x.path === m.path) === i)
      .map((m) => ({
        ref: { namespace: ns, name: podName, container: m.container },
        root: m.path,
        isClient: false,
        what: `${m.container}:${m.path} of pod ${podName} (sidecar mode)`,
      }));
  const mountPods = await c.core
    .listNamespacedPod({ namespace: systemNamespace, labelSelector: `${MOUNT_POD_LABEL_APP}=${MOUNT_POD_APP_VALUE}` })
    .then((l) => l.items)
    .catch((err: unknown) => {
      throw new UsageError(
        `pod ${ns}/${podName} is in Mount Pod mode, and its Mount Pods in ${systemNamespace} cannot be listed: ` +
          `${apiErrorMessage(err)} (an admin's command)`,
      );
    });
  const mps = mountPodsOfPod(pod, mountPods);
  if (mps.length === 0) {
    const info = describeAppPod(pod, { pvcs: [], pvs: [], storageClasses: [], mountPods });
    throw new UsageError(
      `pod ${ns}/${podName} has no JuiceFS client${info ? '' : ' (it uses no JuiceFS volume)'}: ` +
        `kubectl jfs debug pod ${podName} -n ${ns} says why`,
    );
  }
  return mps.map((m) => ({
    ref: {
      namespace: m.metadata?.namespace ?? '',
      name: m.metadata?.name ?? '',
      container: m.spec?.containers?.[0]?.name ?? '',
    },
    root: m.spec?.containers?.[0]?.env?.find((e) => e.name === MOUNT_POINT_ENV)?.value ?? '',
    isClient: true,
    what: `Mount Pod ${m.metadata?.name}`,
  }));
}

function pick(targets: ClientTarget[], podName: string, mountPath?: string): ClientTarget {
  if (targets.length === 0) throw new UsageError(`pod ${podName}: no container mounts its JuiceFS volume`);
  if (mountPath) {
    const t = targets.find((x) => x.root === mountPath || x.what.includes(mountPath));
    if (!t)
      throw new UsageError(
        `pod ${podName} has no JuiceFS mount at ${mountPath} (it has: ${targets.map((x) => x.root).join(', ')})`,
      );
    return t;
  }
  if (targets.length > 1)
    throw new UsageError(
      `pod ${podName} has ${targets.length} JuiceFS volumes: name one with --mount-path (${targets.map((x) => x.root).join(', ')})`,
    );
  return targets[0];
}

/** Streams the client's access log (`<root>/.accesslog`) until Ctrl-C. */
export async function accessLog(
  c: Cluster,
  podName: string,
  o: { mountPath?: string; systemNamespace?: string },
  io: ExecIo,
): Promise<number> {
  const t = pick(await clientTargets(c, podName, o.systemNamespace ?? SYSTEM_NAMESPACE), podName, o.mountPath);
  io.stderr.write(`Streaming ${t.root}/.accesslog through ${t.what} (Ctrl-C stops)\n`);
  // dd, not cat: busybox's cat copies with sendfile(), which on this FUSE file returns nothing until EOF (never);
  // dd's read()/write() passes each batch of lines on at once.
  return execStream(c.kc, t.ref, ['dd', `if=${t.root}/.accesslog`, 'bs=65536'], io);
}

/** `juicefs warmup` of PATH (relative to the volume's root, default all of it), streaming its progress. */
export async function warmup(
  c: Cluster,
  podName: string,
  path: string | undefined,
  o: { mountPath?: string; systemNamespace?: string; threads?: number },
  io: ExecIo,
): Promise<number> {
  const t = pick(await clientTargets(c, podName, o.systemNamespace ?? SYSTEM_NAMESPACE), podName, o.mountPath);
  const rel = (path ?? '').replace(/^\/+/, '');
  if (rel.split('/').includes('..')) throw new UsageError(`path ${path} leaves the volume`);
  const target = rel ? `${t.root}/${rel}` : t.root;
  const argv = ['juicefs', 'warmup', ...(o.threads ? [`--threads=${o.threads}`] : []), target];
  if (!t.isClient)
    throw new UsageError(
      `pod ${podName} is in sidecar mode: juicefs warmup must run in its jfs-mount container, and the after-admission ` +
        `policy refuses exec into injected containers to everyone (docs/adr/0006-after-admission.md). Warm the cache ` +
        `from a pod that runs the client image on the same node and mounts the same PVC: its app container can run ${argv.join(' ')}`,
    );
  io.stderr.write(`Warming up ${target} through ${t.what} (Ctrl-C stops)\n`);
  return execStream(c.kc, t.ref, argv, io);
}
