/**
 * The raw inputs recorded against qemu-storage-daemon 7.2 (fixtures/wire-qsd-7.2.json).
 * An input is a list of parts so that megabyte inputs stay small here: text
 * (sent as UTF-8), hex bytes, or a text repeated. Each input is followed on
 * the wire by SENTINEL, whose reply shows that the monitor resynchronised.
 */
export type Part = string | { hex: string } | { repeat: string; times: number };

export interface WireCase {
  name: string;
  input: Part[];
  /**
   * QEMU's monitor reads its socket one byte at a time (about 250 KB/s), so
   * megabyte cases take from seconds to minutes: recorded once, re-played
   * live only with WIRE_LIVE_SLOW=1.
   */
  slow?: true;
}

/** A newline (a resync point in QEMU's lexer) and a valid command whose reply ends every case. */
export const SENTINEL = '\n{"execute": "query-jobs", "id": "SENTINEL"}';

export function materialize(parts: Part[]): Buffer {
  return Buffer.concat(
    parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : 'hex' in p ? Buffer.from(p.hex, 'hex') : Buffer.from(p.repeat.repeat(p.times), 'utf8'))),
  );
}

const Q = '{"execute": "query-jobs", "id": ';
const MI = 1 << 20;

export const WIRE_CASES: WireCase[] = [
  { name: 'valid command', input: [`${Q}1}`] },
  { name: 'two messages in one chunk, whitespace between', input: [`${Q}1} \t\r\n ${Q}2}`] },
  { name: 'newlines inside a message', input: ['{\n"execute"\n:\n"query-jobs"\n}'] },
  { name: 'single-quoted strings and \\\' escapes', input: [`{'execute': 'query-jobs', 'id': 'a\\'b"c'}`] },
  { name: 'missing value', input: ['{"execute": }'] },
  { name: 'garbage, then a valid command', input: ['{"execute": }', `${Q}2}`] },
  { name: 'stray character', input: ['@'] },
  { name: 'stray character inside a message', input: ['{"id": @, "execute": "query-jobs"}'] },
  { name: 'top-level closers', input: ['}', ']'] },
  { name: 'stray closer after a message', input: [`${Q}3} }`] },
  { name: 'top-level non-objects', input: ['[] [1, 2] "str" \'sq\' 123 -1.5 true null'] },
  { name: 'uppercase keyword', input: ['{"execute": True}'] },
  { name: 'unknown keyword', input: ['{"execute": tru}'] },
  { name: 'long unknown keyword (message cut at 1023 bytes)', input: [`${Q}`, { repeat: 'a', times: 2000 }, '}'] },
  { name: 'interpolation is not accepted', input: ['{"execute": %d}'] },
  { name: 'duplicate key', input: ['{"execute": "query-jobs", "execute": "x"}'] },
  { name: 'missing colon', input: ['{"execute" "query-jobs"}'] },
  { name: 'key not a string', input: ['{1: 2}'] },
  { name: 'container as key (parsed first)', input: ['{[1, x]: 2}'] },
  { name: 'separator in dict', input: ['{"execute": "query-jobs" "id": 1}'] },
  { name: 'separator in list', input: [`${Q}[1 2]}`] },
  { name: 'trailing and leading commas', input: ['{"a": 1,}', '[1,]', '[,1]', '{,}', ',', ':'] },
  { name: 'mismatched closers', input: ['{"a": 1]', '[}', '{]', '[1 }'] },
  { name: 'bad numbers', input: ['[01]', '[-a]', '[1.x]', '[1e]', '[1e+]', '[-]', '{"execute": 1.}'] },
  { name: 'number at end of input (ended by the newline)', input: ['1e'] },
  { name: 'numbers: int64, uint64 and double', input: [`${Q}[0, -0, 9007199254740993, 9223372036854775807, 9223372036854775808, 18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809, 123456789012345678901234567890]}`] },
  { name: 'numbers: doubles', input: [`${Q}[-0.0, 1.0, 1e3, 0.1, 1.5e300, -2.5E-3, 1E400, -1e-400]}`] },
  { name: 'escapes', input: [`${Q}"\\" \\\\ \\/ \\b \\f \\n \\r \\t \\' \\u00e9 \\ud83d\\ude00 \\u0000"}`] },
  { name: 'bad escape, then a valid command', input: [`${Q}"\\q"}`, `${Q}4}`] },
  { name: 'lone low surrogate', input: [`${Q}"\\udc00"}`] },
  { name: 'high surrogate without its pair', input: [`${Q}"\\ud800x"}`] },
  { name: 'high surrogate, then a non-surrogate escape', input: [`${Q}"\\ud800\\u0041"}`] },
  { name: 'noncharacter escapes', input: [`${Q}"\\uffff"}`, `${Q}"\\ufdd0"}`, `${Q}"\\udbff\\udfff"}`] },
  { name: 'short \\u escape', input: [`${Q}"\\u12"}`, `${Q}"\\u12G4"}`] },
  { name: 'raw UTF-8', input: [`${Q}"é€😀"}`] },
  { name: 'C0 80 is U+0000 (modified UTF-8)', input: [`${Q}"a`, { hex: 'c080' }, 'b"}'] },
  { name: 'invalid UTF-8: bad continuation', input: [`${Q}"`, { hex: 'c328' }, '"}'] },
  { name: 'invalid UTF-8: truncated, overlong, surrogate, beyond U+10FFFF, noncharacter', input: [`${Q}"`, { hex: 'e282' }, '"}', `${Q}"`, { hex: 'c1bf' }, '"}', `${Q}"`, { hex: 'eda080' }, '"}', `${Q}"`, { hex: 'f4908080' }, '"}', `${Q}"`, { hex: 'efbfbe' }, '"}'] },
  { name: 'control character inside a string', input: [`${Q}"ab\x01cd"}`] },
  { name: 'invalid bytes shown as U+FFFD in the stray text', input: [`${Q}"ab`, { hex: 'c328' }, '\x01cd"}'] },
  { name: '0xFE inside a string', input: [`${Q}"`, { hex: 'fe' }, '"}'] },
  { name: 'control character reset', input: ['{"execute": "query-\x01version"}', `${Q}6}`] },
  { name: '0xFF reset', input: ['{"execute": ', { hex: 'ff' }, `${Q}7}`] },
  { name: 'NUL byte', input: [{ hex: '00' }, `${Q}8}`] },
  { name: 'TAB does not end recovery', input: ['@ \t x', `${Q}9}`] },
  { name: 'nesting of exactly 1024', input: [Q, { repeat: '[', times: 1023 }, { repeat: ']', times: 1023 }, '}'] },
  { name: 'nesting beyond 1024', input: [{ repeat: '[', times: 1025 }, { repeat: ']', times: 1025 }] },
  { name: 'nesting limit counts braces and brackets together', input: [{ repeat: '{"a":[', times: 513 }, ']'] },
  { name: 'token count: 2 Mi tokens balanced at the last one', input: ['[', { repeat: '1,', times: MI - 1 }, '1]'], slow: true },
  { name: 'token count: one token too many', input: ['[', { repeat: '1,', times: MI }, '1]'], slow: true },
  { name: 'token size: one string token past 64 MiB', input: ['{"execute": "', { repeat: 'a', times: 64 * MI }, '"}'], slow: true },
  { name: 'token size: tokens of one message past 64 MiB', input: ['{"a": "', { repeat: 'a', times: 40 * MI }, '", "b": "', { repeat: 'b', times: 30 * MI }, '"}'], slow: true },
  { name: 'top-level string token cut at 64 MiB + 1 byte', input: ['"', { repeat: 'a', times: 64 * MI }, '"'], slow: true },
  { name: 'top-level string of 64 MiB (the size limit holds when balanced too)', input: ['"', { repeat: 'a', times: 64 * MI - 2 }, '"'], slow: true },
];
