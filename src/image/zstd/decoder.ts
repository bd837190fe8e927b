/**
 * zstd decompression (RFC 8878): frames, their blocks (raw, RLE,
 * compressed), literals sections and sequence execution with repeat
 * offsets. Written for bounded output: everything is decoded into the
 * caller's buffer, and a frame that would overrun it is refused.
 */
import { ZstdFormatError } from './bitstream.js';
import { type HuffmanTable, decodeHuffmanLiterals, readHuffmanTable } from './huffman.js';
import { type SequenceTables, decodeSequences } from './sequences.js';

export const ZSTD_MAGIC = 0xfd2fb528;
const BLOCK_MAX = 128 * 1024;

/** What a frame's blocks carry from one to the next. */
interface FrameState {
  huffman?: HuffmanTable;
  tables: SequenceTables;
  reps: [number, number, number];
  /** Where the frame's output begins in the buffer (matches reach no further back). */
  base: number;
}

const u32 = (b: Uint8Array, p: number) => (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0;

/**
 * Decodes the frames at input[0..) into out until out is full, as QEMU's
 * qcow2 does with ZSTD_decompressStream: the last frame must end exactly
 * there; whatever follows it (the sector's padding) is not read.
 */
export function zstdDecompressInto(input: Uint8Array, out: Uint8Array): void {
  let inPos = 0;
  let outPos = 0;
  while (outPos < out.length) {
    if (inPos + 4 > input.length) throw new ZstdFormatError(`zstd data ends after ${outPos} of ${out.length} bytes`);
    const magic = u32(input, inPos);
    if ((magic & 0xfffffff0) === 0x184d2a50) {
      if (inPos + 8 > input.length) throw new ZstdFormatError('skippable frame runs past the data');
      inPos += 8 + u32(input, inPos + 4);
      continue;
    }
    if (magic !== ZSTD_MAGIC) throw new ZstdFormatError(`no zstd frame at byte ${inPos} (magic 0x${magic.toString(16)})`);
    [inPos, outPos] = decodeFrame(input, inPos + 4, out, outPos);
  }
}

/** The `size` bytes the frames at input[0..) hold (zstdDecompressInto into a new buffer). */
export function zstdDecompress(input: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  zstdDecompressInto(input, out);
  return out;
}

function decodeFrame(input: Uint8Array, pos: number, out: Uint8Array, outPos: number): [number, number] {
  const need = (n: number) => {
    if (pos + n > input.length) throw new ZstdFormatError('truncated zstd frame');
  };
  need(1);
  const fhd = input[pos++]!;
  if (fhd & 0x08) throw new ZstdFormatError('reserved bit set in the frame header');
  const singleSegment = (fhd & 0x20) !== 0;
  const checksum = (fhd & 0x04) !== 0;
  const dictIdBytes = [0, 1, 2, 4][fhd & 3]!;
  const fcsFlag = fhd >> 6;
  const fcsBytes = fcsFlag === 0 ? (singleSegment ? 1 : 0) : [0, 2, 4, 8][fcsFlag]!;
  need((singleSegment ? 0 : 1) + dictIdBytes + fcsBytes);
  if (!singleSegment) pos++; // The window size only bounds a streaming decoder's memory; ours is the output buffer.
  let dictId = 0;
  for (let i = 0; i < dictIdBytes; i++) dictId += input[pos + i]! * 2 ** (8 * i);
  pos += dictIdBytes;
  if (dictId !== 0) throw new ZstdFormatError(`zstd frame needs dictionary ${dictId}`);
  let contentSize: number | undefined;
  if (fcsBytes > 0) {
    contentSize = 0;
    for (let i = 0; i < fcsBytes; i++) contentSize += input[pos + i]! * 2 ** (8 * i);
    if (fcsBytes === 2) contentSize += 256;
    pos += fcsBytes;
    if (contentSize > out.length - outPos) throw new ZstdFormatError(`zstd frame holds ${contentSize} bytes where ${out.length - outPos} are left`);
  }
  const state: FrameState = { tables: {}, reps: [1, 4, 8], base: outPos };
  for (;;) {
    need(3);
    const h = input[pos]! | (input[pos + 1]! << 8) | (input[pos + 2]! << 16);
    pos += 3;
    const last = (h & 1) !== 0;
    const type = (h >> 1) & 3;
    const size = h >>> 3;
    if (type === 0) {
      need(size);
      if (size > out.length - outPos) throw new ZstdFormatError('zstd frame holds more than its place');
      out.set(input.subarray(pos, pos + size), outPos);
      pos += size;
      outPos += size;
    } else if (type === 1) {
      need(1);
      if (size > out.length - outPos) throw new ZstdFormatError('zstd frame holds more than its place');
      out.fill(input[pos]!, outPos, outPos + size);
      pos += 1;
      outPos += size;
    } else if (type === 2) {
      if (size > BLOCK_MAX) throw new ZstdFormatError('compressed block over 128 KiB');
      need(size);
      outPos = decodeBlock(input, pos, pos + size, out, outPos, state);
      pos += size;
    } else throw new ZstdFormatError('reserved block type');
    if (last) break;
  }
  // The content checksum (XXH64's low half) is not verified: qcow2's compressor writes none.
  if (checksum) {
    need(4);
    pos += 4;
  }
  if (contentSize !== undefined && outPos - state.base !== contentSize)
    throw new ZstdFormatError(`zstd frame holds ${outPos - state.base} bytes, its header says ${contentSize}`);
  return [pos, outPos];
}

function decodeBlock(input: Uint8Array, start: number, end: number, out: Uint8Array, outPos: number, state: FrameState): number {
  const { literals, bytes } = decodeLiterals(input, start, end, state);
  const seqs = decodeSequences(input, start + bytes, end, state.tables);
  const reps = state.reps;
  let lit = 0;
  for (let i = 0; i < seqs.count; i++) {
    const ll = seqs.literalLength[i]!;
    const ml = seqs.matchLength[i]!;
    const ov = seqs.offsetValue[i]!;
    if (lit + ll > literals.length) throw new ZstdFormatError('sequence takes more literals than the block has');
    if (outPos + ll + ml > out.length) throw new ZstdFormatError('zstd frame holds more than its place');
    // Short copies byte by byte: a subarray per sequence costs more than the copy.
    if (ll < 32) for (let k = 0; k < ll; k++) out[outPos + k] = literals[lit + k]!;
    else out.set(literals.subarray(lit, lit + ll), outPos);
    lit += ll;
    outPos += ll;
    let offset: number;
    if (ov > 3) {
      offset = ov - 3;
      reps[2] = reps[1];
      reps[1] = reps[0];
      reps[0] = offset;
    } else {
      // Repeat offsets: with no literals before the match, the codes shift by one.
      const idx = ov - 1 + (ll === 0 ? 1 : 0);
      if (idx === 0) offset = reps[0];
      else if (idx === 3) {
        offset = reps[0] - 1;
        reps[2] = reps[1];
        reps[1] = reps[0];
        reps[0] = offset;
      } else {
        offset = reps[idx]!;
        if (idx === 2) reps[2] = reps[1];
        reps[1] = reps[0];
        reps[0] = offset;
      }
    }
    if (offset <= 0 || offset > outPos - state.base) throw new ZstdFormatError(`match offset ${offset} reaches before the frame`);
    if (offset >= ml && ml >= 32) out.copyWithin(outPos, outPos - offset, outPos - offset + ml);
    else for (let k = 0; k < ml; k++) out[outPos + k] = out[outPos + k - offset]!;
    outPos += ml;
  }
  const rest = literals.length - lit;
  if (outPos + rest > out.length) throw new ZstdFormatError('zstd frame holds more than its place');
  out.set(literals.subarray(lit), outPos);
  return outPos + rest;
}

function decodeLiterals(input: Uint8Array, start: number, end: number, state: FrameState): { literals: Uint8Array; bytes: number } {
  if (start >= end) throw new ZstdFormatError('empty compressed block');
  const b0 = input[start]!;
  const type = b0 & 3;
  const sizeFormat = (b0 >> 2) & 3;
  const byte = (i: number) => {
    if (start + i >= end) throw new ZstdFormatError('literals header runs past its block');
    return input[start + i]!;
  };
  if (type === 0 || type === 1) {
    let size: number;
    let header: number;
    if ((sizeFormat & 1) === 0) [size, header] = [b0 >> 3, 1];
    else if (sizeFormat === 1) [size, header] = [(b0 >> 4) + (byte(1) << 4), 2];
    else [size, header] = [(b0 >> 4) + (byte(1) << 4) + (byte(2) << 12), 3];
    if (size > BLOCK_MAX) throw new ZstdFormatError('more than 128 KiB of literals');
    const at = start + header;
    if (type === 0) {
      if (at + size > end) throw new ZstdFormatError('raw literals run past their block');
      return { literals: input.subarray(at, at + size), bytes: header + size };
    }
    if (at >= end) throw new ZstdFormatError('RLE literals run past their block');
    return { literals: new Uint8Array(size).fill(input[at]!), bytes: header + 1 };
  }
  let regenerated: number;
  let compressed: number;
  let header: number;
  if (sizeFormat <= 1) {
    const v = b0 | (byte(1) << 8) | (byte(2) << 16);
    [regenerated, compressed, header] = [(v >> 4) & 0x3ff, (v >> 14) & 0x3ff, 3];
  } else if (sizeFormat === 2) {
    const v = (b0 | (byte(1) << 8) | (byte(2) << 16) | (byte(3) << 24)) >>> 0;
    [regenerated, compressed, header] = [(v >>> 4) & 0x3fff, (v >>> 18) & 0x3fff, 4];
  } else {
    const v = (b0 | (byte(1) << 8) | (byte(2) << 16) | (byte(3) << 24)) >>> 0;
    [regenerated, compressed, header] = [(v >>> 4) & 0x3ffff, ((v >>> 22) | (byte(4) << 10)) & 0x3ffff, 5];
  }
  if (regenerated > BLOCK_MAX) throw new ZstdFormatError('more than 128 KiB of literals');
  let p = start + header;
  const streamsEnd = p + compressed;
  if (streamsEnd > end) throw new ZstdFormatError('compressed literals run past their block');
  if (type === 2) {
    const { table, bytes } = readHuffmanTable(input, p, streamsEnd);
    state.huffman = table;
    p += bytes;
  } else if (!state.huffman) throw new ZstdFormatError('treeless literals with no earlier Huffman tree');
  const literals = decodeHuffmanLiterals(state.huffman, input, p, streamsEnd, regenerated, sizeFormat !== 0);
  return { literals, bytes: header + compressed };
}
