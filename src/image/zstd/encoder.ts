/**
 * zstd compression into one frame any zstd decoder reads: a greedy LZ77
 * match finder (hash chains over the whole frame), Huffman-coded literals
 * where that pays (huffman-encoder.ts), and sequences coded with the
 * predefined FSE distributions. Blocks that would not shrink are stored
 * raw, runs of one byte as RLE blocks.
 */
import { BitWriter, highBit } from './bitstream.js';
import { FseEncoder, buildFseEncodeTable } from './fse.js';
import { huffmanLiteralsSection } from './huffman-encoder.js';
import { ZSTD_MAGIC } from './decoder.js';
import { LL_BASE, LL_BITS, LL_DEFAULT, ML_BASE, ML_BITS, ML_DEFAULT, OF_DEFAULT } from './sequences.js';

const BLOCK_MAX = 128 * 1024;
const MIN_MATCH = 4;
const HASH_LOG = 16;
/** Candidates looked at per position: more finds longer matches, slower. */
const CHAIN_DEPTH = 16;

const LL_TABLE = buildFseEncodeTable(LL_DEFAULT.counts, LL_DEFAULT.log);
const ML_TABLE = buildFseEncodeTable(ML_DEFAULT.counts, ML_DEFAULT.log);
const OF_TABLE = buildFseEncodeTable(OF_DEFAULT.counts, OF_DEFAULT.log);

/** A growing byte buffer. */
class Bytes {
  buf: Uint8Array;
  length = 0;

  constructor(capacity: number) {
    this.buf = new Uint8Array(capacity);
  }

  push(...bytes: number[]): void {
    this.reserve(bytes.length);
    for (const b of bytes) this.buf[this.length++] = b & 0xff;
  }

  /** Appends src[from..to) (short runs copied byte by byte: a subarray costs more). */
  appendRange(src: Uint8Array, from: number, to: number): void {
    const n = to - from;
    if (n >= 64) return this.append(src.subarray(from, to));
    this.reserve(n);
    for (let i = from; i < to; i++) this.buf[this.length++] = src[i]!;
  }

  append(data: Uint8Array): void {
    this.reserve(data.length);
    this.buf.set(data, this.length);
    this.length += data.length;
  }

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    grown.set(this.buf.subarray(0, this.length));
    this.buf = grown;
  }

  get bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

const hash4 = (src: Uint8Array, p: number) =>
  (Math.imul(src[p]! | (src[p + 1]! << 8) | (src[p + 2]! << 16) | (src[p + 3]! << 24), 0x9e3779b1) >>> (32 - HASH_LOG)) & ((1 << HASH_LOG) - 1);

/** Hash chains over the frame: the latest position entered per hash, and each entered position's previous one. */
class MatchFinder {
  private readonly head = new Int32Array(1 << HASH_LOG).fill(-1);
  private readonly prev: Int32Array;
  /** The offset of the match find() returned the length of. */
  offset = 0;

  constructor(private readonly src: Uint8Array) {
    this.prev = new Int32Array(src.length);
  }

  /** Enters position p (which has four bytes) into the chains. */
  insert(p: number): void {
    const h = hash4(this.src, p);
    this.prev[p] = this.head[h]!;
    this.head[h] = p;
  }

  /** Enters the positions from..to-1 that have four bytes. */
  insertRange(from: number, to: number): void {
    const limit = Math.min(to, this.src.length - MIN_MATCH + 1);
    for (let p = from; p < limit; p++) this.insert(p);
  }

  /** The length of the longest match for p ending by `end` (0 when none; its offset in `offset`); then enters p. */
  findAndInsert(p: number, end: number): number {
    const src = this.src;
    const h = hash4(src, p);
    let best = 0;
    let cand = this.head[h]!;
    for (let depth = 0; cand >= 0 && depth < CHAIN_DEPTH; depth++, cand = this.prev[cand]!) {
      if (src[cand + best] !== src[p + best]) continue;
      let n = 0;
      while (p + n < end && src[cand + n] === src[p + n]) n++;
      if (n > best) {
        best = n;
        this.offset = p - cand;
        if (p + n === end) break;
      }
    }
    this.prev[p] = this.head[h]!;
    this.head[h] = p;
    return best >= MIN_MATCH ? best : 0;
  }
}

function llCode(ll: number): number {
  if (ll < 16) return ll;
  let c = LL_BASE.length - 1;
  while (LL_BASE[c]! > ll) c--;
  return c;
}

function mlCode(ml: number): number {
  if (ml < 35) return ml - 3;
  let c = ML_BASE.length - 1;
  while (ML_BASE[c]! > ml) c--;
  return c;
}

/** A raw (type 0) or RLE (type 1) literals header: 1, 2 or 3 bytes by size. */
function literalsHeader(out: Bytes, size: number, type = 0): void {
  if (size < 32) out.push((size << 3) | type);
  else if (size < 4096) out.push((size << 4) | 0x04 | type, size >> 4);
  else out.push((size << 4) | 0x0c | type, size >> 4, size >> 12);
}

