/**
 * A storage-daemon option argument of a QAPI type (--blockdev, --export,
 * --nbd-server, --monitor), read as qobject_input_visitor_new_str reads
 * it: JSON when the first character is '{' (qobject_from_json, then the
 * QObject input visitor), else keyval_parse with the option's implied key
 * and the keyval input visitor.
 */
import { QmpError } from './error.js';
import { JsonLexer, type TokenType } from './json-lexer.js';
import { JsonParser } from './json-parser.js';
import { displayBytes } from './mod-utf8.js';
import { parseKeyval } from './keyval.js';
import { visitKeyval } from './schema/keyval-visit.js';
import type { QType } from './schema/types.js';

const err = (desc: string) => new QmpError('GenericError', desc);

export function parseCliObject<T>(type: QType<T>, arg: string, impliedKey?: string): T {
  if (arg.startsWith('{')) return type.visit(jsonFromString(arg), []);
  return visitKeyval(type, parseKeyval(arg, impliedKey), []);
}

/** QEMU's JSON nesting limit (braces plus brackets), as json-streamer.c applies it. */
const MAX_NESTING = 1024;

/**
 * qobject_from_json: exactly one JSON value, or the first error. The text
 * goes through QEMU's lexer and parser as on the wire; the end of the
 * string then flushes the lexer (a NUL byte stands for json_lexer_flush:
 * it ends a pending number or keyword, and an unterminated string becomes
 * a stray token without it), and a message still open is parsed as is.
 */
function jsonFromString(text: string): unknown {
  const results: Array<{ value: unknown } | { error: string }> = [];
  let parser = new JsonParser();
  let depth = { braces: 0, brackets: 0 };
  let pending = 0;
  let flushing = false;
  const end = (r: { value: unknown } | { error: string }) => {
    results.push(r);
    parser = new JsonParser();
    depth = { braces: 0, brackets: 0 };
    pending = 0;
  };
  const lexer = new JsonLexer((type: TokenType, bytes: Uint8Array) => {
    if (type === 'error') {
      // The flush byte alone, met between tokens, is no token in QEMU.
      if (!(flushing && bytes.length === 1 && bytes[0] === 0)) end({ error: `JSON parse error, stray '${displayBytes(bytes)}'` });
      return;
    }
    if (type === '{') depth.braces++;
    else if (type === '}') depth.braces--;
    else if (type === '[') depth.brackets++;
    else if (type === ']') depth.brackets--;
    if (depth.braces + depth.brackets > MAX_NESTING) return end({ error: 'JSON nesting depth limit exceeded' });
    pending++;
    parser.token(type, bytes);
    if ((depth.braces > 0 || depth.brackets > 0) && depth.braces >= 0 && depth.brackets >= 0) return;
    end(parser.finish());
  });
  lexer.feed(new TextEncoder().encode(text));
  flushing = true;
  lexer.feed(new Uint8Array([0]));
  if (pending > 0) end(parser.finish());

  // consume_json: a second value, or anything after a value, makes the whole input wrong.
  let result: { value: unknown } | { error: string } | undefined;
  for (const r of results) {
    if (result && 'error' in result) break;
    result = result ? { error: 'Expecting at most one JSON value' } : r;
  }
  if (!result) throw err('Expecting a JSON value');
  if ('error' in result) throw err(result.error);
  return result.value;
}
