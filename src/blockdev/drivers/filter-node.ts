import { BlockError } from '../../image/errors.js';
import type { Extent } from '../../image/types.js';
import { filteredChild } from '../chain.js';
import { BlockNode, type NodeImageInfo, type StatusOptions, type WriteFlags, type ZeroFlags } from '../node.js';

/**
 * What filter drivers share (drv->is_filter: copy-before-write,
 * copy-on-read, commit_top): every request passes to the one node they
 * filter (`file`, or `backing` for commit_top), whichever node their link
 * points at now; a driver overrides what it does differently.
 */
export abstract class FilterNode extends BlockNode {
  override get isFilter(): boolean {
    return true;
  }

  /** The filtered node; a filter taken out of the chain has none. */
  protected get below(): BlockNode {
    const b = filteredChild(this);
    if (!b) throw new BlockError('IO', `Filter node '${this.nodeName}' has no child`, { errno: 'ENOMEDIUM' });
    return b;
  }

  size(): number {
    return filteredChild(this)?.size() ?? 0;
  }
  protected doRead(offset: number, length: number): Promise<Uint8Array> {
    return this.below.read(offset, length);
  }
  protected override doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    return this.below.readInto(buf, offset);
  }
  protected doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    return this.below.write(offset, data, flags);
  }
  protected doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    return this.below.writeZeroes(offset, length, flags);
  }
  protected doDiscard(offset: number, length: number): Promise<void> {
    return this.below.discard(offset, length);
  }
  protected doFlush(): Promise<void> {
    return this.below.flush();
  }
  blockStatus(offset: number, length: number, opts?: StatusOptions): Promise<Extent> {
    return this.below.blockStatus(offset, length, opts);
  }
  override blockStatusRuns(offset: number, length: number, opts?: StatusOptions): Promise<Extent[]> {
    return this.below.blockStatusRuns(offset, length, opts);
  }

  /**
   * What QEMU's queries say of a filter without image info of its own:
   * its size, its filtered node's file name, allocation and cluster size
   * (bdrv_co_get_info passes to the filtered child), a clean dirty flag.
   */
  async imageInfo(): Promise<NodeImageInfo> {
    const s = await this.below.imageInfo();
    return {
      filename: s.filename,
      format: this.driver,
      virtualSize: this.size(),
      ...(s.actualSize !== undefined ? { actualSize: s.actualSize } : {}),
      ...(s.clusterSize !== undefined ? { clusterSize: s.clusterSize } : {}),
      dirtyFlag: false,
    };
  }
  protected async doClose(): Promise<void> {}
}
