import type { NodeChild } from './child.js';
import type { BlockNode } from './node.js';

/**
 * Walking a backing chain as QEMU does (block.c bdrv_filter_bs,
 * bdrv_cow_bs, bdrv_skip_filters, bdrv_filter_or_cow_bs): filters pass to
 * their filtered child, format nodes to their backing child.
 */

/**
 * The link a filter passes requests through: `file` or `image` for most,
 * `backing` for a filter whose filtered child is its backing
 * (commit_top's filtered_child_is_backing); none for other nodes.
 */
export function filteredLink(n: BlockNode): NodeChild | undefined {
  if (!n.isFilter) return undefined;
  return n.childEdge('file') ?? n.childEdge('image') ?? n.childEdge('backing');
}

/** The child a filter passes requests to, or undefined for other nodes. */
export function filteredChild(n: BlockNode): BlockNode | undefined {
  return filteredLink(n)?.node;
}

/** The backing link of a node that can have one; a filter's `backing` is its filtered child, not a COW child (bdrv_cow_child). */
export function cowLink(n: BlockNode): NodeChild | undefined {
  return n.isFilter ? undefined : n.childEdge('backing');
}

/** The backing child of a node that can have one. */
export function cowChild(n: BlockNode): BlockNode | undefined {
  return cowLink(n)?.node;
}

/** The first node below `n` (or `n`) that is not a filter. */
export function skipFilters(n: BlockNode): BlockNode {
  for (let f = filteredChild(n); f; f = filteredChild(n)) n = f;
  return n;
}

/** bdrv_skip_implicit_filters: below the filters a job put in without a name. */
export function skipImplicitFilters(n: BlockNode): BlockNode {
  for (let f = filteredChild(n); n.implicit && f; f = filteredChild(n)) n = f;
  return n;
}

/** The link to the next layer down: a filter's filtered link, else the backing link (bdrv_filter_or_cow_child). */
export function filterOrCowLink(n: BlockNode): NodeChild | undefined {
  return filteredLink(n) ?? cowLink(n);
}

/** The next layer down: a filter's filtered child, else the backing child. */
export function filterOrCowChild(n: BlockNode): BlockNode | undefined {
  return filterOrCowLink(n)?.node;
}

/** The next image with data of its own below `n`'s first non-filter node (bdrv_backing_chain_next). */
export function backingChainNext(n: BlockNode): BlockNode | undefined {
  const below = cowChild(skipFilters(n));
  return below && skipFilters(below);
}

/** Whether `node` is `top` or lies below it in its chain (bdrv_chain_contains). */
export function chainContains(top: BlockNode, node: BlockNode): boolean {
  for (let n: BlockNode | undefined = top; n; n = filterOrCowChild(n)) if (n === node) return true;
  return false;
}

/**
 * The first non-filter node above `bs` in `active`'s chain, filters
 * skipped on both sides (bdrv_find_overlay); with `bs` undefined, the
 * bottommost image (bdrv_find_base). Undefined when `bs` is not below.
 */
export function findOverlay(active: BlockNode, bs: BlockNode | undefined): BlockNode | undefined {
  const target = bs && skipFilters(bs);
  for (let n: BlockNode | undefined = skipFilters(active); n; ) {
    const next = backingChainNext(n);
    if (next === target) return n;
    n = next;
  }
  return undefined;
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
