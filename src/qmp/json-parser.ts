import type { TokenType } from './json-lexer.js';
import { decodeRun, displayBytes, isValidCodepoint, latin1 } from './mod-utf8.js';

/**
 * QEMU 7.2's JSON parser (qobject/json-parser.c) over the tokens of one
 * message, fed one token at a time so that a message is never held as a
 * token list: a pushdown automaton with one frame per open container that
 * makes the same decisions, in the same order, as QEMU's recursive descent
 * over the complete list. QEMU only parses once the message is complete, so
 * the first error is kept and reported by finish(), and a limit error found
 * by the streamer in between wins over it.
 */

/**
 * A number as QEMU's QNum holds it: an integer token that fits int64 is
 * int64, else one that fits uint64 is uint64, anything else (fractions,
 * exponents, integers beyond both) is a double. The schema layer needs the
 * kind to reject 1.0 for an integer member and to range-check exactly.
 */
export type QNum = { kind: 'int64' | 'uint64'; value: bigint } | { kind: 'double'; value: number };

/** Turns a QNum into the JS value placed in the parsed tree. */
export type NumberMapper = (n: QNum) => unknown;

/** Integers as numbers while exact, else bigints; doubles as numbers (an integral double looks like an integer). */
export const plainNumbers: NumberMapper = (n) =>
  n.kind === 'double' ? n.value : n.value >= -9007199254740991n && n.value <= 9007199254740991n ? Number(n.value) : n.value;

/**
 * A double token with an integral value (1.0, 1e3, -0.0). QEMU's QNum keeps
 * its kind, so such a value is refused where an integer is expected, yet
 * echoed as a number; plain JS numbers cannot tell it from an integer.
 */
export class IntegralDouble {
  constructor(readonly value: number) {}
}

/** plainNumbers, except that integral doubles stay marked (the daemon's choice: QEMU's integer checks need the kind). */
export const qmpNumbers: NumberMapper = (n) => (n.kind === 'double' && Number.isInteger(n.value) ? new IntegralDouble(n.value) : plainNumbers(n));

/** Every integer as a bigint, every double as a number: the kinds stay apart (a bigint is an integer token). */
export const exactNumbers: NumberMapper = (n) => n.value;

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
const UINT64_MAX = (1n << 64n) - 1n;

/** parse_literal's choice of QNum kind. */
export function qnum(type: 'int' | 'float', text: string): QNum {
  if (type === 'int') {
    const v = BigInt(text);
    if (v >= INT64_MIN && v <= INT64_MAX) return { kind: 'int64', value: v };
    if (v > 0n && v <= UINT64_MAX) return { kind: 'uint64', value: v };
  }
  // strtod: JS number parsing rounds the same way; 1e400 is inf, -1e-400 is -0.
  return { kind: 'double', value: Number(text) };
}

class SyntaxErr {
  constructor(readonly detail: string) {}
}

// Frame states: what the open container expects next.
const O_OPEN = 0; // after '{': '}' or a key
const O_KEY_NEXT = 1; // after ',': a key
const O_KEY = 2; // a key is being parsed
const O_COLON = 3;
const O_VALUE_NEXT = 4;
const O_VALUE = 5; // a member value is being parsed
const O_AFTER = 6; // '}' or ','
const A_OPEN = 7; // after '[': ']' or a value
const A_NEXT = 8; // after ',': a value
const A_ELEM = 9; // an element is being parsed
const A_AFTER = 10; // ']' or ','

interface Frame {
  state: number;
  obj?: Record<string, unknown>;
  arr?: unknown[];
  key: string;
}

export type ParseResult = { value: unknown } | { error: string };

export class JsonParser {
  private stack: Frame[] = [];
  private done = false;
  private result: unknown;
  private error: string | undefined;

  constructor(private readonly number: NumberMapper = plainNumbers) {}

  /** One token of the current message ('error' tokens never reach the parser). */
  token(type: TokenType, text: Uint8Array): void {
    if (this.error !== undefined || this.done) return;
    this.step(type, text);
  }

  /** The first error of the message; nothing more is built once it is known bad. */
  private fail(detail: string): void {
    this.error = `JSON parse error, ${detail}`;
    this.stack = [];
  }

  /** The message ended: its value, or the first error ("premature EOI" if it stopped short). */
  finish(): ParseResult {
    const r: ParseResult =
      this.error !== undefined ? { error: this.error } : this.done ? { value: this.result } : { error: 'JSON parse error, premature EOI' };
    this.reset();
    return r;
  }

  reset(): void {
    this.stack = [];
    this.done = false;
    this.result = undefined;
    this.error = undefined;
  }

