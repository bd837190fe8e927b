import { errnoOf, strerror } from '../errno.js';
import { BlockError } from '../errors.js';
import { HostFile } from '../file.js';
import { ZERO_CHUNK } from '../request.js';
import { resizeFile, writeZeroes } from '../resize.js';
import type { Preallocation, ResizeOptions } from '../types.js';
import { classify, isInPlace } from './entry.js';
import { HDR_OFF_L1_SIZE, HDR_OFF_SIZE, MAX_L1_BYTES } from './header.js';
import type { Qcow2Image } from './image.js';
import { L2Editor } from './l2-editor.js';
import { COPIED_HI, offsetHi, offsetLo, setEntry, viewOf } from './layout.js';
import type { RefcountManager } from './refcount.js';
import type { Qcow2Writer } from './writer.js';

/**
 * Changing a qcow2 image's virtual size, as QEMU 7.2's qcow2_co_truncate
 * does, with its checks, their order and its messages.
 *
 * Growing: the L1 table grows to exactly what the new size needs
 * (qcow2_grow_l1_table: a new table counted, written and flushed, then the
 * header switched to it in one 12-byte write, then the old one freed); the
 * new area is left unallocated, or preallocated; when a backing file is
 * longer than the old size its data must not show through, so the new area
 * gets zero clusters (version 3) or the resize fails (version 2).
 *
 * Shrinking: the clusters wholly past the new end are discarded (their
 * entries cleared, so a later growth reads them from the backing file or as
 * zeroes), L2 tables wholly past it freed and their L1 entries cleared (the
 * L1 table keeps its size, as in QEMU), refcount blocks left counting
 * nothing dropped (qcow2_shrink_reftable), and the file cut after its last
 * used cluster. The cluster holding the new end keeps its bytes past it.
 *
 * The header's size field is written last, after everything it exposes is
 * on disk. Every metadata step goes through Qcow2Image.writeMetadata or
 * keeps its order (new things counted and written, then pointed at, then
 * old ones freed), so a crash at any instant leaves at worst leaked clusters.
 *
 * The resize holds the range lock over the whole image: writes wait for it
 * and then see the new size. Reads in flight are the caller's to drain.
 */
export async function resizeQcow2(img: Qcow2Image, writer: Qcow2Writer, newSize: number, opts: ResizeOptions): Promise<void> {
  const prealloc = opts.preallocation ?? 'off';
  if (newSize % 512 !== 0) throw new BlockError('INVALID_ARGUMENT', 'The new size must be a multiple of 512', { errno: 'EINVAL' });
  const release = opts.rangesHeld ? () => undefined : await img.ranges.acquire(0, Infinity);
  try {
    const h = img.header;
    // Snapshots record their own size only from version 3 on.
    if (h.nbSnapshots > 0 && h.version < 3) throw new BlockError('UNSUPPORTED', "Can't resize a v2 image which has snapshots", { errno: 'ENOTSUP' });
    await checkBitmaps(img, opts);
    const rc = img.refcounts!;
    const old = h.size;
    if (newSize < old) {
      if (prealloc !== 'off') throw new BlockError('INVALID_ARGUMENT', "Preallocation can't be used for shrinking an image", { errno: 'EINVAL' });
      await shrink(img, rc, newSize, opts);
    } else {
      await grow(img, writer, rc, old, newSize, prealloc);
    }
    // Without preallocation an external data file takes the new size exactly, shrinking too (qcow2_co_truncate's PREALLOC_MODE_OFF case).
    if (img.externalData && effectivePrealloc(img, prealloc, newSize >= old) === 'off') await resizeFile(img.dataFile, newSize);
    await step('Failed to update the image size', async () => {
      await img.meta.run(() => img.writeMetadata());
      const b = new Uint8Array(8);
      viewOf(b).setBigUint64(0, BigInt(newSize));
      await img.file.write(HDR_OFF_SIZE, b);
      await img.file.flush();
    });
    h.size = newSize;
  } finally {
    release();
  }
}

/**
 * qcow2_truncate_bitmaps_check: bitmaps are resized in memory and stored
 * later, so every bitmap in the image must be held by the caller and may
 * change (not inconsistent, busy or read-only).
 */
async function checkBitmaps(img: Qcow2Image, opts: ResizeOptions): Promise<void> {
  for (const { name } of await img.bitmaps.describe()) {
    const held = opts.heldBitmap?.(name);
    if (!held) throw new BlockError('UNSUPPORTED', 'Cannot resize qcow2 with persistent bitmaps that were not loaded into memory', { errno: 'ENOTSUP' });
    held.check();
  }
}

