import { BlockError } from '../image/errors.js';
import { filterOrCowLink } from './chain.js';
import type { NodeChild } from './child.js';
import type { BlockNode } from './node.js';

/**
 * Frozen backing chains (block.c bdrv_freeze_backing_chain and friends):
 * a job that will rewrite a chain at its end — stream, commit, the
 * copy-on-read filter with a bottom — freezes the filter and COW links
 * from its top down to its base, and nothing may re-point them meanwhile
 * (graph-edit.ts refuses). `base` must lie below `top`, or be undefined
 * for the whole chain.
 */

/** The filter or COW links from `top` down to (not below) `base`, in order. */
function links(top: BlockNode, base: BlockNode | undefined): NodeChild[] {
  const out: NodeChild[] = [];
  for (let n: BlockNode | undefined = top; n && n !== base; ) {
    const c = filterOrCowLink(n);
    if (c) out.push(c);
    n = c?.node;
  }
  return out;
}

/** bdrv_is_backing_chain_frozen: the first frozen link between the two, as QEMU words it, or undefined. */
export function frozenLinkError(top: BlockNode, base: BlockNode | undefined): BlockError | undefined {
  const c = links(top, base).find((l) => l.frozen);
  if (!c) return undefined;
  const owner = c.owner as BlockNode;
  return new BlockError('PERMISSION', `Cannot change '${c.name}' link from '${owner.nodeName}' to '${c.node.nodeName}'`, { errno: 'EPERM' });
}

/** bdrv_freeze_backing_chain: all the links or none; a node that must stay movable (commit_top) refuses. */
export function freezeChain(top: BlockNode, base: BlockNode | undefined): void {
  const frozen = frozenLinkError(top, base);
  if (frozen) throw frozen;
  const all = links(top, base);
  const stuck = all.find((c) => c.node.neverFreeze);
  if (stuck) throw new BlockError('PERMISSION', `Cannot freeze '${stuck.name}' link to '${stuck.node.nodeName}'`, { errno: 'EPERM' });
  for (const c of all) c.frozen = true;
}

/** bdrv_unfreeze_backing_chain: the caller froze exactly these links. */
export function unfreezeChain(top: BlockNode, base: BlockNode | undefined): void {
  for (const c of links(top, base)) c.frozen = false;
}
