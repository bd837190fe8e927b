import type { JsonInput, ParsedItem } from './session.js';

/**
 * QMP input as QEMU 7.2's monitor reads it (qobject/json-lexer.c,
 * json-streamer.c, json-parser.c): a byte-level lexer with QEMU's dialect
 * (single-quoted strings, keywords, no interpolation from the wire), a
 * streamer that emits a message as soon as its braces and brackets balance
 * (a top-level scalar at once), QEMU's limits per message (64 MiB of
 * tokens, 2 Mi tokens, nesting 1024) and its error texts. After a lexical
 * error the lexer skips to a structural character or a control character,
 * as QEMU's recovery state does; after any error the pending tokens are
 * dropped. Memory per connection is bounded by the limits.
 */
export interface WireLimits {
  maxTokenBytes: number;
  maxTokens: number;
  maxNesting: number;
}

export const QEMU_LIMITS: WireLimits = { maxTokenBytes: 64 << 20, maxTokens: 2 << 20, maxNesting: 1024 };

type TokenType = '{' | '}' | '[' | ']' | ':' | ',' | 'int' | 'float' | 'keyword' | 'string' | 'error';
interface Token {
  type: TokenType;
  /** Raw bytes of the token as it appeared (for strings: including quotes). */
  text: Uint8Array;
}

const decoder = new TextDecoder('utf-8', { fatal: true });
const latin = (b: Uint8Array) => Array.from(b, (c) => String.fromCharCode(c)).join('');

class ParseError extends Error {}

/** A growable byte buffer (a 64 MiB string token must not cost 64 M JS numbers). */
class Bytes {
  private buf = new Uint8Array(64);
  length = 0;
  push(c: number): void {
    if (this.length === this.buf.length) {
      const next = new Uint8Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = c;
  }
  take(): Uint8Array {
    const out = this.buf.slice(0, this.length);
    this.length = 0;
    if (this.buf.length > 4096) this.buf = new Uint8Array(64);
    return out;
  }
  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

export function createQmpParser(emit: (item: ParsedItem) => void, limits: WireLimits = QEMU_LIMITS): JsonInput {
  let tokens: Token[] = [];
  let tokenBytes = 0;
  let braces = 0;
  let brackets = 0;

  const reset = () => {
    tokens = [];
    tokenBytes = 0;
    braces = 0;
    brackets = 0;
  };
  const fail = (desc: string) => {
    reset();
    emit({ error: desc });
  };

  /** json_message_process_token. */
  const onToken = (t: Token) => {
    switch (t.type) {
      case '{':
        braces++;
        break;
      case '}':
        braces--;
        break;
      case '[':
        brackets++;
        break;
      case ']':
        brackets--;
        break;
      case 'error':
        // Bytes that are not UTF-8 show as U+FFFD, as QEMU's JSON writer prints them.
        fail(`JSON parse error, stray '${new TextDecoder().decode(t.text)}'`);
        return;
    }
    if (tokenBytes + t.text.length + 1 > limits.maxTokenBytes) return fail('JSON token size limit exceeded');
    if (tokens.length + 1 > limits.maxTokens) return fail('JSON token count limit exceeded');
    if (braces + brackets > limits.maxNesting) return fail('JSON nesting depth limit exceeded');
    tokens.push(t);
    tokenBytes += t.text.length;
    if ((braces > 0 || brackets > 0) && braces >= 0 && brackets >= 0) return;
    const message = tokens;
    reset();
    try {
      emit({ value: parseMessage(message) });
    } catch (err) {
      if (!(err instanceof ParseError)) throw err;
      emit({ error: `JSON parse error, ${err.message}` });
    }
  };

  // The lexer: the bytes of the token in progress and its state.
  let state: 'start' | 'string' | 'escape' | 'number' | 'keyword' | 'recovery' = 'start';
  let quote = 0;
  let unicodeLeft = 0;
  const cur = new Bytes();

  const finish = (type: TokenType) => {
    state = 'start';
    onToken({ type, text: cur.take() });
  };
  const lexError = () => {
    state = 'recovery';
    onToken({ type: 'error', text: cur.take() });
  };
  /** A token longer than the message limit can never be accepted: fail it now instead of buffering on. */
  const tooLong = () => cur.length > limits.maxTokenBytes;
  const NUMBER = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;

  const byte = (c: number): void => {
    switch (state) {
      case 'recovery':
        if ('{}[]:,'.includes(String.fromCharCode(c))) {
          state = 'start';
          byte(c);
        } else if ((c < 0x20 && c !== 0x09) || c === 0xfe || c === 0xff) {
          state = 'start';
        }
        return;
      case 'string':
        if (tooLong()) {
          cur.take();
          state = 'recovery';
          return fail('JSON token size limit exceeded');
        }
        cur.push(c);
        if (unicodeLeft > 0) {
          if (!/[0-9a-fA-F]/.test(String.fromCharCode(c))) return lexError();
          unicodeLeft--;
        } else if (c === 0x5c) state = 'escape';
        else if (c === quote) finish('string');
        else if (c < 0x20 || c === 0xfe || c === 0xff) lexError();
        return;
      case 'escape':
        // Any escape passes the lexer; the parser judges it ("invalid escape sequence in string").
        cur.push(c);
        if (c < 0x20) return lexError();
        if (c === 0x75) unicodeLeft = 4;
        state = 'string';
        return;
      case 'number':
        if (/[0-9.eE+-]/.test(String.fromCharCode(c)) && !tooLong()) {
          cur.push(c);
          return;
        }
        {
          const text = latin(cur.view());
          if (!NUMBER.test(text)) {
            // The character that showed the number malformed belongs to the error token, as in QEMU's lexer.
            cur.push(c);
            lexError();
            return;
          }
          finish(/[.eE]/.test(text) ? 'float' : 'int');
        }
        byte(c);
        return;
      case 'keyword':
        if (c >= 0x61 && c <= 0x7a && !tooLong()) {
          cur.push(c);
          return;
        }
        finish('keyword');
        byte(c);
        return;
      case 'start': {
        const ch = String.fromCharCode(c);
        if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) return;
        cur.push(c);
        if ('{}[]:,'.includes(ch)) finish(ch as TokenType);
        else if (c === 0x22 || c === 0x27) {
          quote = c;
          unicodeLeft = 0;
          state = 'string';
        } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) state = 'number';
        else if (c >= 0x61 && c <= 0x7a) state = 'keyword';
        else lexError();
        return;
      }
    }
  };

