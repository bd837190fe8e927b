/**
 * Finite State Entropy tables (RFC 8878, 4.1.1): the normalized counts a
 * table description carries, the decoding table built from them, and the
 * encoding table the compressor uses with the predefined distributions.
 */
import { ForwardBitReader, ZstdFormatError, highBit } from './bitstream.js';

export interface FseDecodeTable {
  readonly log: number;
  readonly symbol: Uint8Array;
  readonly nbBits: Uint8Array;
  readonly baseline: Uint16Array;
}

/** A table of one symbol and no state bits (the RLE compression mode). */
export function rleTable(symbol: number): FseDecodeTable {
  return { log: 0, symbol: Uint8Array.of(symbol), nbBits: Uint8Array.of(0), baseline: Uint16Array.of(0) };
}

/**
 * Reads a table description at buf[start..end): its accuracy log and one
 * count per symbol (-1 for "less than 1"). Returns them with the bytes read.
 */
export function readFseCounts(buf: Uint8Array, start: number, end: number, maxSymbol: number, maxLog: number): { counts: number[]; log: number; bytes: number } {
  const r = new ForwardBitReader(buf, start, end);
  const log = r.peek(4) + 5;
  r.skip(4);
  if (log > maxLog) throw new ZstdFormatError(`FSE accuracy log ${log} is over ${maxLog}`);
  const counts: number[] = [];
  let remaining = (1 << log) + 1;
  let threshold = 1 << log;
  let nbBits = log + 1;
  let previousZero = false;
  while (remaining > 1) {
    if (previousZero) {
      // Runs of zero counts: 16 bits of ones is 24 more, each pair of ones 3 more, then the last pair.
      let zeros = 0;
      while (r.peek(16) === 0xffff) {
        zeros += 24;
        r.skip(16);
      }
      while (r.peek(2) === 3) {
        zeros += 3;
        r.skip(2);
      }
      zeros += r.peek(2);
      r.skip(2);
      for (let i = 0; i < zeros; i++) counts.push(0);
      if (counts.length > maxSymbol + 1) throw new ZstdFormatError('FSE table description names too many symbols');
    }
    if (counts.length > maxSymbol) throw new ZstdFormatError('FSE table description names too many symbols');
    const max = 2 * threshold - 1 - remaining;
    let count: number;
    const low = r.peek(nbBits - 1);
    if (low < max) {
      count = low;
      r.skip(nbBits - 1);
    } else {
      count = r.peek(nbBits);
      if (count >= threshold) count -= max;
      r.skip(nbBits);
    }
    count--;
    remaining -= Math.abs(count);
    counts.push(count);
    previousZero = count === 0;
    while (remaining < threshold) {
      nbBits--;
      threshold >>= 1;
    }
  }
  if (remaining !== 1) throw new ZstdFormatError('FSE table description does not add up');
  return { counts, log, bytes: r.bytes };
}

/** Where each state's symbol goes: the spread both the decoder and the encoder make. */
function spread(counts: readonly number[], log: number): Uint8Array {
  const size = 1 << log;
  const symbols = new Uint8Array(size);
  let high = size - 1;
  for (let s = 0; s < counts.length; s++) if (counts[s] === -1) symbols[high--] = s;
  const step = (size >> 1) + (size >> 3) + 3;
  const mask = size - 1;
  let pos = 0;
  for (let s = 0; s < counts.length; s++) {
    for (let i = 0; i < counts[s]!; i++) {
      symbols[pos] = s;
      do pos = (pos + step) & mask;
      while (pos > high);
    }
  }
  if (pos !== 0) throw new ZstdFormatError('FSE counts do not fill their table');
  return symbols;
}

export function buildFseDecodeTable(counts: readonly number[], log: number): FseDecodeTable {
  const size = 1 << log;
  const symbol = spread(counts, log);
  const next = counts.map((c) => (c === -1 ? 1 : c));
  const nbBits = new Uint8Array(size);
  const baseline = new Uint16Array(size);
  for (let u = 0; u < size; u++) {
    const state = next[symbol[u]!]!++;
    const n = log - highBit(state);
    nbBits[u] = n;
    baseline[u] = (state << n) - size;
  }
  return { log, symbol, nbBits, baseline };
}

export interface FseEncodeTable {
  readonly log: number;
  /** Next state values (size..2·size-1), by symbol then position. */
  readonly stateTable: Uint16Array;
  readonly deltaNbBits: Int32Array;
  readonly deltaFindState: Int32Array;
}

export function buildFseEncodeTable(counts: readonly number[], log: number): FseEncodeTable {
  const size = 1 << log;
  const symbols = spread(counts, log);
  const cumul = new Int32Array(counts.length + 1);
  for (let s = 0; s < counts.length; s++) cumul[s + 1] = cumul[s]! + (counts[s] === -1 ? 1 : counts[s]!);
  const stateTable = new Uint16Array(size);
  for (let u = 0; u < size; u++) stateTable[cumul[symbols[u]!]!++] = size + u;
  const deltaNbBits = new Int32Array(counts.length);
  const deltaFindState = new Int32Array(counts.length);
  let total = 0;
  for (let s = 0; s < counts.length; s++) {
    const c = counts[s]!;
    if (c === 0) deltaNbBits[s] = ((log + 1) << 16) - size;
    else if (c === 1 || c === -1) {
      deltaNbBits[s] = (log << 16) - size;
      deltaFindState[s] = total - 1;
      total++;
    } else {
      const maxBitsOut = log - highBit(c - 1);
      deltaNbBits[s] = (maxBitsOut << 16) - (c << maxBitsOut);
      deltaFindState[s] = total - c;
      total += c;
    }
  }
  return { log, stateTable, deltaNbBits, deltaFindState };
}

/** One FSE encoder state (the compressor runs three, interleaved in one stream). */
export class FseEncoder {
  private state = 0;

  constructor(private readonly t: FseEncodeTable) {}

  /** Starts on the first symbol encoded (the last one decoded), writing nothing. */
  init(symbol: number): void {
    const t = this.t;
    const nbBitsOut = (t.deltaNbBits[symbol]! + (1 << 15)) >> 16;
    const value = (nbBitsOut << 16) - t.deltaNbBits[symbol]!;
    this.state = t.stateTable[(value >> nbBitsOut) + t.deltaFindState[symbol]!]!;
  }

  encode(symbol: number, out: { add(value: number, n: number): void }): void {
    const t = this.t;
    const nbBitsOut = (this.state + t.deltaNbBits[symbol]!) >> 16;
    out.add(this.state, nbBitsOut);
    this.state = t.stateTable[(this.state >> nbBitsOut) + t.deltaFindState[symbol]!]!;
  }

  /** The final state, which the decoder reads first. */
  flush(out: { add(value: number, n: number): void }): void {
    out.add(this.state, this.t.log);
  }
}
