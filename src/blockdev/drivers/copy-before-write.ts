import { ChunkBitmap } from '../bitmap.js';
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE } from '../../image/perm.js';
import { CHILD_FILTERED, defaultChildPerms, type NodeChild, type PermPair } from '../child.js';
import type { NamePolicy } from '../filename.js';
import type { BlockNode } from '../node.js';
import { PassThroughFilter } from './filter-node.js';
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
export class CopyBeforeWriteNode extends PassThroughFilter {
  readonly driver = 'copy-before-write';

  private source: BlockNode;

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

  protected get filtered(): BlockNode {
    return this.source;
  }
  override async childReplaced(c: NodeChild, node: BlockNode): Promise<void> {
    if (c.name === 'file') this.source = node;
  }

  override get namePolicy(): NamePolicy {
    return CBW_NAMING;
  }

  override childPerm(c: NodeChild, perm: number, shared: number, plan?: ReopenPlan): PermPair {
    return cbwChildPerm(c.role, writableAfter(this, plan), this.parents.length > 0, perm, shared);
  }
}
