/**
 * Numbers on qemu-io command lines, parsed exactly as qemu-io 7.2 does: sizes
 * and offsets with qemu_strtosz (then capped at INT64_MAX), pattern bytes with
 * strtol(…, 0). The project's src/cli/size.ts cannot be used from this layer,
 * and qemu-io's error messages need to know *why* a number was refused
 * ("non-numeric" vs "too large"), which a plain parser does not say.
 */

const UINT64_MAX = (1n << 64n) - 1n;
const INT64_MAX = (1n << 63n) - 1n;
const TWO_64 = 1n << 64n;
/** C's isspace() in the C locale: what strtoull skips. */
const SPACE = /^[ \t\n\v\f\r]*/;
/** Smallest normal double: strtod reports ERANGE below it. */
const DBL_MIN = 2.2250738585072014e-308;

export type SizeResult = { ok: true; value: bigint; warning?: string } | { ok: false; error: 'EINVAL' | 'ERANGE' };

/** strtoull's prefix of `s` in `base` (10 or 16): where it ends, its value, and whether it overflowed. */
function strtoull(s: string, base: 10 | 16): { end: number; value: bigint; overflow: boolean; negative: boolean } | undefined {
  let i = SPACE.exec(s)![0].length;
  let negative = false;
  if (s[i] === '+' || s[i] === '-') negative = s[i++] === '-';
  const digit = base === 10 ? /[0-9]/ : /[0-9a-fA-F]/;
  // "0x" is only a prefix when a hex digit follows; otherwise "0" is the number.
  if (base === 16 && s[i] === '0' && (s[i + 1] === 'x' || s[i + 1] === 'X') && digit.test(s[i + 2] ?? '')) i += 2;
  const start = i;
  while (i < s.length && digit.test(s[i]!)) i++;
  if (i === start) return undefined;
  const value = BigInt(base === 16 ? `0x${s.slice(start, i)}` : s.slice(start, i));
  return { end: i, value, overflow: value > UINT64_MAX, negative };
}

const MULTIPLIER: Record<string, bigint> = {
  B: 1n,
  K: 1n << 10n,
  M: 1n << 20n,
  G: 1n << 30n,
  T: 1n << 40n,
  P: 1n << 50n,
  E: 1n << 60n,
};

/**
 * qemu_strtosz with no end pointer (the whole text must be used), default
 * unit bytes. Its quirks are kept on purpose: a fraction needs a unit other
 * than bytes ("1.5" is refused, "1.5k" is 1536, "1." is 1); the fraction is
 * rounded half up after scaling ("0.0005k" = 1); a hex number with a unit is
 * accepted with a deprecation warning; and a fraction so close to 1 that it
 * rounds to 1.0 as a double scales to nothing (x86's conversion of 2^64),
 * which is why qemu-io reads "0.99999999999999999k" as 0.
 */
export function parseStrtosz(text: string): SizeResult {
  const dec = strtoull(text, 10);
  if (!dec) return { ok: false, error: 'EINVAL' };
  // Overflow is checked before the sign, and reported as too large unless junk follows.
  if (dec.overflow) return dec.end === text.length ? { ok: false, error: 'ERANGE' } : { ok: false, error: 'EINVAL' };
  if (text.slice(0, dec.end).includes('-')) return { ok: false, error: 'EINVAL' };
  let value = dec.value;
  let pos = dec.end;
  let fraction = 0n; // 64-bit fixed point
  let hex = false;
  if (value === 0n && (text[pos] === 'x' || text[pos] === 'X')) {
    const h = strtoull(text, 16)!;
    if (h.overflow) return h.end === text.length ? { ok: false, error: 'ERANGE' } : { ok: false, error: 'EINVAL' };
    value = h.value;
    pos = h.end;
    if (text[pos] === '.') return { ok: false, error: 'EINVAL' };
    hex = true;
  } else if (text[pos] === '.') {
    // strtod on ".digits[exponent]". When it fails (no digit) or reports
    // ERANGE, qemu steps one character past where strtod stopped and keeps
    // no fraction; an exponent that parsed cleanly makes the input invalid.
    const m = /^\.(\d+)([eE][+-]?\d+)?/.exec(text.slice(pos));
    if (!m) pos += 1;
    else {
      const f = Number(`0.${m[1]}${m[2] ?? ''}`);
      const erange = f === Infinity || (/[1-9]/.test(m[1]!) && f < DBL_MIN);
      pos += m[0].length;
      if (erange) pos += 1;
      else if (m[2] !== undefined) return { ok: false, error: 'EINVAL' };
      else fraction = f * 2 ** 64 >= 2 ** 64 ? 0n : BigInt(Math.trunc(f * 2 ** 64));
    }
  }
  const unit = text[pos] === undefined ? undefined : MULTIPLIER[text[pos]!.toUpperCase()];
  let warning: string | undefined;
  let mul = 1n;
  if (unit !== undefined) {
    if (hex) warning = `Using a multiplier suffix on hex numbers is deprecated: ${text}`;
    mul = unit;
    pos += 1;
  }
  if (mul === 1n) {
    if (fraction !== 0n) return { ok: false, error: 'EINVAL' };
  } else {
    const scaled = fraction * mul;
    value = value * mul + (scaled >> 64n) + ((scaled % TWO_64) >> 63n);
    if (value > UINT64_MAX) return pos === text.length ? { ok: false, error: 'ERANGE' } : { ok: false, error: 'EINVAL' };
  }
  if (pos !== text.length) return { ok: false, error: 'EINVAL' };
  return warning === undefined ? { ok: true, value } : { ok: true, value, warning };
}

/** qemu-io's cvtnum: qemu_strtosz, and nothing above INT64_MAX. */
export function cvtnum(text: string): SizeResult {
  const r = parseStrtosz(text);
  if (r.ok && r.value > INT64_MAX) return { ok: false, error: 'ERANGE' };
  return r;
}

/** qemu-io's print_cvtnum_err text (printed to stdout). */
export function cvtnumError(error: 'EINVAL' | 'ERANGE', arg: string): string {
  return error === 'ERANGE'
    ? `Parsing error: argument too large -- ${arg}\n`
    : `Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- ${arg}\n`;
}

/**
 * strtol(arg, &end, 0) must use all of arg and give 0…255, or qemu-io says
 * "X is not a valid pattern byte". Base 0: "0x" hex, leading "0" octal.
 */
export function parsePattern(arg: string): number | undefined {
  const v = strtolWhole(arg);
  return v === undefined || v < 0n || v > 255n ? undefined : Number(v);
}

/**
 * strtol(arg, &end, 0) when all of `arg` must be used: undefined if
 * something is left over. (strtol's clamping at LONG_MAX is not modelled:
 * the callers refuse such values anyway or cannot tell.)
 */
export function strtolWhole(arg: string): bigint | undefined {
  const m = /^[ \t\n\v\f\r]*([+-]?)(0[xX](?=[0-9a-fA-F])[0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$/.exec(arg);
  if (!m) return arg.length === 0 ? 0n : undefined; // strtol("") is 0 with nothing left over
  const body = m[2]!;
  let v: bigint;
  if (/^0[xX]/.test(body)) v = BigInt(body);
  else if (body.length > 1 && body.startsWith('0')) v = BigInt(`0o${body.slice(1)}`);
  else v = BigInt(body);
  return m[1] === '-' ? -v : v;
}
