// Which change of a running Mount Pod's settings can reach it without a restart of its mount (issue 13 item 5;
// reference issues #1149, #681), and why the others cannot. Pure: the client container as the Mount Pod runs it and
// as the settings now plan it (both from planMountPod / buildSidecar), compared field by field.
//
// What the client allows: a new juicefs process can take the FUSE connection over (fd + saved handles) whatever its
// own flags are, but the kernel side of the connection was fixed at mount time (read-only, allow_other, the fsname and
// the directory it serves: subdir, the volume itself). What Kubernetes allows: of a running pod's container only the
// image may change (and resources through /resize, which is not an upgrade); command and env are immutable. The
// rollout therefore carries image changes (mount-pod-binary, mount-pod-recreate in place); everything else is refused
// with its reason, never applied behind the user's back.
import type { V1Container, V1EnvVar } from '@kubernetes/client-node';
import { MOUNT_POINT_ENV } from '../contract/keys.js';

export type SettingsChange =
  | { smooth: true; image?: { from: string; to: string } }
  | { smooth: false; reasons: string[]; image?: { from: string; to: string } };

/** `juicefs mount` flags the kernel fixed at mount time: no handover can change them on a live connection. */
const KERNEL_FLAGS = [/^--read-only$/, /^--subdir=/, /^-o$/, /^--?o=/, /^--allow-other/, /^--enable-xattr/];

const flagName = (a: string) => a.split('=')[0];
const envKey = (e: V1EnvVar) => JSON.stringify([e.name, e.value ?? null, e.valueFrom ?? null]);

function setDiff(a: string[], b: string[]): { added: string[]; removed: string[] } {
  const sa = new Set(a);
  const sb = new Set(b);
  return { added: b.filter((x) => !sa.has(x)), removed: a.filter((x) => !sb.has(x)) };
}

export function classifyMountPodChange(running: V1Container, planned: V1Container): SettingsChange {
  const reasons: string[] = [];
  const image = running.image !== planned.image ? { from: running.image ?? '', to: planned.image ?? '' } : undefined;
  const args = setDiff(running.command ?? [], planned.command ?? []);
  const changed = [...args.added, ...args.removed];
  if (changed.length) {
    const kernel = changed.filter((a) => KERNEL_FLAGS.some((re) => re.test(a)));
    if (kernel.length)
      reasons.push(
        `mount options ${[...new Set(kernel.map(flagName))].join(', ')} were fixed by the kernel when the volume was ` +
          'mounted: the FUSE connection the apps use cannot take them; only a new mount (the apps re-bound) can',
      );
    const rest = changed.filter((a) => !kernel.includes(a));
    if (rest.length)
      reasons.push(
        `mount options ${[...new Set(rest.map(flagName))].join(', ')}: the client's command line; a running pod's ` +
          'command cannot change (a Mount Pod re-created with it in the same fd folder could take the connection ' +
          'over, which the rollout does not do yet)',
      );
  }
  // The mount point is named by the settings' hash: the Mount Pod's identity, which an upgrade keeps, not a setting.
  const envOf = (c: V1Container) => (c.env ?? []).filter((e) => e.name !== MOUNT_POINT_ENV).map(envKey);
  const env = setDiff(envOf(running), envOf(planned));
  if (env.added.length || env.removed.length) {
    const names = [...new Set([...env.added, ...env.removed].map((k) => (JSON.parse(k) as string[])[0]))];
    reasons.push(`env ${names.join(', ')}: a running container's env cannot change (same as command)`);
  }
  if (JSON.stringify(running.resources ?? {}) !== JSON.stringify(planned.resources ?? {}))
    reasons.push('resources: changed through the pod /resize subresource, not by an upgrade');
  if (
    JSON.stringify(running.volumeMounts ?? []) !== JSON.stringify(planned.volumeMounts ?? []) ||
    JSON.stringify(running.securityContext ?? {}) !== JSON.stringify(planned.securityContext ?? {})
  )
    reasons.push('volumes or security context: immutable in a running pod');
  return reasons.length ? { smooth: false, reasons, image } : { smooth: true, image };
}
