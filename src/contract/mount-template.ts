// The reference driver's templates of a volume's client, `${VOLUME_ID}`, `${SUB_PATH}` (and `${VOLUME_NAME}`,
// `${MOUNT_POINT}`, refused here with the reason), in the cache folders, the cache PVC names and `juicefs/host-path`,
// so that one StorageClass or ConfigMap entry can give each volume a folder or a PVC of its own. Pure.

export class MountTemplateError extends Error {
  override name = 'MountTemplateError';
}

export interface MountTemplateValues {
  /** The PV's name (its CSI volumeHandle for the PVs the controller creates). */
  volumeId: string;
  /** The subdirectory of the JuiceFS volume that is mounted, '' for its root. */
  subPath: string;
}

const PLACEHOLDER = /\$\{([A-Z_]+)\}/g;

const REFUSED: Record<string, string> = {
  VOLUME_NAME:
    "is the JuiceFS name from the volume's Secret, whose values the injector never reads into a pod spec; use ${VOLUME_ID}",
  MOUNT_POINT: 'is the mount itself: a cache or host folder inside it would put the volume into itself',
};

/** Whether a text holds a placeholder of this syntax. */
export function hasMountTemplate(text: string): boolean {
  return /\$\{[A-Z_]+\}/.test(text);
}

/**
 * Renders `${VOLUME_ID}` and `${SUB_PATH}`; throws MountTemplateError naming any other `${NAME}` (the reference
 * driver leaves an unknown one as it is, which would reach the pod as a literal folder name).
 */
export function renderMountTemplate(text: string, values: MountTemplateValues): string {
  return text.replace(PLACEHOLDER, (whole, name: string) => {
    if (name === 'VOLUME_ID') return values.volumeId;
    if (name === 'SUB_PATH') return values.subPath;
    const why = REFUSED[name] ?? 'is no placeholder of a volume (known: ${VOLUME_ID}, ${SUB_PATH})';
    throw new MountTemplateError(`"${text}": ${whole} ${why}`);
  });
}
