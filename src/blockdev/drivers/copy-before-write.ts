import { PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE } from '../../image/perm.js';
import type { Extent } from '../../image/types.js';
import { CHILD_FILTERED, defaultChildPerms, type NodeChild, type PermPair } from '../child.js';
import { FILE_NAMING, type NamePolicy } from '../filename.js';
import type { BlockNode, WriteFlags, ZeroFlags } from '../node.js';
import type { SnapshotApi } from '../snapshot-api.js';
import { PassThroughFilter } from './filter-node.js';
import type { CbwState } from './cbw-state.js';
import { type ReopenPlan, writableAfter } from '../permissions.js';

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
 * The `copy-before-write` filter (block/copy-before-write.c): children
 * `file` (the source) and `target`; requests pass to the source, and
 * `state` keeps what was preserved and offers the snapshot-access API
 * over it. Added by the user (blockdev-add), the node copies itself with
 * the state before every write, zero write and discard that comes through
 * it (`copies`). Put in by a backup job, whose block-copy it shares, it
 * leaves the copying to the job's hook on the source node, so writers
 * that reach the source another way are intercepted too (in QEMU,
 * permissions refuse them instead).
 */
export class CopyBeforeWriteNode extends PassThroughFilter implements SnapshotApi {
  readonly driver = 'copy-before-write';

  private source: BlockNode;
  private readonly state: CbwState;
  private readonly copies: boolean;

  constructor(name: string, sourceLink: NodeChild, targetLink: NodeChild, how: { state: CbwState; copies: boolean }, readOnly = false) {
    // A backup's is opened read-write whatever the source is (bdrv_cbw_append passes BDRV_O_RDWR).
    super(name, readOnly, [sourceLink, targetLink]);
    this.source = sourceLink.node;
    this.state = how.state;
    this.copies = how.copies;
    // QEMU lists the filter's two internal bitmaps, newest first: what may be read through it, and what was copied.
    this.dirtyBitmaps.attach(this.state.done);
    this.dirtyBitmaps.attach(this.state.access);
  }

  /** What the node preserved: a backup job copies with its block-copy. */
  get cbwState(): CbwState {
    return this.state;
  }

  protected get filtered(): BlockNode {
    return this.source;
  }
  override async childReplaced(c: NodeChild, node: BlockNode): Promise<void> {
    if (c.name === 'file') this.source = node;
    // block-copy holds the links themselves in QEMU, so it follows them.
    if (c.name === 'file') this.state.bcs.source = node;
    if (c.name === 'target') this.state.bcs.target = node;
  }

  override get namePolicy(): NamePolicy {
    return FILE_NAMING;
  }

  override childPerm(c: NodeChild, perm: number, shared: number, plan?: ReopenPlan): PermPair {
    return cbwChildPerm(c.role, writableAfter(this, plan), this.parents.length > 0, perm, shared);
  }

  protected override async doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    if (this.copies) await this.state.copyBeforeWrite(offset, data.length);
    return super.doWrite(offset, data, flags);
  }
  protected override async doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    if (this.copies) await this.state.copyBeforeWrite(offset, length);
    return super.doWriteZeroes(offset, length, flags);
  }
  protected override async doDiscard(offset: number, length: number): Promise<void> {
    if (this.copies) await this.state.copyBeforeWrite(offset, length);
    return super.doDiscard(offset, length);
  }

  snapshotReadInto(buf: Uint8Array, offset: number): Promise<void> {
    return this.state.readInto(buf, offset);
  }
  snapshotBlockStatus(offset: number, length: number): Promise<Extent> {
    return this.state.blockStatus(offset, length);
  }
  snapshotDiscard(offset: number, length: number): Promise<void> {
    return this.state.discard(offset, length);
  }

  protected override async doClose(): Promise<void> {
    await this.state.close();
  }
}
