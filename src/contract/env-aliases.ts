// The reference driver's environment names for settings this project reads
// under its own names: a Deployment or DaemonSet carried over from the
// reference keeps meaning the same (docs/migration.md). Ours wins where both
// are set; of several aliases, the first set one.

export const ENV_ALIASES: Readonly<Record<string, readonly string[]>> = {
  // The reference reads JUICEFS_CE_MOUNT_IMAGE for Community Edition volumes and, before it, JUICEFS_MOUNT_IMAGE
  // for all.
  JFS_MOUNT_IMAGE: ['JUICEFS_CE_MOUNT_IMAGE', 'JUICEFS_MOUNT_IMAGE'],
};

/** The variables to add to `env` so that our names see what the reference's names set (pure). */
export function aliasedEnv(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [ours, aliases] of Object.entries(ENV_ALIASES)) {
    if (env[ours]) continue;
    const from = aliases.find((a) => env[a]);
    if (from) out[ours] = env[from]!;
  }
  return out;
}
