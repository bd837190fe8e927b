import { classify, compressedClusters, compressedRef, type L2Entry } from './entry.js';
import type { Qcow2Image } from './image.js';
import { entryOffset, viewOf } from './layout.js';
import type { RefcountManager } from './refcount.js';
import { hex } from './corruption.js';

/** An L2 table ready to be changed: its host offset and a view of its bytes. */
export interface WritableL2 {
  off: number;
  view: DataView;
}

/**
 * The changes to L2 tables every writer makes: getting a table into a state
 * where it may be changed (allocated, or copied when a snapshot shares it),
 * rewriting the entries of a range, and releasing what replaced entries
 * held. All of it runs under the image's metadata mutex.
 */
export class L2Editor {
  constructor(
    private readonly img: Qcow2Image,
    private readonly rc: RefcountManager,
  ) {}

  /**
   * The L2 table for L1 index i, ready to change: at once when it needs no
   * allocation, copy or load (the common case; an await would cost a turn of
   * the microtask queue), else undefined and the caller awaits ready(i).
   */
  atHand(i: number): WritableL2 | undefined {
    const off = this.img.l2Offset(i);
    const t = off !== 0 && this.img.l1Copied(i) ? this.img.l2Cache.peek(off) : undefined;
    return t ? { off, view: viewOf(t) } : undefined;
  }

  async ready(i: number): Promise<WritableL2> {
    const off = await this.forWrite(i);
    return { off, view: viewOf(await this.img.l2Cache.get(off)) };
  }

  /**
   * The L2 table for L1 index i, allocated or copied (when shared with a
   * snapshot) so it can be changed: QEMU's l2_allocate, in its order and
   * with its blkdebug events (cluster_alloc, l2_alloc_cow_read,
   * l2_alloc_write, l1_update). QEMU writes the new table and the L1 entry
   * at once; they are written with the next flush here (see writeMetadata).
   */
  private async forWrite(i: number): Promise<number> {
    const img = this.img;
    const cs = img.layout.clusterSize;
    const off = img.l2Offset(i);
    if (off !== 0 && img.l1Copied(i)) return off;
    const fresh = (await this.rc.allocate(1, 'cluster_alloc', 'L2 table')) * cs;
    try {
      // l2_allocate flushes the refcount cache here (each block overlap-checked as it is written, which may fail the
      // write). The file's flush only with lazy refcounts: the table's own count is then on disk before the image goes
      // dirty, which is what a crash leaves (iotests 039, 061).
      if ((await this.rc.writeBack()) && img.lazy.enabled) await img.file.flush();
      let copy: Uint8Array | undefined;
      if (off !== 0) {
        img.file.event?.('l2_alloc_cow_read');
        copy = await img.l2Cache.get(off);
      }
      img.file.event?.('l2_alloc_write');
      // create() may evict the old table before copying it: harmless, a shared table is never changed in place.
      await img.l2Cache.create(fresh, copy);
    } catch (err) {
      // l2_allocate's failure: the new table's cluster, never referenced, goes back at once (qcow2_free_clusters).
      await this.rc.freeUnreferenced(fresh / cs, 1);
      throw err;
    }
    img.setL1(i, fresh);
    if (off !== 0) this.rc.free(off / cs);
    return fresh;
  }

  /** Queues the decrement for whatever host clusters an entry that is being replaced held. */
  release(e: L2Entry): void {
    const img = this.img;
    // qcow2_free_any_cluster: an external data file's clusters are not counted (nor, here, discarded).
    if (img.externalData) return;
    switch (classify(e, img.version)) {
      case 'normal':
      case 'zero': {
        const off = entryOffset(e.hi, e.lo);
        // Not fatal in QEMU either (qcow2_free_any_cluster): the cluster is left counted, the request goes on.
        if (off % img.layout.clusterSize !== 0) img.corruption.signal(false, `Cannot free unaligned cluster ${hex(off)}`);
        else if (off !== 0) this.rc.free(off / img.layout.clusterSize);
        return;
      }
      case 'compressed':
        for (const c of compressedClusters(compressedRef(e, img.layout), img.layout)) this.rc.free(c);
        return;
      case 'unallocated':
        return;
    }
  }

  /**
   * Rewrites the L2 entries of whole clusters [start, end) with `next(old)`,
   * releasing the host clusters that replaced entries held. L2 tables that do
   * not exist are created when `create` is set or the image has a backing
   * file (without one, their clusters already read as zeroes).
   */
  async updateEntries(start: number, end: number, create: boolean, next: (e: L2Entry) => L2Entry): Promise<void> {
    const img = this.img;
    const L = img.layout;
    for (let off = start; off < end; ) {
      const l1i = L.l1Index(off);
      const chunkEnd = Math.min(end, (l1i + 1) * L.l2Coverage);
      if (img.l2Offset(l1i) === 0 && !img.hasBacking() && !create) {
        off = chunkEnd;
        continue;
      }
      const { off: l2off, view } = this.atHand(l1i) ?? (await this.ready(l1i));
      let changed = false;
      for (let idx = L.l2Index(off); off < chunkEnd; off += L.clusterSize, idx++) {
        const e = img.readEntry(view, idx);
        const n = next(e);
        if (n.hi === e.hi && n.lo === e.lo && n.alloc === e.alloc && n.zero === e.zero) continue;
        if (entryOffset(n.hi, n.lo) !== entryOffset(e.hi, e.lo) || classify(n, img.version) === 'compressed' || classify(e, img.version) === 'compressed') {
          this.release(e);
        }
        img.writeEntry(view, idx, n);
        changed = true;
      }
      // A table none of whose entries changed is not written (QEMU's zero_in_l2_slice: no l2_update for zeroes already there).
      if (changed) img.l2Cache.markDirty(l2off);
    }
  }
}
