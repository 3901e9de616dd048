// Mount options from PV spec.mountOptions, volumeAttributes.mountOptions and
// the ConfigMap patch, turned into juicefs argv entries. Each option becomes
// one argv element, so nothing here is ever seen by a shell; options that are
// not of the form key[=value] with a plain key are refused, not passed on.

export interface ParsedOption {
  key: string;
  value?: string;
}

import { hasControlCharacters } from '../contract/names.js';

const OPTION = /^([A-Za-z0-9_][A-Za-z0-9_.-]*)(?:=(.*))?$/s;

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

/**
 * How `mount.juicefs -o …` (the form the reference driver runs, juicefs's
 * cmd/main.go `handleSysMountArgs`) reads an option, which users' PVs and
 * StorageClasses are written for: a key that names a flag of `juicefs mount`
 * (longer than one letter) becomes that flag; the old FUSE-style names of three
 * cache flags are translated; the system options mount(8) adds are dropped;
 * everything else is a FUSE option (`nonempty`, `allow_other`, `fsname=…`,
 * `subtype=…`). Unlike mount.juicefs, a dashed key that names no juicefs flag
 * is refused at admission: FUSE options have no dash, so it is a typo of a flag,
 * and the kernel would refuse the mount later with a vaguer error.
 */
export type OptionKind = 'flag' | 'fuse' | 'dropped' | 'unknown';

/** FUSE-style names of juicefs flags. */
export const FLAG_ALIASES: Readonly<Record<string, string>> = {
  attrcacheto: 'attr-cache',
  entrycacheto: 'entry-cache',
  direntrycacheto: 'dir-entry-cache',
};

/**
 * Dropped as mount.juicefs drops them; `background` (and `d`) would also fork
 * the client away from the container's main process, which would then exit.
 */
export const DROPPED_OPTIONS: ReadonlySet<string> = new Set([
  '_netdev',
  'rw',
  'defaults',
  'remount',
  'background',
  'd',
]);

export function optionKind(key: string): OptionKind {
  if (DROPPED_OPTIONS.has(key)) return 'dropped';
  const flag = FLAG_ALIASES[key] ?? key;
  if (flag.length > 1 && JUICEFS_MOUNT_FLAGS.has(flag)) return 'flag';
  return key.includes('-') ? 'unknown' : 'fuse';
}

/** An option under the name juicefs knows it by (aliases translated). */
export function canonicalOption(opt: ParsedOption): ParsedOption {
  const alias = FLAG_ALIASES[opt.key];
  return alias ? { ...opt, key: alias } : opt;
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

// `$$` keeps Kubernetes' $(VAR) expansion from reading env (credentials) into an option.
function optionText({ key, value }: ParsedOption): string {
  return (value === undefined ? key : `${key}=${value}`).replaceAll('$', '$$$$');
}

/** Renders options as `--key[=value]` flags (for a command whose every option is a flag, e.g. juicefs format). */
export function renderFlags(options: ParsedOption[]): string[] {
  return options.map((o) => `--${optionText(o)}`);
}

/**
 * Renders options for `juicefs mount` (optionKind): flags as `--key[=value]`,
 * FUSE options joined into one `-o`. `debug` is both, as with mount.juicefs:
 * juicefs's debug log and FUSE's.
 */
export function renderOptions(options: ParsedOption[]): string[] {
  const argv: string[] = [];
  const fuse: string[] = [];
  for (const opt of options) {
    const { key } = opt;
    const text = optionText(opt);
    const kind = optionKind(key);
    if (kind === 'fuse' || key === 'debug') fuse.push(text);
    if (kind === 'flag') argv.push(`--${text}`);
  }
  if (fuse.length) argv.push('-o', fuse.join(','));
  return argv;
}
