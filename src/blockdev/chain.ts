import type { BlockNode } from './node.js';

/**
 * Walking a backing chain as QEMU does (block.c bdrv_filter_bs,
 * bdrv_cow_bs, bdrv_skip_filters, bdrv_filter_or_cow_bs): filters pass to
 * their filtered child, format nodes to their backing child.
 */

/** The child a filter passes requests to (blkdebug's image, copy-before-write's file), or undefined for other nodes. */
export function filteredChild(n: BlockNode): BlockNode | undefined {
  if (!n.isFilter) return undefined;
  return n.child('file') ?? n.child('image');
}

/** The backing child of a node that can have one. */
export function cowChild(n: BlockNode): BlockNode | undefined {
  return n.child('backing');
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
