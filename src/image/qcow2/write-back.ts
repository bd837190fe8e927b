import type { Qcow2Image } from './image.js';

/**
 * THE crash-safety order. Whatever instant the process (or the machine) dies,
 * the file holds at worst leaked clusters, never a reference to an
 * uncounted or unwritten cluster:
 *   0. guest data is written before its L2 entry changes, even in memory
 *      (Qcow2Writer), so no table ever points at unwritten data;
 *   1. refcount blocks, then refcount-table entries: a cluster is counted
 *      before anything on disk points at it (leak at worst);
 *   2. barrier;  3. L2 tables;  4. barrier;  5. the L1 table;
 *   6. barrier;  7. queued decrements applied and their refcount blocks
 *      written: a count drops only after no table on disk references it;
 *   8. barrier (the caller's: flush() or the node's flush to disk).
 * A barrier comes only between writes (the first one also covers guest
 * data, before any table may point at it), so a flush with nothing to
 * write flushes once, as QEMU's does. A dirty L2 table evicted early is
 * written after step 1 for the same reason (see the L2 cache's write-back
 * hook). The header changes only when the refcount table moves, in one
 * 12-byte write between two barriers. A write that fails leaves what it
 * was writing dirty, so the next flush picks up at the same step.
 * Call under the metadata mutex (flush does; a resize, holding it, calls
 * this between its steps).
 */
export async function writeMetadata(img: Qcow2Image, onFreesApplied: () => void): Promise<void> {
  if (img.corruption.gone) return;
  const rc = img.refcounts!;
  const accurate = img.lazy.accurate;
  if (accurate) await rc.writeBack();
  // Nothing changes the tables meanwhile: writers change them only under the mutex we hold.
  const l2 = img.l2Cache.hasDirty();
  const l1 = img.l1Dirty.size > 0;
  const frees = rc.hasPendingFrees();
  if (!l2 && !l1 && !frees) return;
  await img.file.flush();
  if (l2) {
    await img.l2Cache.writeDirty();
    if (l1 || frees) await img.file.flush();
  }
  if (l1) {
    await writeL1(img);
    if (frees) await img.file.flush();
  }
  if (frees) {
    onFreesApplied();
    await rc.applyFrees();
    if (accurate) await rc.writeBack();
  }
}

/** Writes the L1 entries changed in memory; their l1_update was announced when they changed (setL1). */
async function writeL1(img: Qcow2Image): Promise<boolean> {
  if (img.l1Dirty.size === 0) return false;
  const idx = [...img.l1Dirty].sort((a, b) => a - b);
  img.l1Dirty.clear();
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j + 1 < idx.length && idx[j + 1] === idx[j]! + 1) j++;
    try {
      await img.file.write(img.header.l1TableOffset + idx[i]! * 8, img.l1.subarray(idx[i]! * 8, (idx[j]! + 1) * 8));
    } catch (err) {
      for (const k of idx.slice(i)) img.l1Dirty.add(k);
      throw err;
    }
    i = j + 1;
  }
  return true;
}
