import { BlockError } from '../../image/errors.js';
import type { NodeChild } from '../child.js';
import type { BlockNode, WriteFlags } from '../node.js';
import { PassThroughFilter } from './filter-node.js';

/**
 * The `compress` filter (block/filter-compress.c): every write through it
 * reaches its `file`, a format that stores compressed clusters, as a
 * compressed write. Its request alignment is the file's cluster size, so
 * a write that does not cover whole clusters reads the rest of them first
 * (the generic layer's read-modify-write in QEMU). Reads, zero writes,
 * discards and flushes pass through.
 */
export class CompressNode extends PassThroughFilter {
  readonly driver = 'compress';

  private constructor(
    name: string,
    fileLink: NodeChild,
    readOnly: boolean,
    private readonly clusterSize: number,
  ) {
    super(name, readOnly, [fileLink]);
  }

  /** compress_open: the file must be a format that can compress. */
  static async open(name: string, fileLink: NodeChild, readOnly: boolean): Promise<CompressNode> {
    const file = fileLink.node;
    if (!file.supportsCompressedWrites) {
      throw new BlockError('UNSUPPORTED', `Compression is not supported for underlying format: ${file.driver}`, { errno: 'ENOTSUP' });
    }
    const info = await file.imageInfo();
    return new CompressNode(name, fileLink, readOnly, info.clusterSize ?? 512);
  }

  protected get filtered(): BlockNode {
    return this.child('file')!;
  }

  override requestAlignment(): number {
    return this.clusterSize;
  }

  /** Whole clusters, each written compressed; the partial ones first completed from what the file holds. */
  protected override async doWrite(offset: number, data: Uint8Array, _flags: WriteFlags): Promise<void> {
    const cs = this.clusterSize;
    const size = this.size();
    const start = offset - (offset % cs);
    const end = Math.min(size, Math.ceil((offset + data.length) / cs) * cs);
    let buf = data;
    if (start !== offset || end !== offset + data.length) {
      buf = await this.filtered.read(start, end - start);
      buf.set(data, offset - start);
    }
    for (let at = start; at < end; at += cs) await this.filtered.writeCompressed(at, buf.subarray(at - start, Math.min(end, at + cs) - start));
  }
}
