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
   * What the format's next request is for, by QEMU's blkdebug event name
   * (read_aio for guest data, l2_load for an L2 table, …): QEMU's format
   * drivers announce their requests so on bs->file. Files nothing
   * listens on leave it out.
   */
  announce?(event: string): void;
}
