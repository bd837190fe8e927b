/**
 * Sizes as qemu-img 7.2 reads them on its command line and in -o size=…
 * (qemu_strtosz's documented behaviour): optional leading blanks and '+', a
 * decimal integer or 0x-hex, an optional fraction (decimal only, needs a
 * leading digit and a unit other than b), an optional unit b/k/M/G/T/P/E in
 * either case, nothing after. Values are exact (bigint): qemu's range checks
 * are on 64-bit integers, beyond what a JavaScript number holds exactly.
 * src/cli/size.ts is the project's general size parser; this one exists to
 * reproduce qemu-img's acceptance and error messages exactly.
 */
const UNIT_SHIFT: Record<string, bigint> = { b: 0n, k: 10n, m: 20n, g: 30n, t: 40n, p: 50n, e: 60n };
export const UINT64_MAX = (1n << 64n) - 1n;
export const INT64_MAX = (1n << 63n) - 1n;

export type SizeParse =
  | { ok: true; value: bigint; hexWithSuffix: boolean }
  | { ok: false; reason: 'invalid' | 'range' };

export function parseQemuSize(text: string): SizeParse {
  const m = /^[ \t\n\v\f\r]*\+?(?:(0[xX][0-9a-fA-F]+)|(\d+)(?:\.(\d*))?)([bBkKmMgGtTpPeE]?)$/.exec(text);
  if (!m) return { ok: false, reason: 'invalid' };
  const [, hex, dec, frac, unitRaw] = m;
  const unit = (unitRaw ?? '').toLowerCase();
  const shift = UNIT_SHIFT[unit === '' ? 'b' : unit]!;
  const intPart = hex !== undefined ? BigInt(hex) : BigInt(dec!);
  let fracPart = 0n;
  if (frac !== undefined) {
    // A fraction needs a unit that is not plain bytes.
    if (unit === '' || unit === 'b') return { ok: false, reason: 'invalid' };
    // qemu multiplies the fraction (a double) by the unit and truncates.
    fracPart = BigInt(Math.floor(Number(`0.${frac || '0'}`) * 2 ** Number(shift)));
  }
  const value = (intPart << shift) + fracPart;
  if (value > UINT64_MAX) return { ok: false, reason: 'range' };
  return { ok: true, value, hexWithSuffix: hex !== undefined && unit !== '' };
}

/** qemu's two-line complaint for a size parameter in an -o list. */
export function sizeParamError(name: string): string {
  return (
    `Parameter '${name}' expects a non-negative number below 2^64\n` +
    'Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n' +
    'and exabytes, respectively.'
  );
}
