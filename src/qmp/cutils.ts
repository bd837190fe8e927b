/**
 * QEMU's string-to-number helpers (util/cutils.c) as the keyval visitor
 * uses them: qemu_strtoi64 and qemu_strtou64 with base 0, qemu_strtosz and
 * qemu_strtod_finite, each required to consume the whole string. They
 * return undefined where QEMU returns an error (-EINVAL or -ERANGE).
 */

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
const UINT64_MAX = (1n << 64n) - 1n;

/** C isspace in the C locale: what strtol and strtod skip first. */
const SPACE = /^[ \t\n\v\f\r]*/;

interface Strto {
  /** The magnitude read and its sign. */
  negative: boolean;
  magnitude: bigint;
  /** Index after the last character used; 0 when nothing was converted. */
  end: number;
}

/** The digits part of strtoll/strtoull for base 0, 10 or 16. */
function strtoCore(s: string, base: 0 | 10 | 16): Strto {
  let i = SPACE.exec(s)![0].length;
  let negative = false;
  if (s[i] === '+' || s[i] === '-') negative = s[i++] === '-';
  let radix: number = base;
  const hexPrefix = s[i] === '0' && (s[i + 1] === 'x' || s[i + 1] === 'X') && /[0-9a-fA-F]/.test(s[i + 2] ?? '');
  if ((base === 0 || base === 16) && hexPrefix) {
    radix = 16;
    i += 2;
  } else if (base === 0) radix = s[i] === '0' ? 8 : 10;
  const digits = radix === 16 ? /^[0-9a-fA-F]+/ : radix === 8 ? /^[0-7]+/ : /^[0-9]+/;
  const m = digits.exec(s.slice(i));
  if (!m) return { negative, magnitude: 0n, end: 0 };
  const prefix = radix === 16 ? '0x' : radix === 8 ? '0o' : '';
  return { negative, magnitude: BigInt(prefix + m[0]), end: i + m[0].length };
}

/** qemu_strtoi64(s, NULL, 0): decimal, 0x hex or 0 octal, optional sign and leading blanks, within int64. */
export function strtoi64(s: string): bigint | undefined {
  const r = strtoCore(s, 0);
  if (r.end === 0 || r.end !== s.length) return undefined;
  const v = r.negative ? -r.magnitude : r.magnitude;
  return v < INT64_MIN || v > INT64_MAX ? undefined : v;
}

/** strtoull: a negative number wraps modulo 2^64 (no error); past UINT64_MAX is ERANGE. */
function strtoull(s: string, base: 10 | 16 | 0): { value: bigint; end: number; range: boolean } | undefined {
  const r = strtoCore(s, base);
  if (r.end === 0) return undefined;
  if (r.magnitude > UINT64_MAX) return { value: UINT64_MAX, end: r.end, range: true };
  return { value: r.negative ? (-r.magnitude) & UINT64_MAX : r.magnitude, end: r.end, range: false };
}

/** qemu_strtou64(s, NULL, 0): as strtoi64, but "-1" is 2^64-1, as strtoull makes it. */
export function strtou64(s: string): bigint | undefined {
  const r = strtoull(s, 0);
  return r && !r.range && r.end === s.length ? r.value : undefined;
}

const DECIMAL_FLOAT = /^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?/;
const HEX_FLOAT = /^([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?[0-9]+))?/;
const SPECIAL_FLOAT = /^[+-]?(?:inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?)/i;

/** strtod's longest prefix: value and end, undefined if none; overflow and underflow are flagged as ERANGE. */
function strtod(s: string): { value: number; end: number; range: boolean } | undefined {
  const lead = SPACE.exec(s)![0].length;
  const rest = s.slice(lead);
  let value: number;
  let text: string;
  const hex = HEX_FLOAT.exec(rest);
  if (hex && (hex[2]! + (hex[3] ?? '')).length > 0) {
    text = hex[0];
    const frac = hex[3] ?? '';
    const mantissa = BigInt(`0x${hex[2]}${frac}`);
    value = Number(mantissa) * 2 ** (Number(hex[4] ?? '0') - 4 * frac.length);
    if (hex[1] === '-') value = -value;
  } else {
    const m = DECIMAL_FLOAT.exec(rest) ?? SPECIAL_FLOAT.exec(rest);
    if (!m) return undefined;
    text = m[0];
    value = /n/i.test(text) && !/inf/i.test(text) ? NaN : Number(text.replace(/^([+-]?)inf(inity)?$/i, '$1Infinity'));
  }
  const nonzero = /[1-9a-fA-F]/.test(text.replace(/[pPeE].*$/, '').replace(/^[+-]?0[xX]/, ''));
  const special = SPECIAL_FLOAT.test(rest) && !hex;
  // glibc reports ERANGE for overflow to infinity and for results that underflow (zero or subnormal).
  const range = !special && (!Number.isFinite(value) || (nonzero && Math.abs(value) < 2 ** -1022));
  return { value, end: lead + text.length, range };
}

/** qemu_strtod_finite(s, NULL): the whole string a finite double; inf, nan and out-of-range values are errors. */
export function strtodFinite(s: string): number | undefined {
  const r = strtod(s);
  if (!r || r.range || r.end !== s.length || !Number.isFinite(r.value)) return undefined;
  return r.value;
}

const SUFFIX_SHIFT: Record<string, bigint> = { B: 0n, K: 10n, M: 20n, G: 30n, T: 40n, P: 50n, E: 60n };

/**
 * qemu_strtosz: a decimal (or 0x hex) byte count with an optional binary
 * suffix B/K/M/G/T/P/E (any case); a decimal fraction only with a suffix
 * above B, rounded to the byte (half up). No sign, no exponent, below 2^64.
 */
export function strtosz(s: string): bigint | undefined {
  const first = strtoull(s, 10);
  if (!first || first.range) return undefined;
  if (s.slice(0, first.end).includes('-')) return undefined;
  let val = first.value;
  let end = first.end;
  let fraction = 0n; // 64-bit fixed point
  if (val === 0n && (s[end] === 'x' || s[end] === 'X')) {
    const hex = strtoull(s, 16);
    if (!hex || hex.range) return undefined;
    end = hex.end;
    if (s[end] === '.') return undefined;
    val = hex.value;
  } else if (s[end] === '.') {
    const f = strtod(s.slice(end));
    if (!f || f.range || !Number.isFinite(f.value)) end++;
    else if (/[eE]/.test(s.slice(end, end + f.end))) return undefined;
    else {
      // (uint64_t)(fraction * 0x1p64): exact scaling, then truncation; 1.0 and above wrap to 0 on x86-64.
      const scaled = Math.floor(f.value * 2 ** 64);
      fraction = scaled >= 2 ** 64 ? 0n : BigInt(scaled);
      end += f.end;
    }
  }
  const shift = SUFFIX_SHIFT[(s[end] ?? '').toUpperCase()];
  if (shift !== undefined) end++;
  if (shift === undefined || shift === 0n) {
    if (fraction !== 0n) return undefined;
  } else {
    const whole = (val << shift) + ((fraction << shift) >> 64n) + (((fraction << shift) >> 63n) & 1n);
    if (whole > UINT64_MAX) return undefined;
    val = whole;
  }
  return end === s.length ? val : undefined;
}
