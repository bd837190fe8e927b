import { IntegralDouble } from './json-parser.js';
import { qdictOrder } from './qdict-order.js';

/**
 * Serialises a value the way QEMU's monitor writes it (qobject/json-writer.c):
 * `", "` between members, `": "` after keys, ASCII only (other code points
 * as upper-case \uXXXX escapes, surrogate pairs beyond the BMP), doubles as
 * "%.17g", and object members in QDict iteration order — so a reply is
 * byte for byte what qemu-storage-daemon sends for the same value. `pretty`
 * is the form of a monitor with pretty=on.
 */
export function toQmpJson(value: unknown, pretty = false): string {
  const out: string[] = [];
  write(value, out, pretty ? 0 : -1);
  return out.join('');
}

/**
 * `depth` is -1 for the compact form; otherwise the nesting depth of the
 * pretty form (json-writer.c's pretty mode): each member or element on its
 * own line indented four spaces per level, the closing bracket on a line of
 * its own at the container's level, so an empty object is "{" newline "}".
 */
const nl = (d: number) => `\n${' '.repeat(d * 4)}`;

function write(v: unknown, out: string[], depth: number): void {
  if (v === null || v === undefined) {
    out.push('null');
  } else if (typeof v === 'boolean') {
    out.push(v ? 'true' : 'false');
  } else if (typeof v === 'bigint') {
    out.push(v.toString());
  } else if (typeof v === 'number') {
    out.push(formatNumber(v));
  } else if (v instanceof IntegralDouble) {
    out.push(formatNumber(v.value));
  } else if (typeof v === 'string') {
    out.push(quote(v));
  } else if (Array.isArray(v)) {
    out.push('[');
    for (let i = 0; i < v.length; i++) {
      if (depth >= 0) out.push(i > 0 ? ',' : '', nl(depth + 1));
      else if (i > 0) out.push(', ');
      write(v[i], out, depth >= 0 ? depth + 1 : -1);
    }
    if (depth >= 0) out.push(nl(depth));
    out.push(']');
  } else if (typeof v === 'object') {
    const obj = v as Record<string, unknown>;
    // Members whose value is undefined are absent, as with JSON.stringify.
    const keys = qdictOrder(definedKeys(obj));
    out.push('{');
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      if (depth >= 0) out.push(i > 0 ? ',' : '', nl(depth + 1), memberHead(k, false));
      else out.push(memberHead(k, i > 0));
      write(obj[k], out, depth >= 0 ? depth + 1 : -1);
    }
    if (depth >= 0) out.push(nl(depth));
    out.push('}');
  } else {
    throw new TypeError(`cannot serialise a ${typeof v} as QMP JSON`);
  }
}

/** The object's keys but those whose value is undefined (a copy only when there are such). */
function definedKeys(obj: Record<string, unknown>): string[] {
  const keys = Object.keys(obj);
  for (let i = 0; i < keys.length; i++) if (obj[keys[i]!] === undefined) return keys.filter((k) => obj[k] !== undefined);
  return keys;
}

/**
 * `"key": ` (after `, ` when it follows another member), kept per key: a
 * reply repeats a small vocabulary of member names, and building these
 * strings anew for each was much of a large reply's garbage. Bounded
 * against arbitrary user keys.
 */
const HEADS = new Map<string, readonly [string, string]>();
const MAX_HEADS = 4096;

function memberHead(key: string, following: boolean): string {
  let h = HEADS.get(key);
  if (h === undefined) {
    if (HEADS.size >= MAX_HEADS) HEADS.clear();
    const q = quote(key);
    h = [`${q}: `, `, ${q}: `];
    HEADS.set(key, h);
  }
  return h[following ? 1 : 0];
}

function formatNumber(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 2 ** 63) return Object.is(n, -0) ? '-0' : n.toFixed(0);
  if (!Number.isFinite(n)) return Number.isNaN(n) ? 'nan' : n > 0 ? 'inf' : '-inf';
  // C's %.17g: 17 significant digits, trailing zeros dropped, exponent of at least two digits.
  const exp = Math.floor(Math.log10(Math.abs(n)));
  if (exp < -4 || exp >= 17) {
    const [mant, e] = n.toExponential(16).split('e') as [string, string];
    const m = mant.includes('.') ? mant.replace(/0+$/, '').replace(/\.$/, '') : mant;
    const sign = e.startsWith('-') ? '-' : '+';
    return `${m}e${sign}${e.replace(/^[+-]/, '').padStart(2, '0')}`;
  }
  const fixed = n.toPrecision(17);
  return fixed.includes('.') ? fixed.replace(/0+$/, '').replace(/\.$/, '') : fixed;
}

const hex4 = (c: number) => `\\u${c.toString(16).toUpperCase().padStart(4, '0')}`;

/** Printable ASCII but `"` and `\\`: written as they are (nearly every string in a reply: names, paths, enums). */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function quote(s: string): string {
  if (PLAIN.test(s)) return `"${s}"`;
  let r = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    switch (ch) {
      case '"':
        r += '\\"';
        break;
      case '\\':
        r += '\\\\';
        break;
      case '\b':
        r += '\\b';
        break;
      case '\f':
        r += '\\f';
        break;
      case '\n':
        r += '\\n';
        break;
      case '\r':
        r += '\\r';
        break;
      case '\t':
        r += '\\t';
        break;
      default:
        if (cp > 0xffff) r += hex4(0xd800 + ((cp - 0x10000) >> 10)) + hex4(0xdc00 + ((cp - 0x10000) & 0x3ff));
        // A lone surrogate is not a code point QEMU could hold; it writes U+FFFD for invalid sequences.
        else if (cp >= 0xd800 && cp <= 0xdfff) r += hex4(0xfffd);
        else if (cp < 0x20 || cp >= 0x7f) r += hex4(cp);
        else r += ch;
    }
  }
  return `${r}"`;
}
