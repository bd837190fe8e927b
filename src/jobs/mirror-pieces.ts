import { isZero } from '../image/request.js';
import type { WritePiece } from '../image/types.js';

/** Part of a mirror operation: data to copy, or zeroes to write. */
export interface Span {
  offset: number;
  length: number;
  zero: boolean;
}

export interface PieceRules {
  /** The dirty bitmap's granularity: spans start on a chunk, and data is told from holes chunk by chunk. */
  granularity: number;
  /** Whether zeroes over [offset, offset+length) may be written as zeroes on the target (whole target clusters). */
  zeroAllowed(offset: number, length: number): boolean;
  /** The mirror's unmap option, for every zero piece. */
  unmap: boolean;
}

/**
 * The write of one mirror operation whose data spans were read into `buf`
 * (which starts at guest offset `bufOffset`). QEMU learns a raw file's
 * holes from SEEK_HOLE and writes zeroes for every run of whole chunks
 * that lies in one (when it covers whole target clusters), copying any
 * chunk that holds data; blockemu cannot seek for holes, so a data span
 * is looked at chunk by chunk instead and all-zero chunks are treated as
 * such a hole. Adjacent pieces of one kind are joined. Returns the pieces
 * and how many bytes of them are data.
 */
export function writePiecesOf(spans: readonly Span[], buf: Uint8Array | undefined, bufOffset: number, rules: PieceRules): { pieces: WritePiece[]; dataBytes: number } {
  const pieces: WritePiece[] = [];
  let dataBytes = 0;
  const push = (offset: number, length: number, data: boolean) => {
    const last = pieces[pieces.length - 1];
    if (last && last.offset + last.length === offset && (last.data !== undefined) === data) {
      last.length += length;
      if (data) last.data = buf!.subarray(last.offset - bufOffset, last.offset - bufOffset + last.length);
    } else {
      pieces.push(data ? { offset, length, data: buf!.subarray(offset - bufOffset, offset - bufOffset + length) } : { offset, length, mayUnmap: rules.unmap });
    }
    if (data) dataBytes += length;
  };
  const g = rules.granularity;
  for (const s of spans) {
    if (s.zero) {
      push(s.offset, s.length, false);
      continue;
    }
    const end = s.offset + s.length;
    for (let at = s.offset; at < end; ) {
      // A run of chunks of one kind (the last chunk may end with the device).
      const zero = isZero(buf!, at - bufOffset, Math.min(at + g, end) - bufOffset);
      let runEnd = Math.min(at + g, end);
      while (runEnd < end && isZero(buf!, runEnd - bufOffset, Math.min(runEnd + g, end) - bufOffset) === zero) runEnd = Math.min(runEnd + g, end);
      push(at, runEnd - at, !zero || !rules.zeroAllowed(at, runEnd - at));
      at = runEnd;
    }
  }
  return { pieces, dataBytes };
}
