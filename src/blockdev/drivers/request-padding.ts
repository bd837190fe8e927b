/**
 * A write not aligned to its node's request alignment, made whole as
 * QEMU's generic layer makes it (bdrv_init_padding, bdrv_padding_rmw_read
 * in block/io.c): the blocks around it are read, with the
 * pwritev_rmw_head/tail events before and after each read, and the write
 * goes down as whole blocks. Head and tail are read in one request when
 * the padded write is one block, or two with both ends unaligned.
 */
export interface PaddingIo {
  /** Announces a blkdebug event and waits where a breakpoint holds the request. */
  event(name: string): Promise<void>;
  /** A read of whole blocks on the node itself (its rules apply). */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** [start, end): the write widened to whole blocks. */
export function paddedRange(offset: number, length: number, align: number): { start: number; end: number } {
  return { start: Math.floor(offset / align) * align, end: Math.ceil((offset + length) / align) * align };
}

/** The padded write's bytes: the blocks read around `data`, `data` in its place. */
export async function padWrite(offset: number, data: Uint8Array, align: number, io: PaddingIo): Promise<Uint8Array> {
  const { start, end } = paddedRange(offset, data.length, align);
  const head = offset - start;
  const tail = end - (offset + data.length);
  const sum = end - start;
  const bufLen = sum > align && head > 0 && tail > 0 ? 2 * align : align;
  const mergeReads = sum === bufLen;
  const out = new Uint8Array(sum);
  if (head > 0 || mergeReads) {
    const bytes = mergeReads ? bufLen : align;
    if (head > 0) await io.event('pwritev_rmw_head');
    if (mergeReads && tail > 0) await io.event('pwritev_rmw_tail');
    out.set(await io.read(start, bytes), 0);
    if (head > 0) await io.event('pwritev_rmw_after_head');
    if (mergeReads && tail > 0) await io.event('pwritev_rmw_after_tail');
  }
  if (tail > 0 && !mergeReads) {
    await io.event('pwritev_rmw_tail');
    out.set(await io.read(end - align, align), sum - align);
    await io.event('pwritev_rmw_after_tail');
  }
  out.set(data, head);
  return out;
}