  return {
    feed(chunk: Uint8Array) {
      for (const c of chunk) byte(c);
    },
  };
}

/** json_parser_parse over one complete message. */
function parseMessage(tokens: Token[]): unknown {
  let i = 0;
  const peek = () => tokens[i];
  const next = () => {
    const t = tokens[i++];
    if (!t) throw new ParseError('premature EOI');
    return t;
  };
  const value = (): unknown => {
    const t = next();
    switch (t.type) {
      case '{':
        return object();
      case '[':
        return array();
      case 'string':
        return stringOf(t);
      case 'int': {
        const big = BigInt(latin(t.text));
        return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big <= (1n << 64n) - 1n && big >= -(1n << 63n) ? big : Number(latin(t.text));
      }
      case 'float':
        return Number(latin(t.text));
      case 'keyword': {
        const k = latin(t.text);
        if (k === 'true') return true;
        if (k === 'false') return false;
        if (k === 'null') return null;
        throw new ParseError(`invalid keyword '${k}'`);
      }
      default:
        throw new ParseError('expecting value');
    }
  };
  const object = (): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    if (peek()?.type === '}') {
      i++;
      return out;
    }
    for (;;) {
      const k = next();
      if (k.type !== 'string') throw new ParseError('key is not a string in object');
      const key = stringOf(k);
      if (next().type !== ':') throw new ParseError('missing : in object pair');
      const v = value();
      if (Object.hasOwn(out, key)) throw new ParseError('duplicate key');
      // defineProperty: a "__proto__" key is an ordinary member, not the prototype.
      Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
      const sep = next();
      if (sep.type === '}') return out;
      if (sep.type !== ',') throw new ParseError('expected separator in dict');
    }
  };
  const array = (): unknown[] => {
    const out: unknown[] = [];
    if (peek()?.type === ']') {
      i++;
      return out;
    }
    for (;;) {
      out.push(value());
      const sep = next();
      if (sep.type === ']') return out;
      if (sep.type !== ',') throw new ParseError('expected separator in list');
    }
  };
  return value();
}

/** A string token's value: escapes decoded, UTF-8 checked (parse_string). */
function stringOf(t: Token): string {
  const b = t.text;
  const bytes: number[] = [];
  let out = '';
  const flush = () => {
    if (bytes.length === 0) return;
    try {
      out += decoder.decode(Uint8Array.from(bytes));
    } catch {
      throw new ParseError('invalid UTF-8 sequence in string');
    }
    bytes.length = 0;
  };
  for (let i = 1; i < b.length - 1; i++) {
    const c = b[i]!;
    if (c !== 0x5c) {
      bytes.push(c);
      continue;
    }
    flush();
    const e = String.fromCharCode(b[++i]!);
    const simple: Record<string, string> = { '"': '"', "'": "'", '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
    if (e in simple) {
      out += simple[e];
      continue;
    }
    if (e !== 'u') throw new ParseError('invalid escape sequence in string');
    // \uXXXX with surrogate pairs; \u0000 is allowed (QEMU's modified UTF-8), a lone surrogate is not.
    const start = i - 1;
    let cp = parseInt(latin(b.subarray(i + 1, i + 5)), 16);
    i += 4;
    if (cp >= 0xd800 && cp <= 0xdbff && b[i + 1] === 0x5c && b[i + 2] === 0x75) {
      const lo = parseInt(latin(b.subarray(i + 3, i + 7)), 16);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        i += 6;
      } else cp = -1;
    }
    if (cp < 0 || (cp >= 0xd800 && cp <= 0xdfff)) throw new ParseError(`${latin(b.subarray(start, i + 1))} is not a valid Unicode character`);
    out += String.fromCodePoint(cp);
  }
  flush();
  return out;
}
