import { viewOf } from './layout.js';
import type { Qcow2Image } from './image.js';
import { getRefcount } from './refcount-codec.js';

/** The offset bits of a refcount table entry (qcow2.txt: bits 9-63). */
const REFTABLE_OFFSET_MASK = 0xfffffffffffffe00n;

/**
 * qcow2_detect_metadata_preallocation: whether the image's clusters are
 * mostly allocated in its refcounts but not on the host, as
 * `preallocation=metadata` leaves them (every data cluster referenced, the
 * file sparse below them). The refcounts of the file's clusters are
 * counted until they pass the clusters the host really holds by a ninth
 * (or by two). QEMU asks once, at the first block status, and then lets
 * block status look for holes under data clusters (BDRV_BLOCK_RECURSE).
 */
export async function detectMetadataPreallocation(img: Qcow2Image): Promise<boolean> {
  // No host below (blkdebug, an export): QEMU's bdrv_get_allocated_file_size fails there (ENOTSUP), and so does the detection.
  if (!img.file.allocation) return false;
  const cs = img.layout.clusterSize;
  const fileLength = await img.file.size();
  const realClusters = Math.floor((await img.file.allocatedBytes()) / cs);
  const threshold = Math.max(Math.floor((realClusters * 10) / 9), realClusters + 2);
  const endCluster = Math.ceil(fileLength / cs);
  const per = img.layout.refblockEntries;
  const bits = img.layout.refcountBits;
  const blockAt = img.refcounts ? (rt: number) => img.meta.run(() => img.refcounts!.blockAt(rt)) : await storedBlocks(img);
  let count = 0;
  for (let rt = 0; rt * per < endCluster && count < threshold; rt++) {
    const block = await blockAt(rt);
    if (!block) continue;
    const n = Math.min(per, endCluster - rt * per);
    for (let i = 0; i < n && count < threshold; i++) if (getRefcount(block, i, bits) !== 0) count++;
  }
  return count >= threshold;
}

/** Refcount blocks as the file holds them, for an image open read-only (no refcounts in memory). */
async function storedBlocks(img: Qcow2Image): Promise<(rt: number) => Promise<Uint8Array | undefined>> {
  const cs = img.layout.clusterSize;
  const table = viewOf(await img.file.read(img.header.refcountTableOffset, img.header.refcountTableClusters * cs));
  return async (rt) => {
    if (rt * 8 >= table.byteLength) return undefined;
    const off = Number(table.getBigUint64(rt * 8) & REFTABLE_OFFSET_MASK);
    if (off === 0) return undefined;
    if (off % cs !== 0) throw new Error(`refcount block ${rt} is unaligned`);
    return img.file.read(off, cs);
  };
}
