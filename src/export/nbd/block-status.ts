import type { DirtyBitmap } from '../../blockdev/dirty-bitmap.js';
import type { BlockNode } from '../../blockdev/node.js';
import type { Extent } from '../../image/types.js';
import type { NbdExport } from './export.js';
import type { MetaContexts } from './negotiation.js';
import { MAX_BLOCK_STATUS_EXTENTS, META_ID, STATE_DIRTY, STATE_HOLE, STATE_ZERO, errnoName } from '../../nbd/protocol.js';

/**
 * A block status chunk's extents (NBDExtentArray): an extent with the
 * flags of the one before extends it; once `max` extents are held, the
 * first that would need one more ends the answer.
 */
class Extents {
  private readonly lengths: number[] = [];
  private readonly flags: number[] = [];
  full = false;

  constructor(private readonly max: number) {}

  add(length: number, flags: number): boolean {
    if (length === 0) return true;
    const last = this.lengths.length - 1;
    if (last >= 0 && this.flags[last] === flags && this.lengths[last]! + length <= 0xffffffff) {
      this.lengths[last]! += length;
      return true;
    }
    if (this.lengths.length >= this.max) {
      this.full = true;
      return false;
    }
    this.lengths.push(length);
    this.flags.push(flags);
    return true;
  }

  /** The BLOCK_STATUS chunk payload: the context id, then {length, flags} pairs. */
  payload(contextId: number): Buffer {
    const b = Buffer.allocUnsafe(4 + 8 * this.lengths.length);
    b.writeUInt32BE(contextId, 0);
    this.lengths.forEach((len, i) => {
      b.writeUInt32BE(len, 4 + 8 * i);
      b.writeUInt32BE(this.flags[i]!, 8 + 8 * i);
    });
    return b;
  }
}

export type StatusChunk = { payload: Buffer } | { errno: string };

type Status = Pick<Extent, 'length' | 'data' | 'zero' | 'allocated' | 'depth'>;

/**
 * The node's block status, also past its end up to the export's (whole
 * sectors, as QEMU sizes nodes): a hole that reads as zeroes there.
 */
export async function tailStatus(node: BlockNode, offset: number, length: number): Promise<Status> {
  const size = node.size();
  if (offset >= size) return { length, data: false, zero: true, allocated: true, depth: 0 };
  return node.blockStatus(offset, Math.min(length, size - offset));
}

/** Extents from the node's block status: one flag set per extent, until the range or the array is done. */
async function statusExtents(node: BlockNode, offset: number, length: number, ea: Extents, flagsOf: (e: Status) => number): Promise<void> {
  const end = offset + length;
  for (let at = offset; at < end; ) {
    const e = await tailStatus(node, at, end - at);
    const len = Math.min(Math.max(e.length, 1), end - at);
    if (!ea.add(len, flagsOf(e))) return;
    at += len;
  }
}

/** base:allocation: HOLE where no data is stored, ZERO where reads give zeroes. */
const allocationFlags = (e: Status) => (e.data ? 0 : STATE_HOLE) | (e.zero ? STATE_ZERO : 0);

/** qemu:allocation-depth: 0 unallocated, else the layer that answers (1 = the node itself). */
const depthFlags = (e: Status) => (e.allocated ? e.depth + 1 : 0);

/** Dirty and clean runs of a bitmap within the range (bitmap_to_extents). */
function bitmapExtents(bitmap: DirtyBitmap, offset: number, length: number, ea: Extents): void {
  const g = bitmap.granularity;
  const end = offset + length;
  let start = offset;
  for (let chunk = Math.floor(offset / g); start < end; ) {
    const dirty = bitmap.bits.nextSet(chunk);
    if (dirty < 0 || dirty * g >= end) break;
    const dirtyStart = Math.max(start, dirty * g);
    let c = dirty;
    while ((c + 1) * g < end && bitmap.bits.get(c + 1)) c++;
    const dirtyEnd = Math.min(end, (c + 1) * g);
    if (!ea.add(dirtyStart - start, 0) || !ea.add(dirtyEnd - dirtyStart, STATE_DIRTY)) return;
    start = dirtyEnd;
    chunk = c + 1;
  }
  ea.add(end - start, 0);
}

/**
 * The chunks a BLOCK_STATUS request is answered with, one per negotiated
 * context in QEMU's order (base:allocation, qemu:allocation-depth, the
 * bitmaps), each computed when its turn comes; `reqOne` limits each to
 * one extent.
 */
export function blockStatusChunks(exp: NbdExport, meta: MetaContexts, offset: number, length: number, reqOne: boolean): Array<() => Promise<StatusChunk>> {
  const max = reqOne ? 1 : MAX_BLOCK_STATUS_EXTENTS;
  const out: Array<() => Promise<StatusChunk>> = [];
  const fromNode = (id: number, flagsOf: Parameters<typeof statusExtents>[4]) => async (): Promise<StatusChunk> => {
    const ea = new Extents(max);
    try {
      await statusExtents(exp.node, offset, length, ea, flagsOf);
    } catch (err) {
      return { errno: errnoName(err) };
    }
    return { payload: ea.payload(id) };
  };
  if (meta.baseAllocation) out.push(fromNode(META_ID.BASE_ALLOCATION, allocationFlags));
  if (meta.allocationDepth) out.push(fromNode(META_ID.ALLOCATION_DEPTH, depthFlags));
  exp.spec.bitmaps.forEach((b, i) => {
    if (!meta.bitmaps[i]) return;
    out.push(async () => {
      const ea = new Extents(max);
      bitmapExtents(b, offset, length, ea);
      return { payload: ea.payload(META_ID.DIRTY_BITMAP + i) };
    });
  });
  return out;
}
