/**
 * The sequences section of a compressed block (RFC 8878, 3.1.1.3.2): the
 * literal length, match length and offset codes, their predefined
 * distributions, and the decoding of the interleaved FSE streams.
 */
import { BackwardBitReader, ZstdFormatError } from './bitstream.js';
import { type FseDecodeTable, buildFseDecodeTable, readFseCounts, rleTable } from './fse.js';

export const LL_BASE = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 22, 24, 28, 32, 40, 48, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
export const LL_BITS = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
export const ML_BASE = [
  3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 37, 39, 41, 43, 47, 51, 59, 67, 83, 99, 131, 259, 515,
  1027, 2051, 4099, 8195, 16387, 32771, 65539,
];
export const ML_BITS = [
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
];

export const LL_DEFAULT = { log: 6, counts: [4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1, 1, 1, -1, -1, -1, -1] };
export const ML_DEFAULT = {
  log: 6,
  counts: [1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1],
};
export const OF_DEFAULT = { log: 5, counts: [1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1] };

const PREDEFINED = {
  ll: buildFseDecodeTable(LL_DEFAULT.counts, LL_DEFAULT.log),
  of: buildFseDecodeTable(OF_DEFAULT.counts, OF_DEFAULT.log),
  ml: buildFseDecodeTable(ML_DEFAULT.counts, ML_DEFAULT.log),
};
const LIMITS = { ll: { maxSymbol: 35, maxLog: 9 }, of: { maxSymbol: 31, maxLog: 8 }, ml: { maxSymbol: 52, maxLog: 9 } };

/** The tables a frame's blocks may repeat (compression mode 3). */
export interface SequenceTables {
  ll?: FseDecodeTable;
  of?: FseDecodeTable;
  ml?: FseDecodeTable;
}

/** Decoded sequences, as parallel arrays: literals to copy, match length, offset value (before repeat offsets). */
export interface Sequences {
  count: number;
  literalLength: Int32Array;
  matchLength: Int32Array;
  offsetValue: Float64Array;
}

/** Decodes the sequences section at buf[start..end), the rest of its block. */
export function decodeSequences(buf: Uint8Array, start: number, end: number, tables: SequenceTables): Sequences {
  let p = start;
  const need = (n: number) => {
    if (p + n > end) throw new ZstdFormatError('sequences section runs past its block');
  };
  need(1);
  const b0 = buf[p]!;
  let count: number;
  if (b0 < 128) {
    count = b0;
    p += 1;
  } else if (b0 < 255) {
    need(2);
    count = ((b0 - 128) << 8) + buf[p + 1]!;
    p += 2;
  } else {
    need(3);
    count = buf[p + 1]! + (buf[p + 2]! << 8) + 0x7f00;
    p += 3;
  }
  const empty = { count: 0, literalLength: new Int32Array(0), matchLength: new Int32Array(0), offsetValue: new Float64Array(0) };
  if (count === 0) {
    if (p !== end) throw new ZstdFormatError('bytes after an empty sequences section');
    return empty;
  }
  need(1);
  const modes = buf[p++]!;
  if ((modes & 3) !== 0) throw new ZstdFormatError('reserved bits set in the sequence compression modes');
  const pick = (kind: 'll' | 'of' | 'ml', mode: number): FseDecodeTable => {
    let t: FseDecodeTable | undefined;
    if (mode === 0) t = PREDEFINED[kind];
    else if (mode === 1) {
      need(1);
      const symbol = buf[p++]!;
      if (symbol > LIMITS[kind].maxSymbol) throw new ZstdFormatError('RLE sequence code out of range');
      t = rleTable(symbol);
    } else if (mode === 2) {
      const { counts, log, bytes } = readFseCounts(buf, p, end, LIMITS[kind].maxSymbol, LIMITS[kind].maxLog);
      t = buildFseDecodeTable(counts, log);
      p += bytes;
    } else {
      t = tables[kind];
      if (!t) throw new ZstdFormatError('a repeated sequence table that was never given');
    }
    tables[kind] = t;
    return t;
  };
  const ll = pick('ll', modes >> 6);
  const of = pick('of', (modes >> 4) & 3);
  const ml = pick('ml', (modes >> 2) & 3);
  const r = new BackwardBitReader(buf, p, end);
  let llState = r.read(ll.log);
  let ofState = r.read(of.log);
  let mlState = r.read(ml.log);
  const literalLength = new Int32Array(count);
  const matchLength = new Int32Array(count);
  const offsetValue = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const llCode = ll.symbol[llState]!;
    const ofCode = of.symbol[ofState]!;
    const mlCode = ml.symbol[mlState]!;
    if (llCode > 35 || mlCode > 52 || ofCode > 31) throw new ZstdFormatError('sequence code out of range');
    offsetValue[i] = ofCode <= 24 ? (1 << ofCode) + r.read(ofCode) : 2 ** ofCode + r.readLong(ofCode);
    matchLength[i] = ML_BASE[mlCode]! + r.read(ML_BITS[mlCode]!);
    literalLength[i] = LL_BASE[llCode]! + r.read(LL_BITS[llCode]!);
    if (i < count - 1) {
      llState = ll.baseline[llState]! + r.read(ll.nbBits[llState]!);
      mlState = ml.baseline[mlState]! + r.read(ml.nbBits[mlState]!);
      ofState = of.baseline[ofState]! + r.read(of.nbBits[ofState]!);
    }
    if (r.overflowed) throw new ZstdFormatError('sequences stream is shorter than its sequences');
  }
  if (!r.finished) throw new ZstdFormatError('sequences stream does not end with its sequences');
  return { count, literalLength, matchLength, offsetValue };
}
