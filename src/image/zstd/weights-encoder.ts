/**
 * A Huffman tree description (RFC 8878, 4.2.1.1) for the compressor: the
 * weights FSE-compressed (a table description, then two interleaved states),
 * or written directly, 4 bits each, whichever is smaller and possible.
 * Every FSE-compressed description is decoded back before it is used, so a
 * description the decoders would misread (a state that reads no bits at
 * the stream's end) is never written: the direct form or nothing instead.
 */
import { BitWriter } from './bitstream.js';
import { FseEncoder, buildFseEncodeTable } from './fse.js';
import { readHuffmanTable } from './huffman.js';

const WEIGHTS_LOG = 6;

/** Counts scaled to sum 2^log, each present one at least 1; undefined when that cannot be done. */
function normalize(counts: readonly number[], total: number, log: number): number[] | undefined {
  const size = 1 << log;
  const norm = counts.map((c) => (c === 0 ? 0 : Math.max(1, Math.round((c * size) / total))));
  let largest = 0;
  for (let s = 1; s < norm.length; s++) if (norm[s]! > norm[largest]!) largest = s;
  norm[largest]! += size - norm.reduce((a, b) => a + b, 0);
  return norm[largest]! >= 1 ? norm : undefined;
}

/** The table description readFseCounts reads (FSE_writeNCount), for counts without "less than 1" entries. */
function writeCounts(norm: readonly number[], log: number, out: BitWriter): void {
  out.add(log - 5, 4);
  let remaining = (1 << log) + 1;
  let threshold = 1 << log;
  let nbBits = log + 1;
  let previousZero = false;
  for (let s = 0; s < norm.length && remaining > 1; ) {
    if (previousZero) {
      let zeros = 0;
      while (s + zeros < norm.length && norm[s + zeros] === 0) zeros++;
      s += zeros;
      for (; zeros >= 24; zeros -= 24) out.add(0xffff, 16);
      for (; zeros >= 3; zeros -= 3) out.add(3, 2);
      out.add(zeros, 2);
    }
    const count = norm[s]!;
    let v = count + 1;
    const max = 2 * threshold - 1 - remaining;
    if (v >= threshold) v += max;
    out.add(v, v < max ? nbBits - 1 : nbBits);
    remaining -= count;
    previousZero = count === 0;
    while (remaining < threshold) {
      nbBits--;
      threshold >>= 1;
    }
    s++;
  }
}

/** The FSE-compressed form (header byte included), or undefined. */
function compressedWeights(weights: readonly number[]): Uint8Array | undefined {
  const counts = new Array<number>(12).fill(0);
  for (const w of weights) counts[w]!++;
  let last = 11;
  while (counts[last] === 0) last--;
  if (counts.filter((c) => c > 0).length < 2) return undefined;
  const norm = normalize(counts.slice(0, last + 1), weights.length, WEIGHTS_LOG);
  if (!norm) return undefined;
  const table = new BitWriter(16);
  writeCounts(norm, WEIGHTS_LOG, table);
  // The description ends on a byte boundary; close() would add an end mark, so pad by hand.
  const description = table.bytesSoFar();
  const t = buildFseEncodeTable(norm, WEIGHTS_LOG);
  const a = new FseEncoder(t);
  const b = new FseEncoder(t);
  const bits = new BitWriter(weights.length);
  const n = weights.length;
  // Last weight first, alternating states so that the decoder's first state yields the first weight.
  let i = n - 1;
  if (n % 2 === 1) {
    a.init(weights[i--]!);
    b.init(weights[i--]!);
    a.encode(weights[i--]!, bits);
  } else {
    b.init(weights[i--]!);
    a.init(weights[i--]!);
  }
  while (i >= 0) {
    b.encode(weights[i--]!, bits);
    a.encode(weights[i--]!, bits);
  }
  b.flush(bits);
  a.flush(bits);
  const stream = bits.close();
  const size = description.length + stream.length;
  if (size >= 128) return undefined;
  const out = new Uint8Array(1 + size);
  out[0] = size;
  out.set(description, 1);
  out.set(stream, 1 + description.length);
  return out;
}

/** The tree description for `weights` (of every symbol but the last), the smaller form that reads back right. */
export function treeDescription(weights: readonly number[]): Uint8Array | undefined {
  let best: Uint8Array | undefined;
  if (weights.length <= 128) {
    best = new Uint8Array(1 + ((weights.length + 1) >> 1));
    best[0] = 127 + weights.length;
    for (let s = 0; s < weights.length; s += 2) best[1 + (s >> 1)] = (weights[s]! << 4) | (weights[s + 1] ?? 0);
  }
  const fse = weights.length >= 2 ? compressedWeights(weights) : undefined;
  if (fse && (!best || fse.length < best.length) && readsBack(fse, weights)) best = fse;
  return best;
}

/** Whether the description decodes to these weights (and nothing more). */
function readsBack(description: Uint8Array, weights: readonly number[]): boolean {
  try {
    const { table, bytes } = readHuffmanTable(description, 0, description.length);
    if (bytes !== description.length) return false;
    // The table's symbols of each weight must be the ones given (the last symbol's is implied).
    const lengthOf = new Map<number, number>();
    for (let i = 0; i < table.symbol.length; i++) lengthOf.set(table.symbol[i]!, table.nbBits[i]!);
    return weights.every((w, s) => (w === 0 ? !lengthOf.has(s) : lengthOf.get(s) === table.maxBits + 1 - w));
  } catch {
    return false;
  }
}
