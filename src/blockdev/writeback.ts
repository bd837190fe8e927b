import type { BlockNode } from './node.js';

/** Data written between hints: small enough that the disk starts early, large enough that the syncs stay few. */
const WRITEBACK_BYTES = 32 << 20;

/**
 * Every WRITEBACK_BYTES of data a copy writes, its target is told to start
 * writing them out (BlockNode.startWriteback), one hint at a time: the
 * disk then works while the copy goes on, and the flush that ends the
 * copy (a backup's end, a mirror's READY) finds little left to do.
 */
export class WritebackHints {
  private unsynced = 0;
  private pending: Promise<void> | undefined;

  constructor(private readonly target: BlockNode) {}

  /** `bytes` of data (not zeroes) reached the target. */
  noteWritten(bytes: number): void {
    this.unsynced += bytes;
    if (this.unsynced < WRITEBACK_BYTES || this.pending) return;
    this.unsynced = 0;
    this.pending = this.target
      .startWriteback()
      .catch(() => undefined)
      .finally(() => (this.pending = undefined));
  }
}
