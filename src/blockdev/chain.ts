import type { BlockNode } from './node.js';

/**
 * Walking a backing chain as QEMU does (block.c bdrv_filter_bs,
 * bdrv_cow_bs, bdrv_skip_filters, bdrv_filter_or_cow_bs): filters pass to
 * their filtered child, format nodes to their backing child.
 */

/**
 * The child a filter passes requests to (blkdebug's image,
 * copy-before-write's file, mirror_top's backing), or undefined for other
 * nodes.
 */
export function filteredChild(n: BlockNode): BlockNode | undefined {
  if (!n.isFilter) return undefined;
  return n.child('file') ?? n.child('image') ?? n.child('backing');
}

/** The backing child of a node that can have one; a filter's backing child is what it filters, not a COW layer (bdrv_cow_bs). */
export function cowChild(n: BlockNode): BlockNode | undefined {
  return n.isFilter ? undefined : n.child('backing');
}

/** The first node below `n` (or `n`) that is not a filter. */
export function skipFilters(n: BlockNode): BlockNode {
  for (let f = filteredChild(n); f; f = filteredChild(n)) n = f;
  return n;
}

/** The next layer down: a filter's filtered child, else the backing child. */
export function filterOrCowChild(n: BlockNode): BlockNode | undefined {
  return filteredChild(n) ?? cowChild(n);
}

/** Whether `node` is `top` or lies below it in its chain (bdrv_chain_contains). */
export function chainContains(top: BlockNode, node: BlockNode): boolean {
  for (let n: BlockNode | undefined = top; n; n = filterOrCowChild(n)) if (n === node) return true;
  return false;
}

/**
 * bdrv_recurse_can_replace: whether `to` can take `from`'s place without
 * the data its parents see changing abruptly — it is `from` or a node
 * below it through filters only.
 */
export function canReplace(from: BlockNode, to: BlockNode): boolean {
  for (let n: BlockNode | undefined = from; n; n = filteredChild(n)) if (n === to) return true;
  return false;
}
