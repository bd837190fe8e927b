import { ChunkBitmap } from '../bitmap.js';
import type { Extent } from '../../image/types.js';
import { BlockNode, type NodeImageInfo, type StatusOptions, type WriteFlags, type ZeroFlags } from '../node.js';

/**
 * The `copy-before-write` filter a backup job puts above its source
 * (block/copy-before-write.c), so the job is visible in the graph as in
 * QEMU: children `file` (the source) and `target`. Requests pass to the
 * source; the copying itself hangs on the source node (its beforeWrite
 * hook, set by the job), so writers that reach the source by another way
 * are intercepted too — in QEMU, permissions refuse them instead.
 */
export class CopyBeforeWriteNode extends BlockNode {
  readonly driver = 'copy-before-write';

  constructor(
    name: string,
    private source: BlockNode,
    target: BlockNode,
    clusterSize: number,
  ) {
    super(name, source.readOnly, [
      { role: 'file', node: source },
      { role: 'target', node: target },
    ]);
    // QEMU lists the filter's two internal bitmaps: what may be read through it (all) and what is done (none).
    const access = new ChunkBitmap(source.size(), clusterSize);
    access.setAll();
    this.dirtyBitmaps.attach(new ChunkBitmap(source.size(), clusterSize));
    this.dirtyBitmaps.attach(access);
  }

  size(): number {
    return this.source.size();
  }
  protected override async childReplaced(role: string, node: BlockNode): Promise<void> {
    if (role === 'file') this.source = node;
  }
  blockStatus(offset: number, length: number, opts?: StatusOptions): Promise<Extent> {
    return this.source.blockStatus(offset, length, opts);
  }
  override blockStatusRuns(offset: number, length: number, opts?: StatusOptions): Promise<Extent[]> {
    return this.source.blockStatusRuns(offset, length, opts);
  }
  protected doRead(offset: number, length: number): Promise<Uint8Array> {
    return this.source.read(offset, length);
  }
  protected override doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    return this.source.readInto(buf, offset);
  }
  protected doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    return this.source.write(offset, data, flags);
  }
  protected doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    return this.source.writeZeroes(offset, length, flags);
  }
  protected doDiscard(offset: number, length: number): Promise<void> {
    return this.source.discard(offset, length);
  }
  /** cbw_co_flush flushes its child in one driver call (QEMU's bdrv_co_flush hook): none of flush()'s stages or events here. */
  override flush(): Promise<void> {
    return this.source.flush();
  }
  protected doFlush(): Promise<void> {
    return this.source.flush();
  }
  async imageInfo(): Promise<NodeImageInfo> {
    const s = await this.source.imageInfo();
    return { filename: s.filename, format: 'copy-before-write', virtualSize: this.size(), ...(s.actualSize !== undefined ? { actualSize: s.actualSize } : {}), dirtyFlag: false };
  }
  protected async doClose(): Promise<void> {}
}
