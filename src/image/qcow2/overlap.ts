import { EXT_BITMAPS, AUTOCLEAR_BITMAPS } from './header.js';
import type { Qcow2Image } from './image.js';
import { entryHi, entryLo, entryOffset } from './layout.js';

/**
 * qcow2_check_metadata_overlap in QEMU's default mode ("cached"): which
 * metadata a write of guest data to [offset, offset+size) on the host
 * would land on, or undefined. Checked before every data write: a table
 * entry pointing into metadata (a corrupt image) must not turn into
 * overwritten tables. The header, the active L1 table, the refcount
 * table, the snapshot table and the snapshots' L1 tables, the L2 tables
 * the active L1 table names, the refcount blocks and the bitmap directory
 * are looked at, in QEMU's order and by QEMU's names. The snapshots' L2
 * tables are not ("all" mode's inactive-l2, which reads them from disk).
 */
export function metadataOverlap(img: Qcow2Image, offset: number, size: number): string | undefined {
  if (size === 0) return undefined;
  const cs = img.layout.clusterSize;
  if (offset < cs) return 'qcow2_header';
  // Whole clusters, as QEMU compares them.
  const start = offset - (offset % cs);
  const end = Math.ceil((offset + size) / cs) * cs;
  const hits = (at: number, bytes: number) => at < end && start < at + bytes;
  const h = img.header;
  if (h.l1Size > 0 && hits(h.l1TableOffset, h.l1Size * 8)) return 'active L1 table';
  if (hits(h.refcountTableOffset, h.refcountTableClusters * cs)) return 'refcount table';
  const table = img.snapshotTableExtent;
  if (table.bytes > 0 && hits(table.offset, table.bytes)) return 'snapshot table';
  for (const t of img.snapshotL1Tables) if (t.bytes > 0 && hits(t.offset, t.bytes)) return 'inactive L1 table';
  const l1 = img.l1View;
  for (let i = 0; i < h.l1Size; i++) {
    const off = entryOffset(entryHi(l1, i), entryLo(l1, i));
    if (off !== 0 && hits(off, cs)) return 'active L2 table';
  }
  if (img.refcounts?.blockOverlaps(start, end)) return 'refcount block';
  if (h.autoclearFeatures & AUTOCLEAR_BITMAPS) {
    const ext = h.extensions.find((e) => e.type === EXT_BITMAPS);
    if (ext && ext.data.length >= 24) {
      const v = new DataView(ext.data.buffer, ext.data.byteOffset, ext.data.byteLength);
      if (hits(Number(v.getBigUint64(16)), Number(v.getBigUint64(8)))) return 'bitmap directory';
    }
  }
  return undefined;
}