/** Runs one step, whose failure QEMU reports as "what: strerror(errno)". */
async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    let errno = 'EIO';
    try {
      errno = errnoOf(err);
    } catch {
      // Not an error with an errno: EIO, as QEMU would see it; the cause keeps the rest.
    }
    throw new BlockError(err instanceof BlockError ? err.code : 'IO', `${what}: ${strerror(errno)}`, { errno, cause: err });
  }
}

async function shrink(img: Qcow2Image, rc: RefcountManager, newSize: number, opts: ResizeOptions): Promise<void> {
  const L = img.layout;
  const cs = L.clusterSize;
  const l2 = new L2Editor(img, rc);
  const newL1 = L.l1SizeFor(newSize);
  const cropFrom = L.clusterEnd(newSize);
  await step('Failed to discard cropped clusters', () =>
    img.meta.run(async () => {
      // From a clean state: the tables dropped below are then the disk's.
      await img.writeMetadata();
      // Everything past the new end is discarded in full (qcow2_cluster_discard), the tables found as
      // get_cluster_table finds them: a missing one is allocated, as QEMU's is (and those past the new
      // L1 size go again below), so the file ends where QEMU's does.
      const oldEnd = L.clusterEnd(img.size());
      if (cropFrom < oldEnd) await l2.updateEntries(cropFrom, oldEnd, true, () => ({ hi: 0, lo: 0 }));
    }),
  );
  await step('Failed to reduce the number of L2 tables', () =>
    img.meta.run(async () => {
      // Tables wholly past the end go with everything they hold; their L1
      // entries are cleared on disk before any of it is freed (writeMetadata),
      // announced as qcow2_shrink_l1_table announces them.
      img.file.event?.('l1_shrink_write_table');
      for (let i = newL1; i < img.header.l1Size; i++) {
        const off = img.l2Offset(i);
        if (off === 0) continue;
        const view = viewOf(await img.l2Cache.get(off));
        for (let e = 0; e < L.l2Entries; e++) l2.release(img.readEntry(view, e));
        img.l2Cache.drop(off);
        rc.free(off / cs);
        setEntry(img.l1View, i, 0, 0);
        img.l1Dirty.add(i);
      }
      img.file.event?.('l1_shrink_free_l2_clusters');
      await img.writeMetadata();
    }),
  );
  await step('Failed to discard unused refblocks', () =>
    img.meta.run(async () => {
      await rc.dropUnusedBlocks();
      await img.writeMetadata();
    }),
  );
  const fileSize = await step('Failed to inquire current file length', () => img.file.size());
  const last = await step('Failed to find the last cluster', () => img.meta.run(() => rc.lastUsedCluster(Math.ceil(fileSize / cs))));
  if (last < 0) throw new BlockError('INVALID_IMAGE', 'Failed to find the last cluster: Input/output error', { errno: 'EIO' });
  if ((last + 1) * cs < fileSize) {
    // Not an error: the image is whole, the file only longer than it needs to be.
    await resizeFile(img.file, (last + 1) * cs).catch((err: unknown) => opts.warn?.(`Failed to truncate the tail of the image: ${err instanceof Error ? err.message : String(err)}`));
  }
}

/** data-file-raw keeps the tables mapping every cluster onto the data file: growing preallocates metadata at least. */
function effectivePrealloc(img: Qcow2Image, prealloc: Preallocation, growing: boolean): Preallocation {
  return growing && img.dataFileRaw && prealloc === 'off' ? 'metadata' : prealloc;
}

async function grow(img: Qcow2Image, writer: Qcow2Writer, rc: RefcountManager, old: number, newSize: number, asked: Preallocation): Promise<void> {
  const prealloc = effectivePrealloc(img, asked, true);
  const L = img.layout;
  const newL1 = L.l1SizeFor(newSize);
  if (newL1 > img.header.l1Size) await step('Failed to grow the L1 table', () => img.meta.run(() => growL1(img, rc, newL1)));
  if (prealloc !== 'off') await preallocate(img, writer, rc, old, newSize, prealloc);
  // bdrv_co_truncate's BDRV_REQ_ZERO_WRITE: a longer backing file must not
  // show through the new area. falloc and full have written zeroes there.
  const backing = img.backing();
  if (newSize > old && backing !== undefined && backing.size() > old && (prealloc === 'off' || prealloc === 'metadata')) {
    if (L.extendedL2) return zeroNewSubclusters(writer, old, newSize);
    const zeroStart = L.clusterEnd(old);
    if (newSize > zeroStart) {
      if (img.version < 3) throw new BlockError('UNSUPPORTED', 'Failed to zero out new clusters: Operation not supported', { errno: 'ENOTSUP' });
      await step('Failed to zero out new clusters', () => writer.zeroClusters(zeroStart, L.clusterEnd(newSize), false));
    }
    // The rest of the cluster that held the old end, as zeroes written (copy-on-write keeps its head).
    if (zeroStart > old) await step('Failed to zero out the new area', () => writer.writeLocked(old, ZERO_CHUNK.subarray(0, Math.min(zeroStart, newSize) - old)));
  }
  if (prealloc !== 'off') await step('Failed to flush the preallocated area to disk', () => img.meta.run(() => img.writeMetadata()));
}

