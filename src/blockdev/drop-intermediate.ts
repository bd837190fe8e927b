import { strerror } from '../image/errno.js';
import { BlockError } from '../image/errors.js';
import { chainContains, skipImplicitFilters } from './chain.js';
import { CHILD_COW } from './child.js';
import { inheritsFromRecursive, replaceNode, setInheritsFrom } from './graph-edit.js';
import { GraphTransaction } from './graph-transaction.js';
import { BlockNode } from './node.js';
import { type ReopenContext, whileWritable } from './reopen.js';

const failed = (errno: string) => new BlockError('IO', strerror(errno), { errno });

/**
 * bdrv_drop_intermediate(top, base): the layers from `top` down to just
 * above `base` leave the chain. Every parent of `top` uses `base` instead
 * (a link that may not move refuses it all), and each overlay among them
 * names base in its image: `backingFile`, or base's own name, with base's
 * format — reopened read-write for that if it is read-only. A base that
 * inherited its options from `top` (through the dropped layers) inherits
 * from what `top` inherited from, so a reopen of the overlay with
 * `backing.*` options still reaches it (iotest 161). Fails as QEMU
 * does, with only an errno (EIO when the graph could not change); a
 * failed name update leaves the graph changed.
 */
export async function dropIntermediate(
  top: BlockNode,
  base: BlockNode,
  backingFile: string | undefined,
  nameOf: (n: BlockNode) => string,
  reopen: ReopenContext,
): Promise<void> {
  if (!chainContains(top, base)) throw failed('EIO');
  const name = backingFile ?? nameOf(base);
  // A job's filter on top inherits from nothing: the layer below it is what base may inherit through.
  const explicitTop = skipImplicitFilters(top);
  const updateInherits = inheritsFromRecursive(base, explicitTop);
  let moved;
  try {
    moved = await GraphTransaction.run(async (tran) => {
      const links = await replaceNode(tran, top, base, { autoSkip: false });
      if (updateInherits) setInheritsFrom(tran, base, explicitTop.inheritsFrom);
      return links;
    });
  } catch {
    throw failed('EIO');
  }
  for (const c of moved) {
    const overlay = c.owner;
    if (!(c.role & CHILD_COW) || !(overlay instanceof BlockNode)) continue;
    try {
      await whileWritable(reopen, overlay, () => overlay.changeBackingFile(name, base.driver));
    } catch (err) {
      throw failed(err instanceof BlockError && err.errno ? err.errno : 'EIO');
    }
  }
}
