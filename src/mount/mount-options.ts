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
    if (key.includes('_')) argv.push('-o', text);
    else argv.push(`--${text}`);
  }
  return argv;
}
