// The Mount Pod upgrades' pieces (ADR 0019), pure. Both keep the FUSE connection: the node service holds each Mount
// Pod's fd (ADR 0015), and the outgoing client saves its open handles on SIGHUP.
// - binary: a pod with the target image on the Mount Pod's node copies its juicefs into the Mount Pod's fd folder
//   (its /tmp); one exec in the Mount Pod moves it over the binary its supervisor re-execs, and SIGHUPs the mount
//   process: the supervisor starts the new binary on the same connection 1 s later, with the handles.
// - recreate: the Mount Pod's client container is replaced by the kubelet with the target image (its image patched,
//   after a canary pulled it on the node); the preStop hands over, the new container takes fd and handles.
import type { V1Pod } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { LABEL_DISABLE_INJECTION, SIDECAR_NAME, SYSTEM_NAMESPACE } from '../contract/keys.js';

/** The binary the copy pod leaves in the Mount Pod's fd folder (its /tmp). */
export const NEXT_BINARY = 'juicefs.next';
/** Where the mount images keep juicefs; the supervisor re-execs this path (`os.Executable()` at its start). */
export const CLIENT_BINARY = '/usr/local/bin/juicefs';
export const COPY_POD_LABEL_VALUE = 'jfs-upgrade-binary';

/**
 * The copy pod: the target image on the Mount Pod's node, its fd folder (a hostPath the node service made) at /out.
 * It runs the image's own `juicefs version` first (support is probed by running the image, never by its tag), then
 * copies the binary in under a temporary name and renames it, so the folder never holds half a binary.
 */
export function binaryCopyPod(mountPod: V1Pod, fdDir: string, image: string): V1Pod {
  const node = mountPod.spec?.nodeName ?? '';
  const hash = createHash('sha256').update(`${mountPod.metadata?.uid}\n${image}`).digest('hex').slice(0, 12);
  return {
    metadata: {
      name: `jfs-upgrade-binary-${hash}`,
      namespace: SYSTEM_NAMESPACE,
      labels: { 'app.kubernetes.io/name': COPY_POD_LABEL_VALUE, [LABEL_DISABLE_INJECTION]: 'true' },
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
          name: 'copy',
          image,
          command: [
            'sh',
            '-c',
            `${CLIENT_BINARY} version && cp ${CLIENT_BINARY} /out/.${NEXT_BINARY}.tmp && mv -f /out/.${NEXT_BINARY}.tmp /out/${NEXT_BINARY}`,
          ],
          resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '256Mi' } },
          volumeMounts: [{ name: 'out', mountPath: '/out' }],
        },
      ],
      // Directory, not DirectoryOrCreate: a folder the node service does not hold (no holder) is not written.
      volumes: [{ name: 'out', hostPath: { path: fdDir, type: 'Directory' } }],
    },
  };
}

/**
 * The one exec of a binary upgrade, in the Mount Pod's client container: the new binary over the old by rename (a
 * running executable cannot be written, it can be replaced), then SIGHUP of the mount process (flush, save handles,
 * exit 1; the supervisor restarts CLIENT_BINARY 1 s later on its fd); then it waits (up to 60 s) until the mount's
 * `.config` names another mount process and prints that `.config` line with the version. Exit 3: no new binary;
 * 4: no mount process; 5: no new process in time. No `$(NAME)` for Kubernetes to expand: an exec is not expanded.
 */
export const BINARY_INSTALL_SCRIPT = `set -u
mp="$JFS_MOUNT_POINT"
[ -f /tmp/${NEXT_BINARY} ] || { echo "no /tmp/${NEXT_BINARY}" >&2; exit 3; }
old=$(sed -n 's/.*"Pid": *\\([0-9]*\\).*/\\1/p' "$mp/.config" | head -n 1)
cp /tmp/${NEXT_BINARY} ${CLIENT_BINARY}.new && chmod 755 ${CLIENT_BINARY}.new && mv -f ${CLIENT_BINARY}.new ${CLIENT_BINARY} && rm -f /tmp/${NEXT_BINARY}
child=
for d in /proc/[0-9]*; do
  p=\${d#/proc/}
  [ "$p" != 1 ] && [ "$(cat "$d/comm" 2>/dev/null)" = juicefs ] && child="$p"
done
[ -n "$child" ] || { echo "no juicefs mount process" >&2; exit 4; }
kill -HUP "$child"
i=0
while [ "$i" -lt 600 ]; do
  now=$(sed -n 's/.*"Pid": *\\([0-9]*\\).*/\\1/p' "$mp/.config" 2>/dev/null | head -n 1)
  if [ -n "$now" ] && [ "$now" != "$old" ]; then
    echo "mount process $old -> $now"
    grep '"Version"' "$mp/.config"
    exit 0
  fi
  sleep 0.1; i=$((i+1))
done
echo "no new mount process within 60 s (was $old)" >&2
exit 5`;

/** The client container of a Mount Pod. */
export const MOUNT_POD_CLIENT = SIDECAR_NAME;

/** The `"Version": "1.3.1+…"` a `.config` line names, when it does. */
export function versionOfConfigLine(out: string): string | undefined {
  return /"Version":\s*"([^"]+)"/.exec(out)?.[1];
}
