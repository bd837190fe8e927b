import type { Extent } from '../../image/types.js';
import { BlockNode, type NodeImageInfo, type StatusOptions, type WriteFlags, type ZeroFlags } from '../node.js';

/**
 * A filter node that passes every request to the node it filters
 * (copy-before-write's file, mirror_top's backing): drivers override only
 * what they do differently. Its image info is its child's under the
 * driver's name, as bdrv_co_get_info passes to the filtered child.
 */
export abstract class PassThroughFilter extends BlockNode {
  /** The node requests go to. */
  protected abstract get filtered(): BlockNode;

  size(): number {
    return this.filtered.size();
  }
  override get isFilter(): boolean {
    return true;
  }
  /** Neither copy-before-write nor mirror_top has a bdrv_reopen_prepare: QEMU refuses to reopen them. */
  override get supportsReopen(): boolean {
    return false;
  }
  blockStatus(offset: number, length: number, opts?: StatusOptions): Promise<Extent> {
    return this.filtered.blockStatus(offset, length, opts);
  }
  override blockStatusRuns(offset: number, length: number, opts?: StatusOptions): Promise<Extent[]> {
    return this.filtered.blockStatusRuns(offset, length, opts);
  }
  protected doRead(offset: number, length: number): Promise<Uint8Array> {
    return this.filtered.read(offset, length);
  }
  protected override doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    return this.filtered.readInto(buf, offset);
  }
  protected doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    return this.filtered.write(offset, data, flags);
  }
  protected doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    return this.filtered.writeZeroes(offset, length, flags);
  }
  protected doDiscard(offset: number, length: number): Promise<void> {
    return this.filtered.discard(offset, length);
  }
  protected doFlush(): Promise<void> {
    return this.filtered.flush();
  }
  /** These filters' own flush replaces the generic one, whose blkdebug events they therefore never announce. */
  protected override debugPrimary(): BlockNode | undefined {
    return undefined;
  }
  async imageInfo(): Promise<NodeImageInfo> {
    const s = await this.filtered.imageInfo();
    return {
      filename: s.filename,
      format: this.driver,
      virtualSize: this.size(),
      ...(s.actualSize !== undefined ? { actualSize: s.actualSize } : {}),
      ...(s.clusterSize !== undefined ? { clusterSize: s.clusterSize } : {}),
      // bdrv_get_info goes to the filtered child: a driver without one (null-co, nbd) leaves the dirty flag out here too.
      dirtyFlag: s.dirtyFlag === null ? null : false,
    };
  }
  protected async doClose(): Promise<void> {}
}
