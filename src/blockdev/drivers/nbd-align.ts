import { RequestFence } from '../request-fence.js';

/** A byte range. */
export interface Piece {
  offset: number;
  length: number;
}

/**
 * A request cut at the alignment: the unaligned head and tail (each within
 * one block) and the aligned body between them, any of them absent.
 */
export function alignedPieces(offset: number, length: number, align: number): { head?: Piece; body?: Piece; tail?: Piece } {
  const end = offset + length;
  const bodyStart = Math.ceil(offset / align) * align;
  const bodyEnd = Math.floor(end / align) * align;
  if (bodyStart >= bodyEnd) return length > 0 ? { head: { offset, length } } : {};
  return {
    ...(bodyStart > offset ? { head: { offset, length: bodyStart - offset } } : {}),
    body: { offset: bodyStart, length: bodyEnd - bodyStart },
    ...(end > bodyEnd ? { tail: { offset: bodyEnd, length: end - bodyEnd } } : {}),
  };
}

/**
 * Writes a server with a minimum block size cannot take as they are: the
 * blocks around them are read, changed and written whole (the block
 * layer's read-modify-write). Such a write must see no other write land
 * in its blocks between its read and its write, so it waits for
 * overlapping plain writes (and they for it) and for every earlier
 * read-modify-write, as QEMU serialises them.
 */
export class Rmw {
  private readonly fence = new RequestFence();
  private chain: Promise<unknown> = Promise.resolve();

  write(
    offset: number,
    data: Uint8Array,
    align: number,
    read: (offset: number, length: number) => Promise<Uint8Array>,
    write: (offset: number, data: Uint8Array) => Promise<void>,
  ): Promise<void> {
    if (align <= 1) return write(offset, data);
    const start = offset - (offset % align);
    const end = Math.ceil((offset + data.length) / align) * align;
    if (start === offset && end === offset + data.length) return this.fence.run('write', offset, data.length, () => write(offset, data));
    const rmw = async () => {
      const wide = Buffer.from(await read(start, end - start));
      wide.set(data, offset - start);
      await write(start, wide);
    };
    const p = this.chain.then(() => this.fence.run('prefetch', start, end - start, rmw));
    this.chain = p.catch(() => undefined);
    return p;
  }
}
