import { COMPRESSED_HI, COPIED_HI, entryOffset, type Qcow2Layout, ZERO_LO } from './layout.js';

/** What one L2 entry says about its guest cluster (block/qcow2.h QCow2ClusterType). */
export type ClusterKind = 'unallocated' | 'zero' | 'normal' | 'compressed';

/**
 * One L2 entry as two 32-bit halves. An image with extended L2 entries
 * gives every entry its subcluster bitmap too: `alloc` (bits 0-31, one per
 * subcluster) and `zero` (bits 32-63); their presence is what marks an
 * entry as extended.
 */
export interface L2Entry {
  hi: number;
  lo: number;
  alloc?: number;
  zero?: number;
}

/**
 * qcow2_get_cluster_type. Offset 0 means unallocated, except in an image
 * with an external data file, where 0 is a valid offset: there the copied
 * flag (every data cluster has it) tells a normal cluster at 0 apart. An
 * extended entry has no zero flag (its bitmap says which subclusters read
 * as zeroes), so its cluster is never 'zero'.
 */
export function classify(e: L2Entry, version: number, externalData = false): ClusterKind {
  if (e.hi & COMPRESSED_HI) return 'compressed';
  if (version >= 3 && e.lo & ZERO_LO && e.alloc === undefined) return 'zero';
  if (entryOffset(e.hi, e.lo) !== 0) return 'normal';
  return externalData && (e.hi & COPIED_HI) !== 0 ? 'normal' : 'unallocated';
}

/** Writable in place: a normal cluster that only this L2 entry references. */
export function isInPlace(e: L2Entry, version: number, externalData = false): boolean {
  return classify(e, version, externalData) === 'normal' && (e.hi & COPIED_HI) !== 0;
}

/** A preallocated zero cluster (zero flag with a host cluster) that only this L2 entry references: a write may reuse it. */
export function isZeroAlloc(e: L2Entry, version: number): boolean {
  return classify(e, version) === 'zero' && (e.hi & COPIED_HI) !== 0 && entryOffset(e.hi, e.lo) !== 0;
}

export interface CompressedRef {
  /** Byte offset of the compressed stream in the file. */
  offset: number;
  /** Bytes to read (may run past the stream's end). */
  length: number;
}

/** Decodes a compressed descriptor: offset in the low csizeShift bits, extra 512-byte sectors above. */
export function compressedRef(e: L2Entry, layout: Qcow2Layout): CompressedRef {
  const v = ((BigInt(e.hi & 0x3fffffff) << 32n) | BigInt(e.lo >>> 0));
  const shift = BigInt(layout.csizeShift);
  const offset = Number(v & ((1n << shift) - 1n));
  const sectors = Number(v >> shift);
  return { offset, length: (sectors + 1) * 512 - (offset % 512) };
}

export function encodeCompressed(offset: number, length: number, layout: Qcow2Layout): L2Entry {
  const sectors = Math.floor((offset + length - 1) / 512) - Math.floor(offset / 512);
  const v = (BigInt(sectors) << BigInt(layout.csizeShift)) | BigInt(offset);
  return { hi: Number((v >> 32n) & 0x3fffffffn) | COMPRESSED_HI, lo: Number(v & 0xffffffffn) };
}

/** Host clusters a compressed stream touches (each holds one reference for it). */
export function compressedClusters(ref: CompressedRef, layout: Qcow2Layout): number[] {
  const first = Math.floor(ref.offset / layout.clusterSize);
  // The descriptor's last sector bounds the stream; never more than one cluster plus a sector.
  const last = Math.floor((ref.offset + ref.length - 1) / layout.clusterSize);
  const out: number[] = [];
  for (let c = first; c <= last; c++) out.push(c);
  return out;
}

/**
 * qcow2_get_subcluster_type for subcluster `sc` of an extended entry: what
 * its guest bytes are ('invalid' for a bitmap QEMU calls corrupt: allocated
 * subclusters without a host cluster, or a subcluster both allocated and
 * zero anywhere in the cluster). A standard entry's only subcluster is its
 * cluster.
 */
export function subclusterKind(e: L2Entry, sc: number, version: number, externalData = false): ClusterKind | 'invalid' {
  const cluster = classify(e, version, externalData);
  if (e.alloc === undefined || cluster === 'compressed') return cluster;
  const bit = (1 << sc) >>> 0;
  if (cluster === 'unallocated') {
    if (e.alloc !== 0) return 'invalid';
    return e.zero! & bit ? 'zero' : 'unallocated';
  }
  if ((e.alloc & e.zero!) !== 0) return 'invalid';
  if (e.zero! & bit) return 'zero';
  return e.alloc & bit ? 'normal' : 'unallocated';
}

/** The subcluster bits [from, to) of a 32-bit bitmap half. */
export function subRange(from: number, to: number): number {
  if (to <= from) return 0;
  return to - from >= 32 ? 0xffffffff : ((((1 << (to - from)) >>> 0) - 1) * 2 ** from) >>> 0;
}
