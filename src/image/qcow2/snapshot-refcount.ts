import { classify, compressedClusters, compressedRef } from './entry.js';
import { hex } from './corruption.js';
import type { Qcow2Image } from './image.js';
import { COPIED_HI, entryHi, entryLo, entryOffset, setEntry, viewOf } from './layout.js';

/**
 * qcow2_update_snapshot_refcount: adds `addend` (-1, 0 or +1) to the
 * refcount of every cluster the L1 table at `l1Offset` reaches (its L2
 * tables, their data clusters, compressed streams), and makes the COPIED
 * flag of each entry on the way say whether its cluster's count is now
 * exactly 1. The active table is the one in memory (a caller switching
 * tables relies on that, as qcow2_snapshot_goto does); another table is
 * read from the file and, unless it is being dropped (addend -1), written
 * back with its flags. L2 tables whose count drops to 0 leave the cache:
 * nothing references them any more. Everything is on disk on return.
 * Call without holding the metadata mutex.
 */
export async function updateSnapshotRefcount(img: Qcow2Image, l1Offset: number, l1Size: number, addend: -1 | 0 | 1): Promise<void> {
  const cs = img.layout.clusterSize;
  const rc = img.refcounts!;
  const active = l1Offset === img.header.l1TableOffset;
  const l1 = active ? img.l1 : await img.file.read(l1Offset, l1Size * 8);
  const l1v = viewOf(l1);
  const changedL1: number[] = [];
  await img.meta.run(async () => {
    for (let i = 0; i < l1Size; i++) {
      const hi = entryHi(l1v, i);
      const lo = entryLo(l1v, i);
      if (hi === 0 && lo === 0) continue;
      const l2off = entryOffset(hi, lo);
      if (l2off % cs !== 0) throw img.corrupt(`L2 table offset ${hex(l2off)} unaligned (L1 index: ${hex(i)})`);
      const table = await img.l2Cache.get(l2off);
      const tv = viewOf(table);
      let dirty = false;
      for (let j = 0; j < img.layout.l2Entries; j++) {
        const w = img.layout.l2Word(j);
        const oldHi = entryHi(tv, w);
        const elo = entryLo(tv, w);
        const ehi = (oldHi & ~COPIED_HI) >>> 0;
        let count = 0;
        switch (classify({ hi: ehi, lo: elo }, img.version)) {
          case 'compressed':
            if (addend !== 0) for (const c of compressedClusters(compressedRef({ hi: ehi, lo: elo }, img.layout), img.layout)) await rc.change(c, addend);
            // Compressed clusters are never written in place: never COPIED.
            count = 2;
            break;
          case 'normal':
          case 'zero': {
            const off = entryOffset(ehi, elo);
            if (off === 0) break;
            if (off % cs !== 0) throw img.corrupt(`Cluster allocation offset ${hex(off)} unaligned (L2 offset: ${hex(l2off)}, L2 index: ${hex(j)})`);
            count = addend !== 0 ? await rc.change(off / cs, addend) : await rc.get(off / cs);
            break;
          }
          case 'unallocated':
            break;
        }
        const newHi = count === 1 ? (ehi | COPIED_HI) >>> 0 : ehi;
        if (newHi !== oldHi >>> 0) {
          setEntry(tv, w, newHi, elo);
          dirty = true;
        }
      }
      const count = addend !== 0 ? await rc.change(l2off / cs, addend) : await rc.get(l2off / cs);
      if (count === 0) img.l2Cache.drop(l2off);
      else if (dirty) img.l2Cache.markDirty(l2off);
      const l1Hi = count === 1 ? (hi | COPIED_HI) >>> 0 : (hi & ~COPIED_HI) >>> 0;
      if (l1Hi !== hi >>> 0) {
        setEntry(l1v, i, l1Hi, lo);
        changedL1.push(i);
      }
    }
    await img.writeMetadata();
    await img.file.flush();
  });
  // A table being dropped is not written back (nor, for the active one, the entries of the table being replaced).
  if (addend < 0 || changedL1.length === 0) return;
  if (active) {
    for (const i of changedL1) img.l1Dirty.add(i);
    await img.flush();
  } else {
    await img.file.write(l1Offset, l1);
    await img.file.flush();
  }
}
