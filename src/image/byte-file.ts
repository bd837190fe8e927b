import type { Extent } from './types.js';

/**
 * The moments a format announces before it does I/O on its file, named as
 * QEMU's BlkdebugEvent names them (qapi/block-core.json). qcow2 announces
 * them where QEMU's block/qcow2*.c calls BLKDBG_EVENT(bs->file, …), so a
 * blkdebug node under a qcow2 node arms the same inject-error and
 * set-state rules at the same points as under QEMU's.
 */
export type DebugEvent =
  | 'l1_update'
  | 'l1_grow_alloc_table'
  | 'l1_grow_write_table'
  | 'l1_grow_activate_table'
  | 'l1_shrink_write_table'
  | 'l1_shrink_free_l2_clusters'
  | 'l2_load'
  | 'l2_update'
  | 'l2_update_compressed'
  | 'l2_alloc_cow_read'
  | 'l2_alloc_write'
  | 'read_aio'
  | 'read_backing_aio'
  | 'read_compressed'
  | 'write_aio'
  | 'write_compressed'
  | 'cow_read'
  | 'cow_write'
  | 'reftable_load'
  | 'reftable_grow'
  | 'reftable_update'
  | 'empty_image_prepare'
  | 'refblock_load'
  | 'refblock_update_part'
  | 'refblock_alloc'
  | 'refblock_alloc_hookup'
  | 'refblock_alloc_write'
  | 'refblock_alloc_write_blocks'
  | 'refblock_alloc_write_table'
  | 'refblock_alloc_switch_table'
  | 'cluster_alloc'
  | 'cluster_alloc_bytes'
  | 'cluster_free'
  | 'cluster_alloc_space';

/**
 * What an image format needs from what lies below it: positional bytes.
 * A host file (HostFile) is one; in the daemon a block node is another
 * (blkdebug over file, say), so a qcow2 image's metadata and data I/O go
 * through the graph like QEMU's go through bs->file. Reads past the end
 * return zeroes; writes past the end grow it.
 */
export interface ByteFile {
  /** For messages and for resolving relative backing file names. */
  readonly path: string;
  readonly readOnly: boolean;
  read(offset: number, length: number): Promise<Uint8Array>;
  readInto(buf: Uint8Array, offset: number): Promise<void>;
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Several buffers back to back at `offset`. */
  writev(offset: number, bufs: Uint8Array[]): Promise<void>;
  size(): Promise<number>;
  /** Bytes occupied on the host (actual-size). */
  allocatedBytes(): Promise<number>;
  truncate(length: number): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
  /**
   * A format announces what its next I/O on this file is for (QEMU's
   * BLKDBG_EVENT). Optional: a host file has no one to tell, and leaving it
   * out keeps a call site's cost to one property lookup (`file.event?.(…)`,
   * with a constant name: nothing is built or allocated per request).
   */
  event?(e: DebugEvent): void;
  /**
   * What the bytes below know of their own allocation (a block node's
   * block status: nbd's server, null-co's nothing): a raw image asks it
   * instead of reading for zeroes, as QEMU's raw driver passes block
   * status down to its file. Optional: a host file has none.
   */
  blockStatus?(offset: number, length: number): Promise<Extent>;
  /**
   * From `offset`, the run (at most `length` bytes) that the host keeps as
   * a hole or as data, as lseek's SEEK_DATA/SEEK_HOLE tell it (written
   * zeroes are data). Optional: without it, a caller looks at the bytes.
   */
  allocation?(offset: number, length: number): Promise<HostRun>;
}

/** A run of a host file: a hole (reads as zeroes) or data. */
export interface HostRun {
  length: number;
  zero: boolean;
}
