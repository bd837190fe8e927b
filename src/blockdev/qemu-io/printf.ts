/**
 * The few printf conversions qemu-io's reports use, as glibc prints them.
 * JavaScript's toFixed rounds exact ties away from zero (1.0625 → "1.063"),
 * glibc rounds ties to even ("1.062"); qemu-io prints sizes such as 1088
 * bytes as "1.062 KiB", so we round the exact binary value ourselves.
 */

/** printf("%.{prec}f", x) for x ≥ 0 (negative zero prints as "0…"). */
export function fixed(x: number, prec: number): string {
  if (Number.isNaN(x)) return '-nan'; // x86's 0.0/0.0 has its sign bit set
  if (x === Infinity) return 'inf';
  const scaled = scaledRound(x, prec).toString().padStart(prec + 1, '0');
  if (prec === 0) return scaled;
  return `${scaled.slice(0, -prec)}.${scaled.slice(-prec)}`;
}

/** round(x × 10^prec), ties to even, computed exactly from x's binary form. */
function scaledRound(x: number, prec: number): bigint {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  const biased = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(view.getUint32(4));
  let exp = -1074; // subnormals
  if (biased !== 0) {
    mant |= 1n << 52n;
    exp = biased - 1075;
  }
  // x = mant × 2^exp exactly.
  const num = mant * 10n ** BigInt(prec);
  if (exp >= 0) return num << BigInt(exp);
  const den = 1n << BigInt(-exp);
  const q = num / den;
  const twice = (num % den) * 2n;
  if (twice > den || (twice === den && q % 2n === 1n)) return q + 1n;
  return q;
}

/** printf("%0{width}.{prec}f", x) for x ≥ 0. */
export function zeroPadded(x: number, width: number, prec: number): string {
  return fixed(x, prec).padStart(width, '0');
}

/** printf("%02u", n). */
export function two(n: number): string {
  return String(n).padStart(2, '0');
}
