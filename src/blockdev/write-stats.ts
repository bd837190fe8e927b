import type { BlockNode } from './node.js';

/**
 * What the generic write path remembers of a node's writes: the highest
 * offset ever written (bs->wr_highest_offset, query-blockstats'
 * wr_highest_offset) and the write threshold (block/write-threshold.c).
 * Two numbers and two compares per request: it sits on every write.
 */
export class NodeWriteStats {
  /** End of the furthest write request, failed or not, as bdrv_co_write_req_finish keeps it. */
  highestOffset = 0;
  /** 0: off. Set by block-set-write-threshold; back to 0 once it fired. Beyond 2^53 no write reaches it: Infinity. */
  private threshold = 0;
  /** The threshold as it was set (a uint64), for the queries. */
  private exactThreshold: bigint = 0n;

  /** bdrv_write_threshold_set: 0 turns it off. */
  setThreshold(bytes: number | bigint): void {
    this.exactThreshold = BigInt(bytes);
    this.threshold = this.exactThreshold <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(bytes) : Infinity;
  }

  /** bdrv_write_threshold_get: the threshold in force, 0 for none. */
  get writeThreshold(): bigint {
    return this.exactThreshold;
  }

  /**
   * bdrv_write_threshold_check_write, called as a write, zero write or
   * discard is about to reach the driver: a request ending past the
   * threshold announces it once and turns it off, so a guest filling its
   * disk does not flood the monitor.
   */
  check(node: BlockNode, offset: number, bytes: number, align = 1): void {
    const t = this.threshold;
    if (t === 0) return;
    const end = alignUp(offset + bytes, align);
    if (end <= t) return;
    this.setThreshold(0);
    node.eventSink?.({ kind: 'write-threshold', node, amountExceeded: end - t, threshold: t });
  }

  /** A write request ended (zero-length ones do not count). */
  finish(offset: number, bytes: number, align = 1): void {
    if (bytes === 0) return;
    const end = alignUp(offset + bytes, align);
    if (end > this.highestOffset) this.highestOffset = end;
  }
}

// A write reaches QEMU's generic layer padded to the node's request alignment (bdrv_aligned_pwritev), and is counted so.
const alignUp = (n: number, a: number) => (a === 1 ? n : Math.ceil(n / a) * a);
