import type { ByteFile } from '../byte-file.js';
import { AUTOCLEAR_BITMAPS, EXT_BITMAPS, HDR_OFF_INCOMPAT, HDR_OFF_L1_TABLE, INCOMPAT_DIRTY, type Qcow2Header, serializeHeader } from './header.js';
import type { Qcow2Layout } from './layout.js';
import { RefcountManager } from './refcount.js';

/**
 * qcow2_make_empty's fast way (make_completely_empty): instead of
 * discarding every cluster, the image is rebuilt as a new empty one in
 * place — header, a one-cluster refcount table, one refcount block, a
 * zeroed L1 table — and the file cut after it. qemu-img commit empties the
 * committed image so, and the file's layout afterwards (its size, where
 * new clusters go) is QEMU's.
 *
 * The steps and the events announced before them are QEMU's, so a blkdebug
 * rule on one of them (iotest 098) fails the same write and leaves the
 * same file behind: the dirty bit is set first, since for a while neither
 * the file nor memory describe the refcounts, and a failure from then on
 * leaves the image unusable (`broken`: QEMU takes the node's driver away)
 * for the next open to repair.
 */

/** What the image gives the procedure: its bytes and state, and how to take the new state on. */
export interface EmptyTarget {
  readonly file: ByteFile;
  readonly header: Qcow2Header;
  readonly layout: Qcow2Layout;
  /** qcow2_cache_empty of both caches: what is dirty written (in the image's metadata order), then nothing cached. */
  emptyCaches(): Promise<void>;
  /** The new refcounts and the zeroed L1 table at its new place become the image's. */
  adopt(refcounts: RefcountManager, l1: Uint8Array, l1Offset: number): void;
  /** The image serves nothing more (fail_broken_refcounts: bs->drv = NULL). */
  broken(): void;
  /** The refcount cache size an open gives the image. */
  readonly refblockCacheBlocks: number;
}

/** Whether make_completely_empty may be used (qcow2_make_empty's test: no feature that keeps clusters of its own). */
export function canEmptyCompletely(h: Qcow2Header, layout: Qcow2Layout): boolean {
  const hasBitmaps = h.extensions.some((e) => e.type === EXT_BITMAPS) && (h.autoclearFeatures & AUTOCLEAR_BITMAPS) !== 0n;
  return h.version >= 3 && h.nbSnapshots === 0 && !hasBitmaps && 3 + l1Clusters(h, layout) <= layout.refblockEntries && h.cryptMethod === 0;
}

function l1Clusters(h: Qcow2Header, layout: Qcow2Layout): number {
  return Math.ceil((h.l1Size * 8) / layout.clusterSize);
}

function be64(v: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v));
  return b;
}

/** Under the image's metadata mutex, with no request in flight. */
export async function makeCompletelyEmpty(t: EmptyTarget): Promise<void> {
  const { file, header: h, layout } = t;
  const cs = layout.clusterSize;
  const l1c = l1Clusters(h, layout);
  await t.emptyCaches();
  // qcow2_mark_dirty: refcounts will be wrong on disk until the end.
  if ((h.incompatibleFeatures & INCOMPAT_DIRTY) === 0n) {
    await file.flush();
    const v = new Uint8Array(8);
    new DataView(v.buffer).setBigUint64(0, h.incompatibleFeatures | INCOMPAT_DIRTY);
    await file.write(HDR_OFF_INCOMPAT, v);
    await file.flush();
    h.incompatibleFeatures |= INCOMPAT_DIRTY;
  }
  const broken = (err: unknown): never => {
    t.broken();
    throw err;
  };
  file.event?.('l1_update');
  await file.write(h.l1TableOffset, new Uint8Array(l1c * cs)).catch(broken);
  file.event?.('empty_image_prepare');
  // Room for the refcount table, one refcount block and the L1 table after the header (overwriting what was there).
  await file.write(cs, new Uint8Array((2 + l1c) * cs)).catch(broken);
  file.event?.('l1_update');
  file.event?.('reftable_update');
  // l1_table_offset, refcount_table_offset and refcount_table_clusters, one write.
  const fields = new Uint8Array(20);
  const dv = new DataView(fields.buffer);
  dv.setBigUint64(0, BigInt(3 * cs));
  dv.setBigUint64(8, BigInt(cs));
  dv.setUint32(16, 1);
  await file
    .write(HDR_OFF_L1_TABLE, fields)
    .then(() => file.flush())
    .catch(broken);
  h.l1TableOffset = 3 * cs;
  h.refcountTableOffset = cs;
  h.refcountTableClusters = 1;
  const table = new Uint8Array(cs);
  file.event?.('refblock_alloc');
  await file
    .write(cs, be64(2 * cs))
    .then(() => file.flush())
    .catch(broken);
  table.set(be64(2 * cs), 0);
  const rc = new RefcountManager(file, layout, cs, table, file.path, t.refblockCacheBlocks);
  await rc.claimLeading(Math.ceil((3 * cs + h.l1Size * 8) / cs)).catch(broken);
  t.adopt(rc, new Uint8Array(h.l1Size * 8), 3 * cs);
  // qcow2_mark_clean: the caches flushed, then the whole header rewritten without the dirty bit.
  h.incompatibleFeatures &= ~INCOMPAT_DIRTY;
  await rc.writeBack();
  await file.flush();
  const cluster0 = new Uint8Array(cs);
  cluster0.set(serializeHeader(h, cs));
  await file.write(0, cluster0);
  await file.truncate((3 + l1c) * cs);
}
