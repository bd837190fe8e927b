import { COMPRESSED_HI, COPIED_HI, entryOffset, type Qcow2Layout, ZERO_LO } from './layout.js';

/** What one L2 entry says about its guest cluster (block/qcow2.h QCow2ClusterType). */
export type ClusterKind = 'unallocated' | 'zero' | 'normal' | 'compressed';

export interface L2Entry {
  hi: number;
  lo: number;
}

/**
 * qcow2_get_cluster_type. Offset 0 means unallocated, except in an image
 * with an external data file, where 0 is a valid offset: there the copied
 * flag (every data cluster has it) tells a normal cluster at 0 apart.
 */
export function classify(e: L2Entry, version: number, externalData = false): ClusterKind {
  if (e.hi & COMPRESSED_HI) return 'compressed';
  if (version >= 3 && e.lo & ZERO_LO) return 'zero';
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
