/**
 * printf-style number formatting as glibc does it, for output that must match
 * qemu-img byte for byte. JavaScript's toFixed/toPrecision round exact ties
 * away from zero ("0.125" → "0.13"); glibc rounds the exact binary value and
 * breaks exact ties to even ("0.12"). So we expand the double exactly (every
 * double is a finite decimal) and round the digits ourselves.
 */

/** The exact decimal expansion of a finite, non-negative double: value = 0.digits × 10^exp10, no leading zeros. */
function exactDecimal(x: number): { digits: string; exp10: number } {
  if (x === 0) return { digits: '0', exp10: 1 };
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let e2: number;
  if (biased === 0) e2 = -1074;
  else {
    mant |= 1n << 52n;
    e2 = biased - 1075;
  }
  // value = mant × 2^e2 = (mant × 5^k) / 10^k with k = -e2 when e2 < 0.
  let intDigits: string;
  let fracLen: number;
  if (e2 >= 0) {
    intDigits = (mant << BigInt(e2)).toString();
    fracLen = 0;
  } else {
    intDigits = (mant * 5n ** BigInt(-e2)).toString();
    fracLen = -e2;
  }
  // intDigits × 10^-fracLen; normalise to 0.d1d2… × 10^exp10.
  const stripped = intDigits.replace(/0+$/, '');
  const exp10 = intDigits.length - fracLen;
  return { digits: stripped, exp10 };
}

/**
 * Rounds a digit string to `keep` digits, ties to even. On a carry out of the
 * first digit ("999" → "1000") the result has keep + 1 digits and carry is set.
 */
function roundDigits(digits: string, keep: number): { digits: string; carry: boolean } {
  if (keep < 0) return { digits: '', carry: false };
  if (digits.length <= keep) return { digits: digits.padEnd(keep, '0'), carry: false };
  const head = digits.slice(0, keep);
  const rest = digits.slice(keep);
  const first = rest.charCodeAt(0) - 48;
  const exactHalf = first === 5 && /^5(0*)$/.test(rest);
  const lastEven = keep === 0 ? true : (head.charCodeAt(keep - 1) - 48) % 2 === 0;
  const up = first > 5 || (first === 5 && !exactHalf) || (exactHalf && !lastEven);
  if (!up) return { digits: head, carry: false };
  if (keep === 0) return { digits: '1', carry: true };
  const n = (BigInt(head) + 1n).toString().padStart(keep, '0');
  return { digits: n, carry: n.length > keep };
}

/** printf("%.{prec}f", x) for finite x ≥ 0. */
export function formatFixed(x: number, prec: number): string {
  const { digits, exp10 } = exactDecimal(x);
  // Digits before the point: exp10 (may be ≤ 0). Keep exp10 + prec digits.
  const lead = Math.max(0, -exp10);
  const padded = '0'.repeat(lead) + digits;
  const intLen = Math.max(exp10, 0);
  const r = roundDigits(padded, intLen + prec);
  const all = r.digits;
  const iLen = r.carry ? intLen + 1 : intLen;
  const intPart = iLen === 0 ? '0' : all.slice(0, iLen).replace(/^0+(?=\d)/, '');
  return prec === 0 ? intPart : `${intPart}.${all.slice(iLen, iLen + prec)}`;
}

/** printf("%.{prec}g", x) for finite x ≥ 0 (no '#' flag: trailing zeros dropped). */
export function formatG(x: number, prec = 6): string {
  const p = prec === 0 ? 1 : prec;
  if (x === 0) return '0';
  const { digits, exp10 } = exactDecimal(x);
  const r = roundDigits(digits, p);
  // Exponent X of the %e form after rounding.
  const X = exp10 - 1 + (r.carry ? 1 : 0);
  const sig = r.digits.slice(0, p);
  const trim = (s: string) => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);
  if (X < -4 || X >= p) {
    const mant = trim(sig.length > 1 ? `${sig[0]}.${sig.slice(1)}` : sig);
    const ex = Math.abs(X).toString().padStart(2, '0');
    return `${mant}e${X < 0 ? '-' : '+'}${ex}`;
  }
  return trim(formatFixed(x, p - 1 - X));
}

const SIZE_SUFFIXES = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei'];

/**
 * qemu's human size ("196 KiB", "1.46 GiB", "1e+03 KiB"): three significant
 * digits in the largest binary unit, switching unit once the number would
 * reach 1000 of the smaller one (util/cutils.c size_to_str's documented rule).
 */
export function sizeToStr(bytes: number): string {
  let unit = 0;
  if (bytes > 0) {
    // floor(log2(bytes × 1024/1000)), taken from the double's exponent bits so
    // powers of two do not wobble the way Math.log2 can.
    const y = bytes / (1000 / 1024);
    const view = new DataView(new ArrayBuffer(8));
    view.setFloat64(0, y);
    const log2 = ((view.getUint32(0) >>> 20) & 0x7ff) - 1023;
    unit = Math.min(SIZE_SUFFIXES.length - 1, Math.trunc(log2 / 10));
  }
  return `${formatG(bytes / 2 ** (unit * 10), 3)} ${SIZE_SUFFIXES[unit]}B`;
}

/** printf("%#x", n): "0" for zero, else 0x-prefixed lowercase hex. */
export function altHex(n: number): string {
  return n === 0 ? '0' : `0x${n.toString(16)}`;
}
