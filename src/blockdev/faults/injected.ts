import type { BlockNode } from '../node.js';

/** Whether `node` or a node below it injects faults (BlockNode.injectsFaults): a job then keeps to QEMU's order of requests. */
export function injectsFaultsBelow(node: BlockNode, seen = new Set<BlockNode>()): boolean {
  if (seen.has(node)) return false;
  seen.add(node);
  return node.injectsFaults || node.children().some((c) => injectsFaultsBelow(c, seen));
}
