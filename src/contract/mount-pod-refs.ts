// How a Mount Pod names what it serves: its volume label and one reference annotation per target (the
// compatibility contract). The node service writes them; `kubectl jfs` and the dashboard read them back.
import type { V1Pod } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { MOUNT_POD_REF_PREFIX } from './keys.js';
import { dnsName, LABEL_VALUE_MAX } from './names.js';

/** Annotation key of one reference: `juicefs-` + sha256(target path), cut to 63 characters. */
export function referenceKey(targetPath: string): string {
  return `${MOUNT_POD_REF_PREFIX}${createHash('sha256').update(targetPath).digest('hex')}`.slice(0, LABEL_VALUE_MAX);
}

/** The targets a Mount Pod's annotations reference. */
export function referencesOf(pod: V1Pod): string[] {
  return Object.entries(pod.metadata?.annotations ?? {})
    .filter(([k, v]) => k === referenceKey(v))
    .map(([, v]) => v);
}

/** The `volume-id` label value of a PV's Mount Pods. */
export function volumeLabel(pvName: string): string {
  return dnsName(pvName, LABEL_VALUE_MAX);
}

/** The app pod UID in a kubelet target path (`…/pods/<uid>/volumes/…`), or undefined. */
export function podUidOfTarget(targetPath: string): string | undefined {
  return /\/pods\/([^/]+)\/volumes\//.exec(targetPath)?.[1];
}
