import { BlockError } from '../errors.js';
import { MAX_REFTABLE_BYTES } from './header.js';
import type { Qcow2Image } from './image.js';
import { getRefcount, setRefcount } from './refcount-codec.js';

/**
 * A new refcount width for an image open for writing (qemu-img amend -o
 * refcount_bits=N), the way QEMU's qcow2_change_refcount_order goes about
 * it: walks over the refcount structure allocate the new refcount blocks
 * (allocations change refcounts, so the walk is repeated until one
 * allocates nothing, the new table allocated after each walk that did), a
 * last walk writes the blocks with the refcounts converted, then the new
 * table and the header; the old blocks and table are freed in the new
 * structure. `progress(done, total)` gets the walks' points, as QEMU's
 * status callback does.
 *
 * The image's own refcount cache still describes the old structure
 * afterwards: the caller reopens the image before anything else allocates.
 */
export async function changeRefcountOrder(img: Qcow2Image, order: number, progress?: (done: number, total: number) => void): Promise<void> {
  const rc = img.refcounts!;
  const cs = img.layout.clusterSize;
  const oldEntries = img.layout.refblockEntries;
  const newBits = 2 ** order;
  const newEntries = (cs * 8) / newBits;
  const newTable: number[] = [];
  let overflowChecked = false;

  /**
   * One walk over the old structure in cluster order; `finish(k, empty)` is
   * called for new block k once the walk reaches the first cluster after it
   * (or the end), before that cluster's refcount is read, as QEMU's walk
   * does (an allocation it makes can be that very cluster).
   */
  async function walk(index: number, total: number, finish: (k: number, empty: boolean) => Promise<void>, values?: Map<number, Uint8Array>): Promise<void> {
    let cur = 0;
    let curEmpty = true;
    let filled = 0;
    const advanceTo = async (cluster: number) => {
      while (cluster >= (cur + 1) * newEntries) {
        await finish(cur, curEmpty);
        cur++;
        curEmpty = true;
        filled = 0;
      }
    };
    let i = 0;
    for (; i < rc.tableEntries; i++) {
      progress?.(index * rc.tableEntries + i, total * rc.tableEntries);
      const base = i * oldEntries;
      if (rc.blockOffsetAt(i) === 0) {
        // No block: every refcount is 0, nothing to read.
        await advanceTo(base + oldEntries - 1);
        filled = base + oldEntries - cur * newEntries;
        continue;
      }
      for (let j = 0; j < oldEntries; j++) {
        const c = base + j;
        await advanceTo(c);
        const r = await rc.get(c);
        if (!overflowChecked && newBits < 64 && r >= 2 ** newBits) {
          throw new BlockError(
            'INVALID_ARGUMENT',
            `Cannot decrease refcount entry width to ${newBits} bits: Cluster at offset 0x${(c * cs).toString(16)} has a refcount of ${r}`,
            { errno: 'EINVAL' },
          );
        }
        if (r !== 0) {
          curEmpty = false;
          if (values) {
            let block = values.get(cur);
            if (!block) values.set(cur, (block = new Uint8Array(cs)));
            setRefcount(block, c - cur * newEntries, newBits, r);
          }
        }
        filled = c + 1 - cur * newEntries;
      }
    }
    if (filled > 0) await finish(cur, curEmpty);
    progress?.((index + 1) * rc.tableEntries, total * rc.tableEntries);
  }

  let allocated = false;
  const allocBlock = async (k: number, empty: boolean) => {
    if (empty) return;
    if (k >= newTable.length) {
      const size = Math.ceil((k + 1) / (cs / 8)) * (cs / 8);
      if (size > MAX_REFTABLE_BYTES / 8) {
        throw new BlockError('UNSUPPORTED', 'This operation would make the refcount table grow beyond the maximum size supported by QEMU, aborting', { errno: 'ENOTSUP' });
      }
      while (newTable.length < size) newTable.push(0);
    }
    if (newTable[k] === 0) {
      newTable[k] = (await rc.allocate(1)) * cs;
      allocated = true;
    }
  };

  let walkIndex = 0;
  let tableAt = 0;
  let tableClusters = 0;
  do {
    allocated = false;
    const total = Math.max(walkIndex + 2, 3);
    await walk(walkIndex++, total, allocBlock);
    overflowChecked = true;
    if (allocated) {
      if (tableAt !== 0) {
        rc.free(tableAt / cs, tableClusters);
        await rc.applyFrees();
      }
      tableClusters = Math.ceil((newTable.length * 8) / cs);
      tableAt = (await rc.allocate(tableClusters)) * cs;
    }
  } while (allocated);

  // The old blocks and table are freed once the new structure is in place: counted so right away.
  const oldTableAt = rc.tableOffset;
  const oldTableClusters = Math.ceil((rc.tableEntries * 8) / cs);
  const oldBlocks: number[] = [];
  for (let i = 0; i < rc.tableEntries; i++) if (rc.blockOffsetAt(i) !== 0) oldBlocks.push(rc.blockOffsetAt(i) / cs);

  const blocks = new Map<number, Uint8Array>();
  await walk(walkIndex, walkIndex + 1, async () => undefined, blocks);
  const release = (c: number) => {
    const k = Math.floor(c / newEntries);
    const block = blocks.get(k);
    if (!block) return;
    const i = c - k * newEntries;
    setRefcount(block, i, newBits, Math.max(0, getRefcount(block, i, newBits) - 1));
  };
  for (const c of oldBlocks) release(c);
  for (let c = 0; c < oldTableClusters; c++) release(oldTableAt / cs + c);

  await rc.writeBack();
  for (const [k, block] of blocks) if (newTable[k]) await img.file.write(newTable[k]!, block);
  const table = new Uint8Array(tableClusters * cs);
  const view = new DataView(table.buffer);
  newTable.forEach((off, k) => view.setBigUint64(k * 8, BigInt(off)));
  await img.file.write(tableAt, table);
  await img.file.flush();
  img.header.refcountOrder = order;
  img.header.refcountTableOffset = tableAt;
  img.header.refcountTableClusters = tableClusters;
}
