// Mount options from PV spec.mountOptions, volumeAttributes.mountOptions and
// the ConfigMap patch, turned into juicefs argv entries. Each option becomes
// one argv element, so nothing here is ever seen by a shell; options that are
// not of the form key[=value] with a plain key are refused, not passed on.

export interface ParsedOption {
  key: string;
  value?: string;
}

import { hasControlCharacters } from '../contract/names.js';

const OPTION = /^([A-Za-z0-9][A-Za-z0-9_.-]*)(?:=(.*))?$/s;

/** Parses one option; returns an error text when it is not a plain key[=value]. */
export function parseOption(text: string): ParsedOption | string {
  const trimmed = text.trim();
  const stripped = trimmed.replace(/^--?/, '');
  const m = OPTION.exec(stripped);
  if (!m) return `mount option "${text}" is not of the form key[=value]`;
  if (m[2] !== undefined && hasControlCharacters(m[2]))
    return `mount option "${m[1]}" has control characters in its value`;
  return m[2] === undefined ? { key: m[1] } : { key: m[1], value: m[2] };
}

/** Splits the comma-separated `mountOptions` attribute (a CSI Driver convention). */
export function splitOptionList(text: string | undefined): string[] {
  if (!text) return [];
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/**
 * The flags of `juicefs mount` (Community Edition, the union over v1.0–v1.4 of
 * cmd/flags.go, cmd/mount.go and cmd/mount_unix.go, global flags included).
 * juicefs exits with "unknown option" on any other `--flag`, so an option that
 * would render as one is refused at admission instead of crash-looping the
 * client.
 */
export const JUICEFS_MOUNT_FLAGS: ReadonlySet<string> = new Set(
  (
    'all-squash atime-mode attr-cache background backup-meta backup-skip-trash bucket buffer-size cache-dir ' +
    'cache-eviction cache-expire cache-items cache-large-write cache-mode cache-partial-only cache-scan-interval ' +
    'cache-size check-storage consul custom-labels d debug dir-entry-cache disable-transparent-hugepage ' +
    'download-limit enable-cap enable-ioctl enable-selinux enable-xattr entry-cache f fast-statfs force foreground ' +
    'free-space-ratio get-timeout heartbeat hide-internal io-retries log log-id log-level max-deletes max-downloads ' +
    'max-fuse-io max-readahead max-stage-write max-uploads metrics negative-entry-cache network-interfaces no-agent ' +
    'no-bgjob no-color no-syslog no-usage-report non-default-permission o open-cache open-cache-limit prefetch ' +
    'prefix-internal put-timeout pyroscope q quiet read-only readdir-cache root-squash skip-dir-mtime skip-dir-nlink ' +
    'sort-dir storage storage-class subdir tag trace umask update-fstab upload-delay upload-hours upload-limit v ' +
    'verbose verify-cache-checksum writeback writeback-threshold-size'
  ).split(' '),
);

/** Whether an option renders as a FUSE option (`-o key[=value]`) rather than a juicefs flag. */
export function isFuseOption(key: string): boolean {
  return key.includes('_');
}

/** Options handled by the injector itself rather than passed through. */
export const READ_ONLY_KEYS = new Set(['ro', 'read-only']);
export const SUBDIR_KEY = 'subdir';
export const CACHE_DIR_KEY = 'cache-dir';
export const METRICS_KEY = 'metrics';

/**
 * Merges option lists: a later occurrence of a key replaces an earlier one, in
 * the earlier one's position, so the result is stable.
 */
export function mergeOptions(lists: ParsedOption[][]): ParsedOption[] {
  const out: ParsedOption[] = [];
  const index = new Map<string, number>();
  for (const list of lists) {
    for (const opt of list) {
      const at = index.get(opt.key);
      if (at === undefined) {
        index.set(opt.key, out.length);
        out.push(opt);
      } else out[at] = opt;
    }
  }
  return out;
}

/**
 * Renders options for `juicefs mount`: JuiceFS flags (dashed keys) as
 * `--key[=value]`, FUSE options (keys with an underscore, e.g. allow_other)
 * through `-o`.
 */
export function renderOptions(options: ParsedOption[]): string[] {
  const argv: string[] = [];
  for (const { key, value } of options) {
    // `$$` keeps Kubernetes' $(VAR) expansion from reading env (credentials) into an option.
    const text = (value === undefined ? key : `${key}=${value}`).replaceAll('$', '$$$$');
    if (isFuseOption(key)) argv.push('-o', text);
    else argv.push(`--${text}`);
  }
  return argv;
}
