/**
 * Huffman-coded literals (RFC 8878, 4.2.1): the tree description (weights,
 * direct or FSE-compressed) and the decoding of one or four streams.
 */
import { BackwardBitReader, ZstdFormatError, highBit } from './bitstream.js';
import { buildFseDecodeTable, readFseCounts } from './fse.js';

const MAX_BITS = 11;

export interface HuffmanTable {
  readonly maxBits: number;
  readonly symbol: Uint8Array;
  readonly nbBits: Uint8Array;
}

/** Reads the tree description at buf[start..end); returns the table and the bytes it took. */
export function readHuffmanTable(buf: Uint8Array, start: number, end: number): { table: HuffmanTable; bytes: number } {
  if (start >= end) throw new ZstdFormatError('missing Huffman tree description');
  const header = buf[start]!;
  let weights: number[];
  let bytes: number;
  if (header < 128) {
    bytes = 1 + header;
    if (start + bytes > end) throw new ZstdFormatError('Huffman tree description runs past its block');
    weights = fseWeights(buf, start + 1, start + bytes);
  } else {
    const n = header - 127;
    bytes = 1 + ((n + 1) >> 1);
    if (start + bytes > end) throw new ZstdFormatError('Huffman tree description runs past its block');
    weights = [];
    for (let i = 0; i < n; i++) {
      const b = buf[start + 1 + (i >> 1)]!;
      weights.push(i % 2 === 0 ? b >> 4 : b & 15);
    }
  }
  return { table: huffmanTable(weights), bytes };
}

/** Weights coded with FSE: two interleaved states until the stream is overread. */
function fseWeights(buf: Uint8Array, start: number, end: number): number[] {
  const { counts, log, bytes } = readFseCounts(buf, start, end, 255, 6);
  const t = buildFseDecodeTable(counts, log);
  const r = new BackwardBitReader(buf, start + bytes, end);
  const states = [r.read(log), r.read(log)];
  const weights: number[] = [];
  for (let i = 0; ; i ^= 1) {
    if (weights.length > 254) throw new ZstdFormatError('too many Huffman weights');
    const s = states[i]!;
    weights.push(t.symbol[s]!);
    states[i] = t.baseline[s]! + r.read(t.nbBits[s]!);
    if (r.overflowed) {
      weights.push(t.symbol[states[i ^ 1]!]!);
      return weights;
    }
  }
}

/** The decoding table: the last weight is implied; codes go from the lowest weight (longest code) up. */
function huffmanTable(weights: number[]): HuffmanTable {
  let sum = 0;
  for (const w of weights) {
    if (w > MAX_BITS) throw new ZstdFormatError(`Huffman weight ${w} is too large`);
    if (w > 0) sum += 1 << (w - 1);
  }
  if (sum === 0) throw new ZstdFormatError('Huffman weights are all zero');
  const maxBits = highBit(sum) + 1;
  if (maxBits > MAX_BITS) throw new ZstdFormatError('Huffman codes are too long');
  const left = (1 << maxBits) - sum;
  if ((left & (left - 1)) !== 0) throw new ZstdFormatError('Huffman weights do not make a whole tree');
  weights.push(highBit(left) + 1);
  if (weights.length > 256) throw new ZstdFormatError('too many Huffman weights');
  const size = 1 << maxBits;
  const symbol = new Uint8Array(size);
  const nbBits = new Uint8Array(size);
  let pos = 0;
  for (let w = 1; w <= maxBits; w++) {
    const len = 1 << (w - 1);
    for (let s = 0; s < weights.length; s++) {
      if (weights[s] !== w) continue;
      symbol.fill(s, pos, pos + len);
      nbBits.fill(maxBits + 1 - w, pos, pos + len);
      pos += len;
    }
  }
  if (pos !== size) throw new ZstdFormatError('Huffman weights do not make a whole tree');
  return { maxBits, symbol, nbBits };
}

/** Decodes one stream at buf[start..end) into out[from..to); every bit must be used. */
function decodeStream(t: HuffmanTable, buf: Uint8Array, start: number, end: number, out: Uint8Array, from: number, to: number): void {
  const r = new BackwardBitReader(buf, start, end);
  for (let i = from; i < to; i++) {
    const idx = r.peek(t.maxBits);
    out[i] = t.symbol[idx]!;
    r.skip(t.nbBits[idx]!);
  }
  if (!r.finished) throw new ZstdFormatError('Huffman stream does not end with its literals');
}

/** Decodes the literals of one block: one stream, or four behind a jump table. */
export function decodeHuffmanLiterals(t: HuffmanTable, buf: Uint8Array, start: number, end: number, size: number, fourStreams: boolean): Uint8Array {
  const out = new Uint8Array(size);
  if (!fourStreams) {
    decodeStream(t, buf, start, end, out, 0, size);
    return out;
  }
  if (end - start < 6) throw new ZstdFormatError('literals jump table runs past its block');
  const s1 = buf[start]! | (buf[start + 1]! << 8);
  const s2 = buf[start + 2]! | (buf[start + 3]! << 8);
  const s3 = buf[start + 4]! | (buf[start + 5]! << 8);
  const p1 = start + 6;
  const p2 = p1 + s1;
  const p3 = p2 + s2;
  const p4 = p3 + s3;
  if (p4 > end) throw new ZstdFormatError('literals jump table runs past its block');
  const part = (size + 3) >> 2;
  if (part * 3 > size) throw new ZstdFormatError('too few literals for four streams');
  decodeStream(t, buf, p1, p2, out, 0, part);
  decodeStream(t, buf, p2, p3, out, part, 2 * part);
  decodeStream(t, buf, p3, p4, out, 2 * part, 3 * part);
  decodeStream(t, buf, p4, end, out, 3 * part, size);
  return out;
}
