import { BlockError } from '../errors.js';
import { EXT_BITMAPS, AUTOCLEAR_BITMAPS, snapshotL1Problem } from './header.js';
import type { Qcow2Image } from './image.js';
import { entryHi, entryLo, entryOffset, viewOf } from './layout.js';

/** QCOW2_OL_*: the kinds of metadata the pre-write overlap check looks at, as bits (overlap-check.<flag> in this order). */
export const OL = {
  MAIN_HEADER: 1 << 0,
  ACTIVE_L1: 1 << 1,
  ACTIVE_L2: 1 << 2,
  REFCOUNT_TABLE: 1 << 3,
  REFCOUNT_BLOCK: 1 << 4,
  SNAPSHOT_TABLE: 1 << 5,
  INACTIVE_L1: 1 << 6,
  INACTIVE_L2: 1 << 7,
  BITMAP_DIRECTORY: 1 << 8,
} as const;

const OL_CONSTANT = OL.MAIN_HEADER | OL.ACTIVE_L1 | OL.REFCOUNT_TABLE | OL.SNAPSHOT_TABLE;
const OL_CACHED = OL_CONSTANT | OL.ACTIVE_L2 | OL.REFCOUNT_BLOCK | OL.INACTIVE_L1 | OL.BITMAP_DIRECTORY;
/** overlap-check's modes (QCOW2_OL_*_TEMPLATE); `cached` is the default. */
export const OVERLAP_MODES: Readonly<Record<string, number>> = { none: 0, constant: OL_CONSTANT, cached: OL_CACHED, all: OL_CACHED | OL.INACTIVE_L2 };
export const OL_DEFAULT = OL_CACHED;

/**
 * qcow2_check_metadata_overlap without the snapshots' L2 tables: which
 * metadata a write to [offset, offset+size) on the host would land on, or
 * undefined, looking at what the image's overlap-check option asks for
 * less `ign` (what the write itself is): the header, the active L1 table,
 * the refcount table, the snapshot table and the snapshots' L1 tables,
 * the L2 tables the active L1 table names, the refcount blocks and the
 * bitmap directory, in QEMU's order and by QEMU's names. Checked before
 * every data and table write: an entry pointing into metadata (a corrupt
 * image) must not turn into overwritten tables. The snapshots' L2 tables
 * ("all" mode, or overlap-check.inactive-l2) need reads: overlapsMetadata.
 */
export function metadataOverlap(img: Qcow2Image, offset: number, size: number, ign = 0): string | undefined {
  if (size === 0) return undefined;
  const chk = img.overlapCheck & ~ign;
  const cs = img.layout.clusterSize;
  if (chk & OL.MAIN_HEADER && offset < cs) return 'qcow2_header';
  // Whole clusters, as QEMU compares them.
  const start = offset - (offset % cs);
  const end = Math.ceil((offset + size) / cs) * cs;
  const hits = (at: number, bytes: number) => at < end && start < at + bytes;
  const h = img.header;
  if (chk & OL.ACTIVE_L1 && h.l1Size > 0 && hits(h.l1TableOffset, h.l1Size * 8)) return 'active L1 table';
  if (chk & OL.REFCOUNT_TABLE && hits(h.refcountTableOffset, h.refcountTableClusters * cs)) return 'refcount table';
  const table = img.snapshotTableExtent;
  if (chk & OL.SNAPSHOT_TABLE && table.bytes > 0 && hits(table.offset, table.bytes)) return 'snapshot table';
  if (chk & OL.INACTIVE_L1) for (const t of img.snapshotL1Tables) if (t.bytes > 0 && hits(t.offset, t.bytes)) return 'inactive L1 table';
  const l1 = img.l1View;
  if (chk & OL.ACTIVE_L2) {
    for (let i = 0; i < h.l1Size; i++) {
      const off = entryOffset(entryHi(l1, i), entryLo(l1, i));
      if (off !== 0 && hits(off, cs)) return 'active L2 table';
    }
  }
  if (chk & OL.REFCOUNT_BLOCK && img.refcounts?.blockOverlaps(start, end)) return 'refcount block';
  if (chk & OL.BITMAP_DIRECTORY && h.autoclearFeatures & AUTOCLEAR_BITMAPS) {
    const ext = h.extensions.find((e) => e.type === EXT_BITMAPS);
    if (ext && ext.data.length >= 24) {
      const v = new DataView(ext.data.buffer, ext.data.byteOffset, ext.data.byteLength);
      if (hits(Number(v.getBigUint64(16)), Number(v.getBigUint64(8)))) return 'bitmap directory';
    }
  }
  return undefined;
}

/**
 * The whole of qcow2_check_metadata_overlap: metadataOverlap, then (when
 * asked for) the snapshots' L2 tables, whose L1 tables are read from the
 * file each time as QEMU does. A snapshot L1 table that qcow2_validate_table
 * refuses fails the check, and with it the write: EFBIG when too large,
 * EINVAL when its offset is invalid.
 */
export async function overlapsMetadata(img: Qcow2Image, offset: number, size: number, ign = 0): Promise<string | undefined> {
  if (size === 0 || !(img.overlapCheck & ~ign & OL.INACTIVE_L2)) return metadataOverlap(img, offset, size, ign);
  // QEMU's order: everything else, the snapshots' L2 tables, then the bitmap directory.
  const before = metadataOverlap(img, offset, size, ign | OL.BITMAP_DIRECTORY);
  if (before !== undefined) return before;
  const cs = img.layout.clusterSize;
  const start = offset - (offset % cs);
  const end = Math.ceil((offset + size) / cs) * cs;
  for (const t of img.snapshotL1Tables) {
    const entries = t.bytes / 8;
    const bad = snapshotL1Problem(t.offset, entries, cs);
    if (bad) throw new BlockError('IO', bad.message, { errno: bad.errno });
    if (entries === 0) continue;
    const l1 = viewOf(await img.file.read(t.offset, t.bytes));
    for (let i = 0; i < entries; i++) {
      const l2 = entryOffset(entryHi(l1, i), entryLo(l1, i));
      if (l2 !== 0 && l2 < end && start < l2 + cs) return 'inactive L2 table';
    }
  }
  return metadataOverlap(img, offset, size, ign | ~OL.BITMAP_DIRECTORY);
}
