import type { ParserFactory } from './session.js';
import { createQmpParser, qmpNumbers } from './wire.js';

/** The daemon's QMP input parser: QEMU's lexer, streamer and parser rules and limits (wire.ts). */
export const makeQmpParser: ParserFactory = (emit) => createQmpParser(emit, { numbers: qmpNumbers });
