/**
 * QEMU's "modified UTF-8" (util/unicode.c): UTF-8 where U+0000 may also be
 * written as C0 80, and where surrogates, noncharacters (U+FDD0..FDEF,
 * U+xFFFE/xFFFF) and code points past U+10FFFF are invalid. The JSON parser
 * rejects strings holding such sequences; the JSON writer shows each as
 * U+FFFD. Both need the same notion of where a bad sequence ends.
 */

/** Whether QEMU accepts a code point in a string (is_valid_codepoint). */
export function isValidCodepoint(cp: number): boolean {
  if (cp > 0x10ffff) return false;
  if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe) return false;
  return !(cp >= 0xd800 && cp <= 0xdfff);
}

const MIN_CP = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];

/**
 * Decodes one sequence at `at` (before `end`): the code point or -1, and
 * where the next sequence starts. An invalid lead or continuation byte is
 * one bad sequence; a lead byte with too few continuation bytes covers
 * them (mod_utf8_codepoint's rules).
 */
export function readCodepoint(b: Uint8Array, at: number, end: number): { cp: number; next: number } {
  let p = at;
  const lead = b[p++]!;
  if (lead < 0x80) return { cp: lead, next: p };
  if (lead >= 0xfe || (lead & 0x40) === 0) return { cp: -1, next: p };
  let len = 0;
  let mask = 0x80;
  for (; lead & mask; mask >>= 1) len++;
  let cp = lead & (mask - 1);
  for (let i = 1; i < len; i++) {
    const c = p < end ? b[p]! : 0;
    if ((c & 0xc0) !== 0x80) return { cp: -1, next: p };
    p++;
    cp = (cp << 6) | (c & 0x3f);
  }
  if (!isValidCodepoint(cp)) cp = -1;
  else if (cp < MIN_CP[len - 2]! && !(cp === 0 && len === 2)) cp = -1; // overlong, except C0 80
  return { cp, next: p };
}

/**
 * Bytes as QEMU prints them inside an error message: a C string (cut at the
 * first NUL) whose invalid sequences each become U+FFFD, as json-writer.c's
 * quoted_str does when the reply is written.
 */
export function displayBytes(b: Uint8Array): string {
  const nul = b.indexOf(0);
  const end = nul < 0 ? b.length : nul;
  let out = '';
  for (let i = 0; i < end; ) {
    const { cp, next } = readCodepoint(b, i, end);
    out += String.fromCodePoint(cp < 0 ? 0xfffd : cp);
    i = next;
  }
  return out;
}

const utf8 = new TextDecoder('utf-8');

/**
 * Decodes a run of raw string bytes (no escapes), or returns undefined at
 * the first invalid sequence. Valid modified UTF-8 is standard UTF-8 except
 * for C0 80, so TextDecoder does the work once the bytes are checked.
 */
export function decodeRun(b: Uint8Array, start: number, end: number): string | undefined {
  let ascii = true;
  let hasC080 = false;
  for (let i = start; i < end; ) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    ascii = false;
    const { cp, next } = readCodepoint(b, i, end);
    if (cp < 0) return undefined;
    if (cp === 0) hasC080 = true;
    i = next;
  }
  if (ascii) return latin1(b, start, end);
  if (!hasC080) return utf8.decode(b.subarray(start, end));
  let out = '';
  for (let i = start; i < end; ) {
    const { cp, next } = readCodepoint(b, i, end);
    out += String.fromCodePoint(cp);
    i = next;
  }
  return out;
}

/** Single-byte characters as a string. */
export function latin1(b: Uint8Array, start = 0, end = b.length): string {
  if (end - start < 64) {
    // Most tokens are short; a Buffer view costs more than the loop.
    let s = '';
    for (let i = start; i < end; i++) s += String.fromCharCode(b[i]!);
    return s;
  }
  return Buffer.from(b.buffer, b.byteOffset + start, end - start).toString('latin1');
}
