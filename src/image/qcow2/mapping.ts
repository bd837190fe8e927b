import { classify, type ClusterKind, type L2Entry, subclusterKind } from './entry.js';
import type { BlockError } from '../errors.js';
import type { Extent } from '../types.js';
import { hex } from './corruption.js';
import { COMPRESSED_HI, entryOffset, type Qcow2Layout, viewOf, ZERO_LO } from './layout.js';

/** How guest bytes [offset, offset+length) map, for one run of clusters with the same kind. */
export interface Mapping {
  kind: ClusterKind;
  offset: number;
  length: number;
  /** normal: host offset of `offset`. */
  hostOffset: number;
  /** First cluster's entry (compressed: its descriptor). */
  entry: L2Entry;
}

/** What mapping needs from the image: its geometry and its validating entry readers. */
export interface MapContext {
  readonly layout: Qcow2Layout;
  readonly version: number;
  /** Guest data in an external data file: a data cluster sits at its guest offset there, and none is compressed. */
  readonly externalData: boolean;
  readEntry(view: DataView, i: number): L2Entry;
  /** A fatal corruption met: reports it and returns the error to throw. */
  corrupt(message: string): BlockError;
}

/** A version 2 image has no zero clusters: an entry with the flag is corrupt (only the first of a run is read as such, as QEMU). */
const v2Zero = (e: L2Entry, version: number) => version < 3 && (e.lo & ZERO_LO) !== 0 && (e.hi & COMPRESSED_HI) === 0;

/** The run from `offset` to the end of its L2 table's range (or `length`), where no L2 table exists. */
export function unallocatedRun(L: Qcow2Layout, offset: number, length: number): Mapping {
  const l2Room = (L.l2Entries - L.l2Index(offset)) * L.clusterSize - (offset % L.clusterSize);
  return { kind: 'unallocated', offset, length: Math.min(length, l2Room), hostOffset: 0, entry: { hi: 0, lo: 0 } };
}

/**
 * The run of clusters starting at `offset` that share a kind (and, for
 * normal clusters, are contiguous on the host), within the L2 table `table`
 * (at `l2Offset` in the file). Its first entry is checked as
 * qcow2_get_host_offset checks it: a zero flag in a version 2 image or a
 * host offset not on a cluster boundary is a fatal corruption.
 */
export function mapInTable(img: MapContext, table: Uint8Array, l2Offset: number, offset: number, length: number): Mapping {
  const L = img.layout;
  if (L.extendedL2) return mapInExtendedTable(img, table, l2Offset, offset, length);
  const cs = L.clusterSize;
  const inCluster = offset % cs;
  let idx = L.l2Index(offset);
  const max = Math.min(length, (L.l2Entries - idx) * cs - inCluster);
  const view = viewOf(table);
  const first = img.readEntry(view, idx);
  if (v2Zero(first, img.version)) throw img.corrupt(`Zero cluster entry found in pre-v3 image (L2 offset: ${hex(l2Offset)}, L2 index: ${hex(idx)})`);
  const kind = classify(first, img.version, img.externalData);
  if (kind === 'compressed' && img.externalData) {
    throw img.corrupt(`Compressed cluster entry found in image with external data file (L2 offset: ${hex(l2Offset)}, L2 index: ${hex(idx)})`);
  }
  // Normal clusters and zero clusters that keep a host cluster (QEMU's
  // zero-alloc) report where they are; a run of them must be contiguous.
  const firstHost = kind === 'normal' || kind === 'zero' ? entryOffset(first.hi, first.lo) : 0;
  // Whether the run's clusters have host clusters (a normal one may sit at offset 0 of an external data file).
  const hosted = kind === 'normal' || firstHost !== 0;
  if (firstHost % cs !== 0) throw img.corrupt(`Cluster allocation offset ${hex(firstHost)} unaligned (L2 offset: ${hex(l2Offset)}, L2 index: ${hex(idx)})`);
  if (img.externalData && hosted && firstHost !== offset - inCluster) {
    throw img.corrupt(`External data file host cluster offset ${hex(firstHost)} does not match guest cluster offset: ${hex(offset - inCluster)}, L2 index: ${hex(idx)})`);
  }
  let host = firstHost;
  let len = Math.min(max, cs - inCluster);
  // The entry a contiguous neighbour has: the same bits with the offset one
  // cluster on. Comparing raw words first keeps long runs (1 MiB requests
  // span 16 entries) cheap; anything else takes the full check below.
  let nextHi = first.hi;
  let nextLo = first.lo;
  // Compressed clusters are one per mapping: each has its own stream.
  while (len < max && kind !== 'compressed') {
    idx++;
    if (hosted) {
      nextLo += cs;
      if (nextLo >= 0x100000000) {
        nextLo -= 0x100000000;
        nextHi++;
      }
      // Same flag and reserved bits as the validated first entry (no carry out of the offset field).
      if ((nextHi & 0xff000000) === (first.hi & 0xff000000) && view.getUint32(idx * 8) === nextHi && view.getUint32(idx * 8 + 4) === nextLo) {
        host += cs;
        len = Math.min(max, len + cs);
        continue;
      }
    }
    const e = img.readEntry(view, idx);
    if (classify(e, img.version, img.externalData) !== kind || v2Zero(e, img.version)) break;
    if (kind === 'normal' || kind === 'zero') {
      const h = entryOffset(e.hi, e.lo);
      if (!hosted ? h !== 0 : h !== host + cs) break;
      if (hosted) host = h;
      nextHi = e.hi;
      nextLo = e.lo;
    }
    len = Math.min(max, len + cs);
  }
  const hostOffset = hosted ? firstHost + inCluster : 0;
  return { kind, offset, length: len, hostOffset, entry: first };
}