/**
 * The new area's zeroes with extended L2 entries: zero subclusters from the
 * first subcluster boundary at or after the old end, zeroes written before
 * it (qcow2_co_truncate's BDRV_REQ_ZERO_WRITE part).
 */
async function zeroNewSubclusters(writer: Qcow2Writer, old: number, newSize: number): Promise<void> {
  const scs = writer.subclusterSize;
  const zeroStart = Math.ceil(old / scs) * scs;
  if (newSize > zeroStart) await step('Failed to zero out new clusters', () => writer.zeroizeSubclusters(zeroStart, newSize - zeroStart));
  if (zeroStart > old) await step('Failed to zero out the new area', () => writer.writeLocked(old, ZERO_CHUNK.subarray(0, Math.min(zeroStart, newSize) - old)));
}

/**
 * qcow2_grow_l1_table with an exact size: the new table is counted and
 * flushed, written and flushed, the header's l1_size and l1_table_offset
 * switched to it in one write and flushed, and only then the old table
 * freed. Under the metadata mutex.
 */
export async function growL1(img: Qcow2Image, rc: RefcountManager, newL1: number): Promise<void> {
  if (newL1 * 8 > MAX_L1_BYTES) throw new BlockError('INVALID_ARGUMENT', `L1 table of ${newL1} entries is too large`, { errno: 'EFBIG' });
  const cs = img.layout.clusterSize;
  // The L2 tables the copy points at must be on disk before it is.
  await img.writeMetadata();
  const table = new Uint8Array(newL1 * 8);
  table.set(img.l1);
  const clusters = Math.ceil(table.length / cs);
  // qcow2_grow_l1_table's blkdebug events, each before its step.
  img.file.event?.('l1_grow_alloc_table');
  const first = await rc.allocate(clusters);
  const at = first * cs;
  try {
    await rc.writeBack();
    await img.file.flush();
    img.file.event?.('l1_grow_write_table');
    await img.file.write(at, table);
    await img.file.flush();
    img.file.event?.('l1_grow_activate_table');
    const hdr = new Uint8Array(12);
    viewOf(hdr).setUint32(0, newL1);
    viewOf(hdr).setBigUint64(4, BigInt(at));
    await img.file.write(HDR_OFF_L1_SIZE, hdr);
    await img.file.flush();
  } catch (err) {
    for (let c = first; c < first + clusters; c++) rc.free(c);
    throw err;
  }
  const oldAt = img.header.l1TableOffset;
  const oldBytes = img.header.l1Size * 8;
  img.adoptL1(table, at);
  for (let c = oldAt / cs; c < Math.ceil((oldAt + oldBytes) / cs); c++) rc.free(c);
  await img.writeMetadata();
}

/**
 * Preallocation of the new area. `metadata` (preallocate_co): each new
 * cluster is allocated and mapped, and the file extended to hold them; a
 * cluster that already had been allocated and stays in place keeps what
 * it holds. `falloc` and `full` (the data area of qcow2_co_truncate): the
 * new clusters hold zeroes written, the cluster that held the old end
 * included (rewritten, so its part past the old end reads as zeroes).
 * Data is in place before the entries that map it change.
 */
