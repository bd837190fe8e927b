import { filterOrCowChild, skipFilters } from './chain.js';
import type { BlockNode } from './node.js';

/**
 * Allocation along a backing chain as QEMU's jobs ask it (block/io.c
 * bdrv_is_allocated, bdrv_is_allocated_above): which layer holds the data
 * of a range decides what stream and commit copy, and the length of the
 * answer decides their chunks, so their progress moves in QEMU's steps.
 */

/** What one layer says of the start of a range: allocated there or not, for how long, and whether that reaches its end. */
export interface LayerStatus {
  allocated: boolean;
  /** 0 when the range starts at or after the layer's end. */
  length: number;
}

/**
 * bdrv_co_block_status of one node (want_zero off): a filter answers for
 * the node it filters; the run is the node's own — for an image with a
 * backing file, the clusters it does not allocate itself, however the
 * layers below split them.
 */
export async function layerStatus(node: BlockNode, offset: number, bytes: number): Promise<LayerStatus> {
  const n = skipFilters(node);
  const size = n.size();
  if (offset >= size || bytes <= 0) return { allocated: false, length: 0 };
  const end = offset + Math.min(bytes, size - offset);
  const own = (e: { depth: number; allocated: boolean }) => e.depth === 0 && e.allocated;
  const first = await n.blockStatus(offset, end - offset, { wantZero: false });
  if (own(first)) return { allocated: true, length: first.length };
  let at = offset + first.length;
  while (at < end) {
    const e = await n.blockStatus(at, end - at, { wantZero: false });
    if (own(e) || e.length <= 0) break;
    at += e.length;
  }
  return { allocated: false, length: at - offset };
}

/** bdrv_is_allocated: whether `node` itself holds the start of the range, and for how many bytes that holds. */
export function isAllocated(node: BlockNode, offset: number, bytes: number): Promise<LayerStatus> {
  return layerStatus(node, offset, bytes);
}

/**
 * bdrv_is_allocated_above: whether any layer from `top` down to `base`
 * (`base` itself only with `includeBase`) holds the start of the range,
 * for as long as the answer stays the same. A layer that ends before the
 * range reads as zeroes allocated there (a short backing file).
 */
export async function isAllocatedAbove(top: BlockNode, base: BlockNode | undefined, includeBase: boolean, offset: number, bytes: number): Promise<LayerStatus> {
  if (!includeBase && top === base) return { allocated: false, length: bytes };
  let st = await layerStatus(top, offset, bytes);
  if (st.length === 0 || st.allocated || top === base) return st;
  let pnum = st.length;
  for (let p = filterOrCowChild(top); p && (includeBase || p !== base); p = filterOrCowChild(p)) {
    st = await layerStatus(p, offset, pnum);
    if (st.length === 0) return { allocated: true, length: pnum };
    if (st.allocated) return st;
    pnum = st.length;
    if (p === base) break;
  }
  return { allocated: false, length: pnum };
}
