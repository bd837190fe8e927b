/**
 * Geometry of one qcow2 image and the encoding of its 64-bit table entries.
 * Entries are handled as two 32-bit halves in plain numbers: BigInt on the
 * read/write path costs more than the whole lookup.
 */
export const COPIED_HI = 0x80000000; // bit 63
export const COMPRESSED_HI = 0x40000000; // bit 62
export const ZERO_LO = 0x1; // bit 0 of a standard L2 entry
const OFFSET_HI_MASK = 0x00ffffff; // bits 32-55
const OFFSET_LO_MASK = 0xfffffe00; // bits 9-31
/** Reserved bits of a standard L2 entry: 1-8 and 56-61. */
export const L2_RESERVED_LO = 0x1fe;
export const L2_RESERVED_HI = 0x3f000000;
/** Reserved bits of an L1 / reftable entry: 0-8 (and 56-62 for L1). */
export const L1_RESERVED_LO = 0x1ff;
export const L1_RESERVED_HI = 0x7f000000;

export class Qcow2Layout {
  readonly clusterSize: number;
  readonly l2Entries: number;
  readonly l2Bits: number;
  readonly refcountBits: number;
  readonly refblockEntries: number;
  readonly refblockBits: number;
  readonly maxRefcount: number;
  /** Bit where a compressed descriptor's sector count starts (62 - (cluster_bits - 8)). */
  readonly csizeShift: number;
  /** Bytes per L2 entry: 16 with extended L2 entries (the entry, then its subcluster bitmap). */
  readonly l2EntryBytes: number;
  /** Subclusters per cluster: 32 with extended L2 entries, else the cluster is its only one. */
  readonly subclusters: number;
  readonly subclusterSize: number;

  constructor(
    readonly clusterBits: number,
    readonly refcountOrder: number,
    readonly extendedL2 = false,
  ) {
    this.clusterSize = 2 ** clusterBits;
    this.l2EntryBytes = extendedL2 ? 16 : 8;
    this.subclusters = extendedL2 ? 32 : 1;
    this.subclusterSize = this.clusterSize / this.subclusters;
    this.l2Bits = clusterBits - (extendedL2 ? 4 : 3);
    this.l2Entries = 2 ** this.l2Bits;
    this.refcountBits = 2 ** refcountOrder;
    this.refblockBits = clusterBits + 3 - refcountOrder;
    this.refblockEntries = 2 ** this.refblockBits;
    this.maxRefcount = this.refcountBits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** this.refcountBits - 1;
    this.csizeShift = 62 - (clusterBits - 8);
  }

  /** Bytes of guest data one L2 table maps. */
  get l2Coverage(): number {
    return this.clusterSize * this.l2Entries;
  }
  l1Index(guestOffset: number): number {
    return Math.floor(guestOffset / this.l2Coverage);
  }
  l2Index(guestOffset: number): number {
    return Math.floor(guestOffset / this.clusterSize) % this.l2Entries;
  }
  l1SizeFor(virtualSize: number): number {
    return Math.ceil(virtualSize / this.l2Coverage);
  }
  clusterStart(offset: number): number {
    return offset - (offset % this.clusterSize);
  }
  clusterEnd(offset: number): number {
    return Math.ceil(offset / this.clusterSize) * this.clusterSize;
  }
  /** Index of the 8-byte word holding L2 entry i's cluster descriptor (its bitmap is the next word). */
  l2Word(i: number): number {
    return this.extendedL2 ? i * 2 : i;
  }
  subclusterIndex(offset: number): number {
    return Math.floor((offset % this.clusterSize) / this.subclusterSize);
  }
}

/** Reads the u64 at entry `i` of a big-endian table as {hi, lo}. */
export function entryHi(view: DataView, i: number): number {
  return view.getUint32(i * 8);
}
export function entryLo(view: DataView, i: number): number {
  return view.getUint32(i * 8 + 4);
}
export function setEntry(view: DataView, i: number, hi: number, lo: number): void {
  view.setUint32(i * 8, hi >>> 0);
  view.setUint32(i * 8 + 4, lo >>> 0);
}
/** The host offset held in bits 9-55 of a standard entry. */
export function entryOffset(hi: number, lo: number): number {
  return (hi & OFFSET_HI_MASK) * 0x100000000 + ((lo & OFFSET_LO_MASK) >>> 0);
}
export function offsetHi(offset: number): number {
  return Math.floor(offset / 0x100000000) & OFFSET_HI_MASK;
}
export function offsetLo(offset: number): number {
  return (offset % 0x100000000) >>> 0;
}

export function viewOf(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}
