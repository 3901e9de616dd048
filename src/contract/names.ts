// Names and text the API server and the juicefs CLI accept: one control-character
// rule, one sanitiser for names and label values derived from other names.
import { createHash } from 'node:crypto';

/** Control characters (newlines included, DEL too) have no place in a path, an option or a name. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;

export function hasControlCharacters(text: string): boolean {
  return CONTROL.test(text);
}

/**
 * `text` made a DNS name of at most `max` characters: lower case, anything
 * else than [a-z0-9-] (and `.` where `dots`) becomes `-`; a text that does
 * not fit is cut and ends in a hash of the whole, so that cut names stay
 * distinct. No leading or trailing `-` or `.`.
 */
export function dnsName(text: string, max: number, { dots = false }: { dots?: boolean } = {}): string {
  const clean = text.toLowerCase().replace(dots ? /[^a-z0-9.-]/g : /[^a-z0-9-]/g, '-');
  if (clean.length <= max) return clean.replace(/^[-.]+|[-.]+$/g, '');
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 8);
  return `${clean.slice(0, max - 9).replace(/^[-.]+|[-.]+$/g, '')}-${hash}`;
}

/** Maximum length of a label value, and of a pod name used as a hostname. */
export const LABEL_VALUE_MAX = 63;
/** Maximum length of most object names (DNS subdomain), e.g. a Secret's. */
export const OBJECT_NAME_MAX = 253;

/** A label value derived from other names (`dnsName` of at most 63 characters, dots kept). */
export function labelValue(text: string): string {
  return dnsName(text, LABEL_VALUE_MAX, { dots: true });
}
