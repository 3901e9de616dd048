// Kubernetes resource quantities ("500m", "1Gi", "2", "1e3"), parsed exactly:
// a quantity is a fraction of BigInts, so that bounds are compared as the API
// server compares them (1.0000000000000001 > 1, 1e3 = 1k, 999999999999999999Ei
// is a finite number) and "≤ 0 removes the entry" is decided without rounding.
// Only what a resource quantity may legally be is accepted.

const QUANTITY = /^([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/;

/** Decimal exponent of each decimal suffix; binary ones are powers of two. */
const DECIMAL: Record<string, number> = { '': 0, m: -3, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };
const BINARY: Record<string, bigint> = { Ki: 10n, Mi: 20n, Gi: 30n, Ti: 40n, Pi: 50n, Ei: 60n };

/** An exponent this large is no resource (and 10^it would be costly to build). */
const MAX_EXPONENT = 1000;

/** value = num / den, den > 0. */
export interface Quantity {
  num: bigint;
  den: bigint;
}

/** The exact value of a quantity, or undefined when the text is not a quantity. */
export function parseQuantity(text: string): Quantity | undefined {
  const m = QUANTITY.exec(text.trim());
  if (!m) return undefined;
  const [, sign, number, suffix = ''] = m;
  const [whole, fraction = ''] = number.split('.');
  let num = BigInt(`${whole}${fraction}` || '0');
  let exponent = -fraction.length;
  if (sign === '-') num = -num;
  // `Ei` is a binary suffix, not an exponent (a float parse once read it as 10^NaN, above no bound).
  if (/^[eE][+-]?[0-9]/.test(suffix)) exponent += Number(suffix.slice(1));
  else if (suffix in DECIMAL) exponent += DECIMAL[suffix];
  else num *= 2n ** BINARY[suffix];
  if (Math.abs(exponent) > MAX_EXPONENT) return undefined;
  return exponent >= 0 ? { num: num * 10n ** BigInt(exponent), den: 1n } : { num, den: 10n ** BigInt(-exponent) };
}

/** A storage quantity in whole bytes, rounded up; undefined when the text is no quantity or not above zero. */
export function quantityBytes(text: string): number | undefined {
  const q = parseQuantity(text);
  if (!q || q.num <= 0n) return undefined;
  return Number((q.num + q.den - 1n) / q.den);
}

/** Whether the text is a quantity. */
export function isQuantity(text: string): boolean {
  return parseQuantity(text) !== undefined;
}

/** -1, 0 or 1 as a < b, a = b, a > b (exactly). */
export function compareQuantities(a: Quantity, b: Quantity): -1 | 0 | 1 {
  const l = a.num * b.den;
  const r = b.num * a.den;
  return l < r ? -1 : l > r ? 1 : 0;
}

/** Whether a quantity is above zero. */
export function isPositive(q: Quantity): boolean {
  return q.num > 0n;
}

const DECIMAL_SUFFIX: Record<number, string> = {
  18: 'E',
  15: 'P',
  12: 'T',
  9: 'G',
  6: 'M',
  3: 'k',
  0: '',
  [-3]: 'm',
  [-6]: 'u',
  [-9]: 'n',
};

/**
 * The text the API server stores for a quantity (its canonical form), so that what we emit equals what is read back:
 * `1000m` → `1`, `1024Mi` → `1Gi`, `1500m` stays. Binary suffixes stay binary while the value is a whole multiple of
 * 1 Ki; exponent forms (`1e3`) are left as written. Undefined when the text is not a quantity.
 */
export function canonicalQuantity(text: string): string | undefined {
  const q = parseQuantity(text);
  if (!q) return undefined;
  const suffix = QUANTITY.exec(text.trim())?.[3] ?? '';
  if (/^[eE]/.test(suffix)) return text.trim();
  const negative = q.num < 0n;
  const abs = negative ? -q.num : q.num;
  const sign = negative ? '-' : '';
  if (suffix in BINARY && abs % q.den === 0n && abs / q.den >= 1024n) {
    const whole = abs / q.den;
    for (const [name, bits] of Object.entries(BINARY).reverse())
      if (whole % 2n ** bits === 0n) return `${sign}${whole / 2n ** bits}${name}`;
  }
  // Decimal: rounded up to nano units (the API server's precision), with the largest exponent that leaves it whole.
  const nano = (abs * 1_000_000_000n + q.den - 1n) / q.den;
  if (nano === 0n) return '0';
  for (const e of [18, 15, 12, 9, 6, 3, 0, -3, -6]) {
    const unit = 10n ** BigInt(e + 9);
    if (nano % unit === 0n) return `${sign}${nano / unit}${DECIMAL_SUFFIX[e]}`;
  }
  return `${sign}${nano}n`;
}
