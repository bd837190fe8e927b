import { ChunkBitmap } from '../bitmap.js';
import type { Extent } from '../../image/types.js';
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE } from '../../image/perm.js';
import { CHILD_FILTERED, defaultChildPerms, type NodeChild, type PermPair } from '../child.js';
import type { NamePolicy } from '../filename.js';
import { BlockNode, type NodeImageInfo, type StatusOptions, type WriteFlags, type ZeroFlags } from '../node.js';
import { type ReopenPlan, writableAfter } from '../permissions.js';

/** Named by its source's name (cbw_refresh_filename). */
const CBW_NAMING: NamePolicy = {
  protocol: false,
  strong: [],
  exactName: (node, _options, names) => {
    const file = node.child('file');
    return file ? names.get(file)!.filename : '';
  },
};

/**
 * cbw_child_perm: the target is written and may be shared by anyone but a
 * resizer (its size was checked once); the source is passed through, and
 * once the filter has parents nobody else may write or resize it (their
 * writes would escape the copying), and a writer above needs to read it.
 */
export function cbwChildPerm(role: number, writable: boolean, hasParents: boolean, perm: number, shared: number): PermPair {
  if (!(role & CHILD_FILTERED)) return { perm: PERM_WRITE, shared: PERM_ALL & ~PERM_RESIZE };
  const p = defaultChildPerms(role, writable, perm, shared);
  if (hasParents) {
    if (perm & PERM_WRITE) p.perm |= PERM_CONSISTENT_READ;
    p.shared &= ~(PERM_WRITE | PERM_RESIZE);
  }
  return p;
}

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

  private source: BlockNode;

  /** copy-before-write has no bdrv_reopen_prepare: QEMU refuses to reopen it. */
  override get supportsReopen(): boolean {
    return false;
  }

  constructor(name: string, sourceLink: NodeChild, targetLink: NodeChild, clusterSize: number) {
    // Opened read-write whatever the source is (bdrv_cbw_append passes BDRV_O_RDWR).
    super(name, false, [sourceLink, targetLink]);
    const source = (this.source = sourceLink.node);
    // QEMU lists the filter's two internal bitmaps: what may be read through it (all) and what is done (none).
    const access = new ChunkBitmap(source.size(), clusterSize);
    access.setAll();
    this.dirtyBitmaps.attach(new ChunkBitmap(source.size(), clusterSize));
    this.dirtyBitmaps.attach(access);
  }

  size(): number {
    return this.source.size();
  }
  override async childReplaced(c: NodeChild, node: BlockNode): Promise<void> {
    if (c.name === 'file') this.source = node;
  }

  override get isFilter(): boolean {
    return true;
  }

  override get namePolicy(): NamePolicy {
    return CBW_NAMING;
  }

  override childPerm(c: NodeChild, perm: number, shared: number, plan?: ReopenPlan): PermPair {
    return cbwChildPerm(c.role, writableAfter(this, plan), this.parents.length > 0, perm, shared);
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
  protected doFlush(): Promise<void> {
    return this.source.flush();
  }
  /** QEMU's cbw_co_flush replaces the generic flush, whose blkdebug events it therefore never announces. */
  protected override debugPrimary(): BlockNode | undefined {
    return undefined;
  }
  async imageInfo(): Promise<NodeImageInfo> {
    const s = await this.source.imageInfo();
    // A filter's cluster size is its source's (bdrv_co_get_info passes to the filtered child).
    return {
      filename: s.filename,
      format: 'copy-before-write',
      virtualSize: this.size(),
      ...(s.actualSize !== undefined ? { actualSize: s.actualSize } : {}),
      ...(s.clusterSize !== undefined ? { clusterSize: s.clusterSize } : {}),
      dirtyFlag: false,
    };
  }
  protected async doClose(): Promise<void> {}
}
