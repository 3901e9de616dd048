// The FUSE fd holder of sidecar mode (issue 13; ADR 0015, 0016): what the injector adds so that a client container
// that restarts (crash, OOM kill, in-place image change) takes its FUSE connection back instead of leaving the apps
// on a dead mount. One holder container per pod (a native sidecar from the jfs-sidecar image, before the jfs-mount
// containers), one memory-backed emptyDir shared with the client containers only; per client container a folder
// `<dir>/<container>/` with its socket (its JFS_SUPER_COMM), its state file (`_FUSE_STATE_PATH`, the open handles a
// handover saves) and the handover marker the upgrader sets (`jfs-sidecar fd-holder expect-handover`). Pure.
import type { V1Container, V1EnvVar, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import { FD_DIR_ENV, FD_HOLDER_DIR, FD_HOLDER_SOCKET_FILE, FD_HOLDER_STATE_FILE } from '../contract/keys.js';

/** Where juicefs (>= 1.2.1) finds an external holder of its FUSE fd, and where its first mount process loads state. */
export const SUPER_COMM_ENV = 'JFS_SUPER_COMM';
export const STATE_PATH_ENV = '_FUSE_STATE_PATH';

export const clientFdDir = (container: string) => `${FD_HOLDER_DIR}/${container}`;

/** The shared volume: memory-backed, never a node disk (a socket, a marker, state files of open handles). */
export function fdHolderVolume(name: string): V1Volume {
  return { name, emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } };
}

/** The holder container: unprivileged, read-only root, small; it only listens on the shared volume. */
export function buildFdHolderContainer(name: string, image: string, volume: string, clients: string[]): V1Container {
  return {
    name,
    image,
    args: ['fd-holder', 'run', `--dir=${FD_HOLDER_DIR}`, ...clients.map((c) => `--name=${c}`)],
    // A native sidecar: started before the clients (they wait for its socket), stopped after them.
    restartPolicy: 'Always',
    volumeMounts: [{ name: volume, mountPath: FD_HOLDER_DIR }],
    resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '128Mi' } },
    securityContext: {
      runAsUser: 65532,
      runAsGroup: 65532,
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    },
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

/** A client container that hands its FUSE fd to the holder: the env juicefs and the entrypoint read, the volume. */
export function withFdHolder(container: V1Container, volume: string): V1Container {
  const dir = clientFdDir(container.name);
  const env: V1EnvVar[] = [
    ...(container.env ?? []),
    { name: FD_DIR_ENV, value: dir },
    { name: SUPER_COMM_ENV, value: `${dir}/${FD_HOLDER_SOCKET_FILE}` },
    { name: STATE_PATH_ENV, value: `${dir}/${FD_HOLDER_STATE_FILE}` },
  ];
  const mounts: V1VolumeMount[] = [...(container.volumeMounts ?? []), { name: volume, mountPath: FD_HOLDER_DIR }];
  return { ...container, env, volumeMounts: mounts };
}