/** The literals section: Huffman-coded when that is smaller, one byte repeated, or the bytes as they are. */
function literalsSection(out: Bytes, lit: Uint8Array): void {
  const n = lit.length;
  const headerBytes = n < 32 ? 1 : n < 4096 ? 2 : 3;
  let same = n > 1;
  for (let i = 1; same && i < n; i++) same = lit[i] === lit[0];
  if (same) {
    literalsHeader(out, n, 1);
    out.push(lit[0]!);
    return;
  }
  const huffman = huffmanLiteralsSection(lit, headerBytes + n);
  if (huffman) return out.append(huffman);
  literalsHeader(out, n);
  out.append(lit);
}

/** One compressed block's content for src[start..end), or undefined when it would not be smaller. */
function compressBlock(src: Uint8Array, start: number, end: number, finder: MatchFinder): Uint8Array | undefined {
  const lls: number[] = [];
  const mls: number[] = [];
  const offs: number[] = [];
  const literals = new Bytes(end - start);
  let anchor = start;
  let p = start;
  while (p + MIN_MATCH <= end) {
    const len = finder.findAndInsert(p, end);
    if (len === 0) {
      // Past a long stretch without matches (incompressible data), look less often, as zstd's fast levels do.
      p += 1 + ((p - anchor) >> 8);
      continue;
    }
    literals.appendRange(src, anchor, p);
    lls.push(p - anchor);
    mls.push(len);
    offs.push(finder.offset);
    // The positions inside the match are entered too (of a long one, its last few), for the matches after it.
    finder.insertRange(len <= 64 ? p + 1 : p + len - 8, p + len);
    p += len;
    anchor = p;
  }
  literals.appendRange(src, anchor, end);
  const out = new Bytes(end - start);
  literalsSection(out, literals.bytes);
  const n = lls.length;
  if (n < 128) out.push(n);
  else if (n < 0x7f00) out.push((n >> 8) + 128, n);
  else out.push(255, n - 0x7f00, (n - 0x7f00) >> 8);
  if (n > 0) {
    out.push(0); // All three codes with their predefined distributions.
    const bits = new BitWriter(n * 8);
    const ll = new FseEncoder(LL_TABLE);
    const ml = new FseEncoder(ML_TABLE);
    const of = new FseEncoder(OF_TABLE);
    // Written last sequence first: the decoder reads the stream backwards.
    for (let i = n - 1; i >= 0; i--) {
      const llc = llCode(lls[i]!);
      const mlc = mlCode(mls[i]!);
      const ov = offs[i]! + 3; // Offset values over 3 are plain offsets (no repeat codes used).
      const ofc = highBit(ov);
      if (i === n - 1) {
        ml.init(mlc);
        of.init(ofc);
        ll.init(llc);
      } else {
        of.encode(ofc, bits);
        ml.encode(mlc, bits);
        ll.encode(llc, bits);
      }
      bits.add(lls[i]! - LL_BASE[llc]!, LL_BITS[llc]!);
      bits.add(mls[i]! - ML_BASE[mlc]!, ML_BITS[mlc]!);
      bits.add(ov - 2 ** ofc, ofc);
    }
    ml.flush(bits);
    of.flush(bits);
    ll.flush(bits);
    out.append(bits.close());
  }
  return out.length < end - start ? out.bytes : undefined;
}

/** Compresses src into one zstd frame (single segment, content size given, no checksum). */
export function zstdCompress(src: Uint8Array): Uint8Array {
  const out = new Bytes(64 + (src.length >> 1));
  const size = src.length;
  out.push(ZSTD_MAGIC, ZSTD_MAGIC >> 8, ZSTD_MAGIC >> 16, ZSTD_MAGIC >>> 24);
  if (size < 256) out.push(0x20, size);
  else if (size < 65536 + 256) out.push(0x60, size - 256, (size - 256) >> 8);
  else out.push(0xa0, size, size >> 8, size >> 16, size >>> 24);
  const finder = new MatchFinder(src);
  let start = 0;
  do {
    const end = Math.min(size, start + BLOCK_MAX);
    const last = end === size ? 1 : 0;
    const n = end - start;
    const first = src[start];
    let uniform = n > 0;
    for (let i = start + 1; uniform && i < end; i++) uniform = src[i] === first;
    const block = uniform ? undefined : compressBlock(src, start, end, finder);
    const header = (type: number, s: number) => out.push(last | (type << 1) | (s << 3), s >> 5, s >> 13);
    if (uniform) {
      finder.insertRange(Math.max(start, end - 8), end);
      header(1, n);
      out.push(first!);
    } else if (block) {
      header(2, block.length);
      out.append(block);
    } else {
      header(0, n);
      out.append(src.subarray(start, end));
    }
    start = end;
  } while (start < size);
  return out.bytes;
}
