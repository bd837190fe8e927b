import type { ByteFile, DebugEvent, HostRun } from '../image/byte-file.js';
import type { BlockNode } from './node.js';

/**
 * A node's bytes as the image layer's ByteFile, so a qcow2 image above a
 * node does all its I/O through the graph (blkdebug rules included), as
 * QEMU's format drivers use bs->file. The events the image announces
 * (read_aio, l2_load, refblock_update_part, …) go to the node as
 * BLKDBG_EVENT(bs->file, …) goes to QEMU's. Closing does nothing: the
 * graph owns the node.
 */
export class NodeByteFile implements ByteFile {
  constructor(
    protected node: BlockNode,
    readonly path: string,
    /** Read-only whatever the node is (an image kept only for reading once its node was inactivated). */
    private readonly readOnlyView = false,
  ) {}

  /** From now on the bytes come from `node` (the file child was replaced, by a filter say). */
  retarget(node: BlockNode): void {
    this.node = node;
  }

  /** An inactive node's image is opened read-only: it must write nothing to a file another process owns. */
  get readOnly(): boolean {
    return this.readOnlyView || this.node.readOnly || this.node.inactive;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.readInto(out, offset);
    return out;
  }

  event(e: DebugEvent): void {
    this.node.debugEvent(e);
  }

  /** Bytes past the node's end read as zeroes, as from a host file. */
  readInto(buf: Uint8Array, offset: number): Promise<void> {
    const size = this.node.size();
    if (offset + buf.length <= size) return this.node.readInto(buf, offset);
    buf.fill(0, Math.max(0, size - offset));
    return offset < size ? this.node.readInto(buf.subarray(0, size - offset), offset) : Promise.resolve();
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.node.write(offset, data);
  }

  async writev(offset: number, bufs: Uint8Array[]): Promise<void> {
    // Nodes take one buffer per write: join only when there are several.
    if (bufs.length === 1) return this.write(offset, bufs[0]!);
    const all = new Uint8Array(bufs.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const b of bufs) {
      all.set(b, at);
      at += b.length;
    }
    await this.write(offset, all);
  }

  async size(): Promise<number> {
    return this.node.size();
  }

  /**
   * The host's holes, only when the node is a host file's: above anything
   * else (blkdebug, which QEMU counts a protocol driver with no allocated
   * size, an NBD export) there is no host to ask, as there is not in QEMU.
   */
  get allocation(): ((offset: number, length: number) => Promise<HostRun>) | undefined {
    const node = this.node;
    return node.hostAllocation ? (offset, length) => node.hostAllocation!(offset, length) : undefined;
  }

  async allocatedBytes(): Promise<number> {
    return (await this.node.imageInfo()).actualSize ?? this.node.size();
  }

  /** bdrv_co_truncate on the child: the node's resize (a filter passes it on; a driver without one refuses). */
  truncate(length: number): Promise<void> {
    return this.node.resize(length);
  }

  flush(): Promise<void> {
    return this.node.flush();
  }

  async close(): Promise<void> {}
}