  private step(type: TokenType, text: Uint8Array): void {
    const top = this.stack[this.stack.length - 1];
    if (!top) return this.value(type, text);
    switch (top.state) {
      case O_OPEN:
      case O_KEY_NEXT:
        // parse_pair: the key is parsed as any value, then checked to be a string.
        if (type === '}' && top.state === O_OPEN) return this.close();
        top.state = O_KEY;
        return this.value(type, text);
      case O_COLON:
        if (type !== ':') return this.fail('missing : in object pair');
        top.state = O_VALUE_NEXT;
        return;
      case O_VALUE_NEXT:
        top.state = O_VALUE;
        return this.value(type, text);
      case O_AFTER:
        if (type === '}') return this.close();
        if (type !== ',') return this.fail('expected separator in dict');
        top.state = O_KEY_NEXT;
        return;
      case A_OPEN:
      case A_NEXT:
        if (type === ']' && top.state === A_OPEN) return this.close();
        top.state = A_ELEM;
        return this.value(type, text);
      case A_AFTER:
        if (type === ']') return this.close();
        if (type !== ',') return this.fail('expected separator in list');
        top.state = A_NEXT;
        return;
    }
  }

  /** parse_value: the token starts a value. */
  private value(type: TokenType, text: Uint8Array): void {
    switch (type) {
      case '{':
        this.stack.push({ state: O_OPEN, obj: {}, key: '' });
        return;
      case '[':
        this.stack.push({ state: A_OPEN, arr: [], key: '' });
        return;
      case 'string': {
        let v: string;
        try {
          v = parseString(text);
        } catch (e) {
          if (!(e instanceof SyntaxErr)) throw e;
          return this.fail(e.detail);
        }
        return this.complete(v);
      }
      case 'int':
      case 'float':
        return this.complete(this.number(qnum(type, latin1(text))));
      case 'keyword': {
        const k = latin1(text);
        if (k === 'true') return this.complete(true);
        if (k === 'false') return this.complete(false);
        if (k === 'null') return this.complete(null);
        // parse_error formats into a 1024-byte buffer: long keywords are cut.
        return this.fail(`invalid keyword '${k}'`.slice(0, 1023));
      }
      default:
        return this.fail('expecting value');
    }
  }

  private close(): void {
    const f = this.stack.pop()!;
    this.complete(f.obj ?? f.arr);
  }

  /** A value is complete: it goes to the container that asked for it. */
  private complete(v: unknown): void {
    const top = this.stack[this.stack.length - 1];
    if (!top) {
      this.done = true;
      this.result = v;
      return;
    }
    if (top.state === O_KEY) {
      if (typeof v !== 'string') return this.fail('key is not a string in object');
      top.key = v;
      top.state = O_COLON;
    } else if (top.state === O_VALUE) {
      const obj = top.obj!;
      if (Object.hasOwn(obj, top.key)) return this.fail('duplicate key');
      // defineProperty: a "__proto__" key is an ordinary member, not the prototype.
      Object.defineProperty(obj, top.key, { value: v, enumerable: true, writable: true, configurable: true });
      top.state = O_AFTER;
    } else {
      top.arr!.push(v);
      top.state = A_AFTER;
    }
  }
}

const SIMPLE_ESCAPES: Record<number, string> = { 0x22: '"', 0x27: "'", 0x5c: '\\', 0x2f: '/', 0x62: '\b', 0x66: '\f', 0x6e: '\n', 0x72: '\r', 0x74: '\t' };

/** cvt4hex: four hex digits at `at` (bytes past the token read as NUL), or -1. */
function hex4(b: Uint8Array, at: number): number {
  let cp = 0;
  for (let i = at; i < at + 4; i++) {
    const c = i < b.length ? b[i]! : 0;
    const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
    if (d < 0) return -1;
    cp = (cp << 4) | d;
  }
  return cp;
}

/** parse_string: a string token (with its quotes) to its value. */
export function parseString(b: Uint8Array): string {
  const end = b.length - 1; // the closing quote
  let out = '';
  let run = 1;
  for (let i = b.indexOf(0x5c, 1); i >= 0 && i < end; i = b.indexOf(0x5c, i)) {
    out += raw(b, run, i);
    const beg = i;
    const e = b[i + 1]!;
    i += 2;
    const simple = SIMPLE_ESCAPES[e];
    if (simple !== undefined) out += simple;
    else if (e === 0x75) {
      let cp = hex4(b, i);
      i += 4;
      if (cp >= 0xd800 && cp <= 0xdbff && b[i] === 0x5c && b[i + 1] === 0x75) {
        const lo = hex4(b, i + 2);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
          cp = 0x10000 + ((cp & 0x3ff) << 10) + (lo & 0x3ff);
          i += 6;
        } else cp = -1;
      }
      // \u0000 is fine (QEMU stores it as C0 80); surrogates and noncharacters are not.
      if (cp < 0 || !isValidCodepoint(cp)) throw new SyntaxErr(`${displayBytes(b.subarray(beg, Math.min(i, b.length)))} is not a valid Unicode character`);
      out += String.fromCodePoint(cp);
    } else throw new SyntaxErr('invalid escape sequence in string');
    run = i;
  }
  return out + raw(b, run, end);
}

function raw(b: Uint8Array, start: number, end: number): string {
  if (start >= end) return '';
  const s = decodeRun(b, start, end);
  if (s === undefined) throw new SyntaxErr('invalid UTF-8 sequence in string');
  return s;
}