async function preallocate(img: Qcow2Image, writer: Qcow2Writer, rc: RefcountManager, old: number, newSize: number, mode: Preallocation): Promise<void> {
  const L = img.layout;
  const cs = L.clusterSize;
  const what = mode === 'metadata' ? 'Allocating clusters failed' : 'Failed to allocate data clusters';
  // The cluster holding the old end. With extended L2 entries metadata preallocation maps it with the new ones and
  // leaves its subclusters as they read (preallocate_co's link_l2 does not touch the bitmap): nothing is written.
  let from = L.clusterEnd(old);
  if (old % cs !== 0 && newSize > old) {
    const m = await img.meta.run(() => img.map(L.clusterStart(old), 1));
    const inPlace = isInPlace(m.entry, img.version, img.externalData);
    // (Only an unallocated one: a compressed or shared cluster's data is copied by the write below, never dropped.)
    if (L.extendedL2 && mode === 'metadata' && !img.externalData && classify(m.entry, img.version) === 'unallocated') {
      from = L.clusterStart(old);
    } else if (mode !== 'metadata' || !inPlace) {
      await step(what, () => writer.writeLocked(old, ZERO_CHUNK.subarray(0, Math.min(L.clusterEnd(old), newSize) - old)));
    }
  }
  const l2 = new L2Editor(img, rc);
  const end = L.clusterEnd(newSize);
  if (img.externalData) return preallocateDataFile(img, l2, L.clusterEnd(old), newSize, mode, what);
  for (let pos = from; pos < end; ) {
    const l1i = L.l1Index(pos);
    const want = (Math.min(end, (l1i + 1) * L.l2Coverage) - pos) / cs;
    // preallocate_co maps clusters through qcow2_alloc_host_offset, which allocates the L2 table before the data it maps.
    if (mode === 'metadata') await step(what, () => img.meta.run(async () => l2.atHand(l1i) ?? (await l2.ready(l1i))));
    const run = await step(what, () => img.meta.run(() => rc.allocateRun(want)));
    const host = run.start * cs;
    const bytes = run.count * cs;
    // A node below that refuses to grow says why in its own words (nbd: "Cannot grow NBD nodes"), as
    // bdrv_co_truncate's error reaches qcow2's caller; a host file's failure is file-posix's "Could not resize file".
    let refusal: BlockError | undefined;
    await step(mode === 'metadata' ? 'Could not resize file' : 'Failed to resize underlying file', async () => {
      try {
        const fileSize = await img.file.size();
        // metadata: clusters past the end of the file read as zeroes once it reaches them; reused ones are zeroed.
        const zeroTo = mode === 'metadata' ? Math.min(host + bytes, fileSize) : host + bytes;
        await writeZeroes(img.file, host, zeroTo);
        if (host + bytes > (await img.file.size())) {
          await img.file.truncate(host + bytes).catch((err: unknown) => {
            if (!(img.file instanceof HostFile) && err instanceof BlockError && err.code !== 'IO') refusal = err;
            throw err;
          });
        }
      } catch (err) {
        for (let c = run.start; c < run.start + run.count; c++) rc.free(c);
        throw err;
      }
    }).catch((err: unknown) => {
      throw refusal ?? err;
    });
    await step(mode === 'metadata' ? 'Mapping clusters failed' : 'Failed to update L2 tables', () =>
      img.meta.run(async () => {
        const { off, view } = l2.atHand(l1i) ?? (await l2.ready(l1i));
        const idx = L.l2Index(pos);
        // Extended entries keep their bitmaps (the subclusters read as before: from the backing file, or zeroes), but
        // for falloc and full over a longer backing file, whose zeroes must show: then they are all allocated.
        const backing = img.backing();
        const allocate = mode !== 'metadata' && backing !== undefined && backing.size() > old;
        for (let k = 0; k < run.count; k++) {
          const e = img.readEntry(view, idx + k);
          const h = host + k * cs;
          const bitmap = allocate ? { alloc: 0xffffffff, zero: 0 } : { alloc: e.alloc, zero: e.zero };
          img.writeEntry(view, idx + k, { hi: offsetHi(h) | COPIED_HI, lo: offsetLo(h), ...bitmap });
          l2.release(e);
        }
        img.l2Cache.markDirty(off);
      }),
    );
    pos += bytes;
  }
}

/**
 * preallocate_co with an external data file: every new cluster is mapped
 * at its guest offset (nothing is counted or written in the image file),
 * then the data file grown to the new size if shorter, with the mode
 * (metadata: sparsely).
 */
async function preallocateDataFile(img: Qcow2Image, l2: L2Editor, from: number, newSize: number, mode: Preallocation, what: string): Promise<void> {
  const L = img.layout;
  const cs = L.clusterSize;
  const end = L.clusterEnd(newSize);
  for (let pos = from; pos < end; ) {
    const l1i = L.l1Index(pos);
    const chunkEnd = Math.min(end, (l1i + 1) * L.l2Coverage);
    await step(what, () =>
      img.meta.run(async () => {
        const { off, view } = l2.atHand(l1i) ?? (await l2.ready(l1i));
        for (let g = pos, idx = L.l2Index(pos); g < chunkEnd; g += cs, idx++) {
          const e = img.readEntry(view, idx);
          if (isInPlace(e, img.version, true)) continue;
          img.writeEntry(view, idx, { hi: offsetHi(g) | COPIED_HI, lo: offsetLo(g), alloc: e.alloc, zero: e.zero });
        }
        img.l2Cache.markDirty(off);
      }),
    );
    pos = chunkEnd;
  }
  if ((await img.dataFile.size()) < newSize) await resizeFile(img.dataFile, newSize, mode === 'metadata' ? 'off' : mode);
}
