/**
 * The bottom of the QMP layer: socket bytes in, one WireItem per message
 * out, exactly as QEMU 7.2's monitor reads its input (json-lexer.ts,
 * json-parser.ts, json-streamer.ts hold the three stages; this file is the
 * surface the server uses).
 *
 * What QEMU 7.2 does with each item (monitor/qmp.c handle_qmp_command and
 * monitor_qmp_dispatcher_co; recorded in test/qmp/fixtures/wire-qsd-7.2.json):
 * every error item, whatever its kind, is answered with parseErrorReply(),
 * in order with the other replies and never with an id; nothing is skipped
 * silently. A value that is not an object is answered by the dispatcher
 * ("QMP input must be a JSON object"), also without an id.
 */
import { JsonStreamer, type StreamerOptions, type WireItem } from './json-streamer.js';

export { JsonLexer, type TokenType } from './json-lexer.js';
export { exactNumbers, IntegralDouble, JsonParser, qmpNumbers, type NumberMapper, plainNumbers, type QNum, qnum } from './json-parser.js';
export { JsonStreamer, QEMU_LIMITS, type StreamerOptions, type WireErrorKind, type WireItem, type WireLimits } from './json-streamer.js';

/** A QMP input stream: feed it socket bytes; it calls back once per message. */
export interface WireInput {
  feed(chunk: Uint8Array): void;
}

/** A parser for one connection (QEMU makes a fresh one per connection). */
export function createQmpParser(emit: (item: WireItem) => void, opts: StreamerOptions = {}): WireInput {
  return new JsonStreamer(emit, opts);
}

/** The reply QEMU 7.2 sends for a wire error: GenericError, QEMU's desc, no id. */
export function parseErrorReply(item: { error: string }): { error: { class: 'GenericError'; desc: string } } {
  return { error: { class: 'GenericError', desc: item.error } };
}

/**
 * Parses a complete text the way the monitor would, for tools and tests:
 * every message it holds. A trailing number or keyword needs a following
 * byte to end it, as on the wire; a newline is appended for that.
 */
export function parseQmpMessages(input: string | Uint8Array, opts: StreamerOptions = {}): WireItem[] {
  const items: WireItem[] = [];
  const p = createQmpParser((i) => items.push(i), opts);
  p.feed(typeof input === 'string' ? Buffer.from(input, 'utf8') : input);
  p.feed(NEWLINE);
  return items;
}

const NEWLINE = Uint8Array.of(0x0a);
