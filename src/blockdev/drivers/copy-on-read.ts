import { BlockError } from '../../image/errors.js';
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE, PERM_WRITE_UNCHANGED } from '../../image/perm.js';
import { isAllocated, isAllocatedAbove } from '../allocation.js';
import { backingChainNext } from '../chain.js';
import type { NodeChild, PermPair } from '../child.js';
import { freezeChain, unfreezeChain } from '../freeze.js';
import type { BlockNode } from '../node.js';
import { PassThroughFilter } from './filter-node.js';

/** What passes through to the child as the parents ask it; the rest the filter shares whatever they say. */
const PASSTHROUGH = PERM_CONSISTENT_READ | PERM_WRITE | PERM_RESIZE;

/**
 * cor_child_perm: what the parents take and share passes through, and the
 * filter itself always writes unchanged data (what it copies up), so its
 * child must be writable.
 */
export function corChildPerm(perm: number, shared: number, inactive = false): PermPair {
  // An inactive node's child cannot give write permissions, so none is asked for (cor_child_perm).
  return { perm: (perm & PASSTHROUGH) | (inactive ? 0 : PERM_WRITE_UNCHANGED), shared: (shared & PASSTHROUGH) | (PERM_ALL & ~PASSTHROUGH) };
}

/**
 * The `copy-on-read` filter (block/copy-on-read.c): reads through it
 * store what they read from the backing chain in the node below it
 * (its `file`), so the data stays there. With `bottom`, only data of the
 * layers down to that node (inclusive) is copied, and the chain from the
 * filter down to it is frozen while the filter exists. A stream job puts
 * one above the node it fills and reads everything through it.
 */
export class CopyOnReadNode extends PassThroughFilter {
  readonly driver = 'copy-on-read';
  private chainFrozen = false;

  private constructor(
    name: string,
    fileLink: NodeChild,
    readOnly: boolean,
    private readonly bottom: BlockNode | undefined,
  ) {
    super(name, readOnly, [fileLink]);
  }

  /**
   * cor_open after the file child is linked: the bottom node looked up and
   * checked in QEMU's order and words, then the chain down to it frozen.
   */
  static open(name: string, fileLink: NodeChild, readOnly: boolean, bottomName: string | undefined, find: (name: string) => BlockNode | undefined): CopyOnReadNode {
    let bottom: BlockNode | undefined;
    if (bottomName !== undefined) {
      bottom = find(bottomName);
      if (!bottom) throw new BlockError('NOT_FOUND', `Bottom node '${bottomName}' not found`, { errno: 'EINVAL' });
      if (bottom.isFilter) throw new BlockError('INVALID_ARGUMENT', `Bottom node '${bottomName}' is a filter`, { errno: 'EINVAL' });
    }
    const node = new CopyOnReadNode(name, fileLink, readOnly, bottom);
    if (bottom) {
      freezeChain(node, bottom);
      node.chainFrozen = true;
    }
    return node;
  }

  /** The frozen chain is let go (before the filter leaves the graph: bdrv_cor_filter_drop). */
  releaseChain(): void {
    if (!this.chainFrozen) return;
    this.chainFrozen = false;
    unfreezeChain(this, this.bottom);
  }

  protected get filtered(): BlockNode {
    return this.child('file')!;
  }
  override childPerm(_c: NodeChild, perm: number, shared: number): PermPair {
    return corChildPerm(perm, shared, this.inactive);
  }
  /** QEMU's copy-on-read has no flush of its own: the generic one announces its blkdebug events on the file. */
  protected override debugPrimary(): BlockNode | undefined {
    return this.child('file');
  }

  /**
   * The runs of [offset, offset+length) that must be copied up
   * (cor_co_preadv_part): all of it without a bottom; with one, what the
   * file does not hold but a layer down to the bottom does. Stops early
   * where the backing chain ends.
   */
  private async copyRuns(offset: number, length: number): Promise<Array<[number, number]>> {
    if (!this.bottom) return [[offset, length]];
    const runs: Array<[number, number]> = [];
    for (let at = offset, end = offset + length; at < end; ) {
      const own = await isAllocated(this.filtered, at, end - at);
      let n = own.length;
      if (!own.allocated) {
        const below = backingChainNext(this.filtered);
        const above = below ? await isAllocatedAbove(below, this.bottom, true, at, n) : { allocated: false, length: n };
        if (above.allocated) runs.push([at, above.length]);
        n = above.length;
      }
      if (n <= 0) break;
      at += n;
    }
    return runs;
  }

  /** A prefetch (a stream job's read): the runs to copy are copied up, nothing is returned. */
  override async prefetch(offset: number, length: number): Promise<void> {
    for (const [at, n] of await this.copyRuns(offset, length)) await this.filtered.prefetch(at, n);
  }

  protected override async doRead(offset: number, length: number): Promise<Uint8Array> {
    await this.prefetch(offset, length);
    return this.filtered.read(offset, length);
  }
  protected override async doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    await this.prefetch(offset, buf.length);
    await this.filtered.readInto(buf, offset);
  }
  protected override async doClose(): Promise<void> {
    this.releaseChain();
  }
}