/**
 * mapInTable for extended L2 entries, as qcow2_get_host_offset and
 * count_contiguous_subclusters map them: the run of subclusters of one
 * kind, on into the next clusters while they continue it (the same kind,
 * with or without host clusters alike, host clusters contiguous). A
 * subcluster bitmap QEMU calls invalid is a fatal corruption, met where
 * the run reaches it. An unallocated subcluster with a host cluster
 * (QEMU's UNALLOCATED_ALLOC) reads from the backing image like any other.
 */
function mapInExtendedTable(img: MapContext, table: Uint8Array, l2Offset: number, offset: number, length: number): Mapping {
  const L = img.layout;
  const cs = L.clusterSize;
  const scs = L.subclusterSize;
  const inCluster = offset % cs;
  let idx = L.l2Index(offset);
  const max = Math.min(length, (L.l2Entries - idx) * cs - inCluster);
  const view = viewOf(table);
  const invalid = (i: number) => img.corrupt(`Invalid cluster entry found  (L2 offset: ${hex(l2Offset)}, L2 index: ${hex(i)})`);
  const first = img.readEntry(view, idx);
  const kind = subclusterKind(first, L.subclusterIndex(offset), img.version, img.externalData);
  if (kind === 'invalid') throw invalid(idx);
  if (kind === 'compressed') {
    if (img.externalData) throw img.corrupt(`Compressed cluster entry found in image with external data file (L2 offset: ${hex(l2Offset)}, L2 index: ${hex(idx)})`);
    return { kind, offset, length: Math.min(max, cs - inCluster), hostOffset: 0, entry: first };
  }
  const hosted = classify(first, img.version, img.externalData) === 'normal';
  const firstHost = hosted ? entryOffset(first.hi, first.lo) : 0;
  if (firstHost % cs !== 0) throw img.corrupt(`Cluster allocation offset ${hex(firstHost)} unaligned (L2 offset: ${hex(l2Offset)}, L2 index: ${hex(idx)})`);
  let e = first;
  let host = firstHost;
  let len = Math.min(max, scs - (inCluster % scs));
  while (len < max) {
    const at = offset + len;
    if (at % cs === 0) {
      e = img.readEntry(view, ++idx);
      const k = subclusterKind(e, 0, img.version, img.externalData);
      if (k === 'invalid') throw invalid(idx);
      if (k !== kind || (classify(e, img.version, img.externalData) === 'normal') !== hosted) break;
      if (hosted && entryOffset(e.hi, e.lo) !== host + cs) break;
      host += cs;
    } else if (subclusterKind(e, L.subclusterIndex(at), img.version, img.externalData) !== kind) break;
    len = Math.min(max, len + scs);
  }
  const hostOffset = hosted ? firstHost + inCluster : 0;
  return { kind, offset, length: len, hostOffset, entry: first };
}

/**
 * The block status of `length` bytes at `offset` mapped by `m`, when the
 * image itself answers it; undefined for unallocated clusters over a
 * backing image, which answers those. Literal objects, not spreads of a
 * common base: a backup asks this once per extent, and spreads cost more
 * than the lookup.
 */
export function extentOf(m: Mapping, offset: number, length: number, filename: string, hasBacking: boolean, dataFilename = filename, encrypted = false): Extent | undefined {
  // An encrypted image does not say where its data lies (qcow2_co_block_status: no offset with a cipher).
  if (encrypted && m.hostOffset !== 0) m = { ...m, hostOffset: 0 };
  switch (m.kind) {
    case 'normal':
      return encrypted
        ? { offset, length, depth: 0, filename: dataFilename, data: true, zero: false, allocated: true }
        : { offset, length, depth: 0, filename: dataFilename, data: true, zero: false, allocated: true, hostOffset: m.hostOffset };
    case 'compressed':
      return { offset, length, depth: 0, filename, data: true, zero: false, allocated: true };
    case 'zero':
      return m.hostOffset !== 0
        ? { offset, length, depth: 0, filename: dataFilename, data: false, zero: true, allocated: true, hostOffset: m.hostOffset }
        : { offset, length, depth: 0, filename, data: false, zero: true, allocated: true };
    case 'unallocated':
      // An unallocated subcluster of an allocated cluster still reports where it is (QEMU's UNALLOCATED_ALLOC).
      if (hasBacking) return undefined;
      return m.hostOffset !== 0
        ? { offset, length, depth: 0, filename: dataFilename, data: false, zero: true, allocated: false, hostOffset: m.hostOffset }
        : { offset, length, depth: 0, filename, data: false, zero: true, allocated: false };
  }
}
