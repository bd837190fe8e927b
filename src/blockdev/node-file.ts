import type { ByteFile } from '../image/byte-file.js';
import { BlockError } from '../image/errors.js';
import type { BlockNode } from './node.js';

/**
 * A node's bytes as the image layer's ByteFile, so a qcow2 image above a
 * node does all its I/O through the graph (blkdebug rules included), as
 * QEMU's format drivers use bs->file. The image announces what its
 * requests are for (read_aio for guest data, l2_load, …) and the node
 * hears it, as blkdebug hears BLKDBG_EVENT; requests it does not announce
 * (reading the header at open, say) arm nothing, as in QEMU.
 * Closing does nothing: the graph owns the node.
 */
export class NodeByteFile implements ByteFile {
  constructor(
    private node: BlockNode,
    readonly path: string,
  ) {}

  /** From now on the bytes come from `node` (the file child was replaced, by a filter say). */
  retarget(node: BlockNode): void {
    this.node = node;
  }

  get readOnly(): boolean {
    return this.node.readOnly;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.readInto(out, offset);
    return out;
  }

  /** Bytes past the node's end read as zeroes, as from a host file. */
  announce(event: string): void {
    this.node.debugEvent(event);
  }

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

  async allocatedBytes(): Promise<number> {
    return (await this.node.imageInfo()).actualSize ?? this.node.size();
  }

  async truncate(length: number): Promise<void> {
    const node = this.node as BlockNode & { truncate?: (length: number) => Promise<void> };
    if (node.truncate) return node.truncate(length);
    throw new BlockError('UNSUPPORTED', `Cannot resize node '${this.node.nodeName}'`, { errno: 'ENOTSUP' });
  }

  flush(): Promise<void> {
    return this.node.flush();
  }

  async close(): Promise<void> {}
}
