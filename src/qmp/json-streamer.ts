import { JsonLexer, type TokenType } from './json-lexer.js';
import { JsonParser, type NumberMapper } from './json-parser.js';
import { displayBytes } from './mod-utf8.js';

/**
 * QEMU 7.2's JSON streamer (qobject/json-streamer.c): cuts the token stream
 * into messages and enforces the per-message limits.
 *
 * A message ends at the token after which the brace and bracket counts are
 * both zero, or either is negative: a top-level scalar is a message on its
 * own, and so is a stray '}' or ']' (which then fails to parse). A token
 * that would take the message past a limit ends it with a limit error
 * instead, checked before the balance (so even a top-level scalar is
 * bounded). A lexical error ends it too. After any error the counts restart at
 * zero: the rest of a broken message is lexed and parsed as new messages,
 * which is why QEMU 7.2 answers `[[[…]]]` past the nesting limit with one
 * error per stray closer.
 *
 * Memory per message is bounded: the parser builds the value as tokens
 * arrive and drops it at the first error, and a message past a limit ends
 * at once.
 */

export interface WireLimits {
  /** Bytes of all tokens of one message, each plus one (QEMU: 64 MiB); a token is cut at this + 1 bytes. */
  maxTokenBytes: number;
  /** Tokens in one message (QEMU: 2 Mi). */
  maxTokens: number;
  /** Open braces plus brackets (QEMU: 1024). */
  maxNesting: number;
}

export const QEMU_LIMITS: Readonly<WireLimits> = Object.freeze({ maxTokenBytes: 64 << 20, maxTokens: 2 << 20, maxNesting: 1024 });

/** Which stage rejected the input: the lexer (a stray byte), the parser (grammar, escapes, UTF-8) or a limit. */
export type WireErrorKind = 'lexical' | 'syntax' | 'limit';

/** One message read from the wire: a value, or QEMU's error text for it. */
export type WireItem = { value: unknown } | { error: string; kind: WireErrorKind };

export interface StreamerOptions {
  limits?: WireLimits;
  /** How numbers appear in parsed values (default: plainNumbers). */
  numbers?: NumberMapper;
}

export class JsonStreamer {
  private readonly lexer: JsonLexer;
  private readonly parser: JsonParser;
  private readonly limits: WireLimits;
  private braces = 0;
  private brackets = 0;
  private tokenBytes = 0;
  private tokenCount = 0;

  constructor(
    private readonly emit: (item: WireItem) => void,
    opts: StreamerOptions = {},
  ) {
    this.limits = opts.limits ?? QEMU_LIMITS;
    this.parser = new JsonParser(opts.numbers);
    this.lexer = new JsonLexer((type, text) => this.token(type, text), this.limits.maxTokenBytes);
  }

  /** Socket bytes, split anywhere. Never throws for any input. */
  feed(chunk: Uint8Array): void {
    this.lexer.feed(chunk);
  }

  /** json_message_process_token. */
  private token(type: TokenType, text: Uint8Array): void {
    if (type === 'error') {
      // The message so far is dropped; the desc shows the bad bytes as QEMU prints them.
      this.end({ error: `JSON parse error, stray '${displayBytes(text)}'`, kind: 'lexical' });
      return;
    }
    if (type === '{') this.braces++;
    else if (type === '}') this.braces--;
    else if (type === '[') this.brackets++;
    else if (type === ']') this.brackets--;
    // The limits come before the balance test, so they apply to the token that would end the
    // message too; a token's size counts its C string terminator (recorded: a top-level
    // string of exactly 64 MiB, and a list whose closing ']' is token 2 Mi + 1, both fail).
    if (this.tokenBytes + text.length + 1 > this.limits.maxTokenBytes) return this.end({ error: 'JSON token size limit exceeded', kind: 'limit' });
    if (this.tokenCount + 1 > this.limits.maxTokens) return this.end({ error: 'JSON token count limit exceeded', kind: 'limit' });
    if (this.braces + this.brackets > this.limits.maxNesting) return this.end({ error: 'JSON nesting depth limit exceeded', kind: 'limit' });
    this.tokenBytes += text.length;
    this.tokenCount++;
    this.parser.token(type, text);
    if (this.braces < 0 || this.brackets < 0 || (this.braces === 0 && this.brackets === 0)) {
      const r = this.parser.finish();
      this.end('error' in r ? { error: r.error, kind: 'syntax' } : r);
    }
  }

  private end(item: WireItem): void {
    this.braces = 0;
    this.brackets = 0;
    this.tokenBytes = 0;
    this.tokenCount = 0;
    this.parser.reset();
    this.emit(item);
  }
}
