import type { ParserFactory } from './session.js';

/**
 * Interim QMP input parser: splits the stream into top-level JSON values by
 * bracket balance and parses each with JSON.parse. It is replaced by the
 * streaming parser with QEMU's lexer rules and limits (wire.ts).
 */
export const makeQmpParser: ParserFactory = (emit) => {
  let buf = '';
  const decoder = new TextDecoder();
  return {
    feed(chunk) {
      buf += decoder.decode(chunk, { stream: true });
      let depth = 0;
      let inStr = false;
      let start = 0;
      for (let i = 0; i < buf.length; i++) {
        const c = buf[i];
        if (inStr) {
          if (c === '\\') i++;
          else if (c === '"') inStr = false;
          continue;
        }
        if (c === '"') inStr = true;
        else if (c === '{' || c === '[') depth++;
        else if (c === '}' || c === ']') depth--;
        if (depth <= 0 && (c === '}' || c === ']')) {
          const text = buf.slice(start, i + 1);
          start = i + 1;
          depth = 0;
          try {
            emit({ value: JSON.parse(text) });
          } catch {
            emit({ error: 'JSON parse error, expecting value' });
          }
        }
      }
      buf = buf.slice(start);
      if (buf.trim() === '') buf = '';
    },
  };
};
