import { BlockError } from '../image/errors.js';
import type { BlockImage, Extent, ImageFormat, ImageInfo, StatusOptions } from '../image/types.js';
import type { BlockNode, NodeImageInfo } from './node.js';

/**
 * A node of the graph seen as a read-only backing image, for a qcow2 node
 * opened with a `backing` node (a snapshot overlay on top of an existing
 * node). The graph owns the node: closing this view leaves it open.
 */
export class NodeImage implements BlockImage {
  readonly readOnly = true;
  readonly format: ImageFormat;
  readonly filename: string;

  private constructor(
    private readonly node: BlockNode,
    private readonly meta: NodeImageInfo,
  ) {
    this.format = node.driver === 'qcow2' ? 'qcow2' : 'raw';
    this.filename = meta.filename;
  }

  static async of(node: BlockNode): Promise<NodeImage> {
    return new NodeImage(node, await node.imageInfo());
  }

  size(): number {
    return this.node.size();
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    return this.node.read(offset, length);
  }
  readInto(out: Uint8Array, offset: number): Promise<void> {
    return this.node.readInto(out, offset);
  }
  private refuse(): never {
    throw new BlockError('READ_ONLY', `Node '${this.node.nodeName}' is used as a backing image here and is read-only`, { errno: 'EPERM' });
  }
  write(): Promise<void> {
    this.refuse();
  }
  writeZeroes(): Promise<void> {
    this.refuse();
  }
  discard(): Promise<void> {
    this.refuse();
  }
  resize(): Promise<void> {
    this.refuse();
  }
  async flush(): Promise<void> {}
  blockStatus(offset: number, length: number, opts?: StatusOptions): Promise<Extent> {
    return this.node.blockStatus(offset, length, opts);
  }
  async actualSize(): Promise<number> {
    return (await this.node.imageInfo()).actualSize ?? 0;
  }
  info(): ImageInfo {
    const m = this.meta;
    return {
      format: this.format,
      filename: m.filename,
      virtualSize: this.node.size(),
      ...(m.clusterSize !== undefined ? { clusterSize: m.clusterSize } : {}),
      ...(m.backingFilename !== undefined ? { backingFilename: m.backingFilename } : {}),
      ...(m.backingFormat !== undefined ? { backingFormat: m.backingFormat } : {}),
      ...(m.fullBackingFilename !== undefined ? { fullBackingFilename: m.fullBackingFilename } : {}),
      ...(typeof m.dirtyFlag === 'boolean' ? { dirtyFlag: m.dirtyFlag } : {}),
      ...(m.formatSpecific !== undefined ? { formatSpecific: m.formatSpecific } : {}),
    };
  }
  /** The chain below is the node's own business (its imageInfo describes it). */
  backing(): BlockImage | undefined {
    return undefined;
  }
  /** The node stays open: the graph owns it. */
  async close(): Promise<void> {}
}
