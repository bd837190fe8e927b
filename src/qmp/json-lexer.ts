/**
 * QEMU 7.2's JSON lexer (qobject/json-lexer.c) as a byte-level state
 * machine, fed chunks split anywhere (inside a token or a UTF-8 sequence).
 *
 * Its dialect: RFC 8259 tokens plus single-quoted strings; keywords are any
 * run of a-z (the parser judges them); strings take any byte 0x20..0xFD and
 * any such byte after a backslash (the parser judges escapes and UTF-8).
 * Interpolation (%d and friends) exists only for QEMU's internal callers and
 * is not accepted from the wire: '%' is a stray character.
 *
 * On a bad byte the token so far plus that byte becomes an 'error' token,
 * and the lexer skips input until a structural character, a control
 * character other than TAB, or 0xFE/0xFF (its recovery state); the
 * resynchronising byte is then lexed normally. A token that grows past the
 * size limit is handed on unfinished ('partial') and lexing restarts right
 * after it, as QEMU does, so a token never holds more than limit + 1 bytes.
 */

export type TokenType = '{' | '}' | '[' | ']' | ':' | ',' | 'int' | 'float' | 'string' | 'keyword' | 'error' | 'partial';

/** Receives each token; `text` is only valid during the call. */
export type TokenSink = (type: TokenType, text: Uint8Array) => void;

// Lexer states (json_lexer_state).
const START = 0;
const RECOVERY = 1;
const STRING = 2; // quote byte in `quote`
const STRING_ESC = 3;
const ZERO = 4;
const SIGN = 5;
const DIGITS = 6;
const MANTISSA = 7;
const MANTISSA_DIGITS = 8;
const EXP_E = 9;
const EXP_SIGN = 10;
const EXP_DIGITS = 11;
const KEYWORD = 12;

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isLower = (c: number) => c >= 0x61 && c <= 0x7a;
const isStructural = (c: number) => c === 0x7b || c === 0x7d || c === 0x5b || c === 0x5d || c === 0x3a || c === 0x2c;
/** Bytes a string may hold unescaped, other than backslash and its quote. */
const isStringByte = (c: number) => c >= 0x20 && c <= 0xfd;

export class JsonLexer {
  private state = START;
  private quote = 0;
  private tok = new Uint8Array(256);
  private len = 0;

  constructor(
    private readonly sink: TokenSink,
    /** A token longer than this is cut off (QEMU: 64 MiB). */
    private readonly maxTokenBytes = 64 << 20,
  ) {}

  feed(chunk: Uint8Array): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      const c = chunk[i]!;
      switch (this.state) {
        case START:
          i++;
          if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) break;
          this.push(c);
          if (isStructural(c)) this.emit(String.fromCharCode(c) as TokenType);
          else if (c === 0x22 || c === 0x27) {
            this.quote = c;
            this.state = STRING;
          } else if (c === 0x30) this.state = ZERO;
          else if (isDigit(c)) this.state = DIGITS;
          else if (c === 0x2d) this.state = SIGN;
          else if (isLower(c)) this.state = KEYWORD;
          else this.fail();
          break;
        case RECOVERY: {
          // Skip to a resynchronisation point; that byte is lexed again from START.
          let j = i;
          while (j < n) {
            const d = chunk[j]!;
            if ((d < 0x20 && d !== 0x09) || d >= 0xfe || isStructural(d)) break;
            j++;
          }
          i = j;
          if (j < n) this.state = START;
          break;
        }
        case STRING: {
          // The bulk of large messages: copy runs of ordinary bytes at once.
          let j = i;
          while (j < n) {
            const d = chunk[j]!;
            if (!isStringByte(d) || d === 0x5c || d === this.quote) break;
            j++;
          }
          if (j > i) {
            i += this.append(chunk, i, j);
            break;
          }
          i++;
          this.push(c);
          if (c === this.quote) this.emit('string');
          else if (c === 0x5c) this.state = STRING_ESC;
          else this.fail();
          break;
        }
        case STRING_ESC:
          i++;
          this.push(c);
          if (isStringByte(c)) this.state = STRING;
          else this.fail();
          break;
        default:
          i += this.number(chunk, i, n);
      }
      if (this.len > this.maxTokenBytes) this.emit('partial');
    }
  }

  /**
   * Number and keyword states. Returns how many bytes were consumed: 0 when
   * the byte ended the token and must be lexed again from START.
   */
  private number(chunk: Uint8Array, i: number, n: number): number {
    const c = chunk[i]!;
    switch (this.state) {
      case ZERO:
        if (c === 0x2e) return this.consume(c, MANTISSA);
        if (isDigit(c)) return this.consumeAndFail(c); // no leading zeros: "01" is stray
        this.emit('int');
        return 0;
      case SIGN:
        if (c === 0x30) return this.consume(c, ZERO);
        if (isDigit(c)) return this.consume(c, DIGITS);
        return this.consumeAndFail(c);
      case DIGITS:
      case MANTISSA_DIGITS:
      case EXP_DIGITS:
      case KEYWORD: {
        const more = this.state === KEYWORD ? isLower : isDigit;
        let j = i;
        while (j < n && more(chunk[j]!)) j++;
        if (j > i) return this.append(chunk, i, j);
        if (this.state === DIGITS && c === 0x2e) return this.consume(c, MANTISSA);
        if ((this.state === DIGITS || this.state === MANTISSA_DIGITS) && (c === 0x65 || c === 0x45)) return this.consume(c, EXP_E);
        this.emit(this.state === KEYWORD ? 'keyword' : this.state === DIGITS ? 'int' : 'float');
        return 0;
      }
      case MANTISSA:
        return isDigit(c) ? this.consume(c, MANTISSA_DIGITS) : this.consumeAndFail(c);
      case EXP_E:
        if (c === 0x2b || c === 0x2d) return this.consume(c, EXP_SIGN);
        return isDigit(c) ? this.consume(c, EXP_DIGITS) : this.consumeAndFail(c);
      case EXP_SIGN:
        return isDigit(c) ? this.consume(c, EXP_DIGITS) : this.consumeAndFail(c);
      default:
        throw new Error(`json lexer: unknown state ${this.state}`);
    }
  }

  private consume(c: number, next: number): number {
    this.push(c);
    this.state = next;
    return 1;
  }

  private consumeAndFail(c: number): number {
    this.push(c);
    this.fail();
    return 1;
  }

  private push(c: number): void {
    if (this.len === this.tok.length) this.grow(this.len + 1);
    this.tok[this.len++] = c;
  }

  /** Appends chunk[i..j) but stops at the byte that takes the token past the limit. */
  private append(chunk: Uint8Array, i: number, j: number): number {
    const room = this.maxTokenBytes + 1 - this.len;
    const end = j - i > room ? i + room : j;
    if (this.len + (end - i) > this.tok.length) this.grow(this.len + (end - i));
    this.tok.set(chunk.subarray(i, end), this.len);
    this.len += end - i;
    return end - i;
  }

  private grow(min: number): void {
    const next = new Uint8Array(Math.max(min, this.tok.length * 2));
    next.set(this.tok.subarray(0, this.len));
    this.tok = next;
  }

  private emit(type: TokenType): void {
    const text = this.tok.subarray(0, this.len);
    this.len = 0;
    this.state = START;
    // Give back the memory of a huge token once it is handed on.
    if (this.tok.length > 1 << 16) this.tok = new Uint8Array(256);
    this.sink(type, text);
  }

  private fail(): void {
    this.emit('error');
    this.state = RECOVERY;
  }
}
