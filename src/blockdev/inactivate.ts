/**
 * Handing images over between two processes, as a migration does
 * (block.c's bdrv_inactivate_all and bdrv_activate_all): the source lets
 * go of its images once the destination is to own them, the destination
 * takes them when it starts running.
 */
import { GraphTransaction } from './graph-transaction.js';
import type { BlockGraph } from './graph.js';
import type { BlockNode } from './node.js';
import { refreshPerms, topologicalOrder } from './permissions.js';

function allNodes(graph: BlockGraph): BlockNode[] {
  return topologicalOrder(graph.list());
}

/**
 * bdrv_inactivate_all: the machine's BlockBackends give up their
 * permissions; each node, parents first, hands what it holds to its
 * children and turns inactive, and its children's permissions shrink to
 * what an inactive parent needs (a file keeps its consistent-read lock,
 * drops its write locks).
 */
export async function inactivateAll(graph: BlockGraph): Promise<void> {
  for (const b of graph.backends.list()) await b.blk.inactivate();
  for (const node of allNodes(graph)) {
    if (node.inactive) continue;
    await node.inactivate();
    node.inactive = true;
    // Its children, still active, give up what it no longer needs of them (their write locks go).
    await GraphTransaction.run((tran) => refreshPerms([node], tran));
  }
}

/**
 * bdrv_activate_all: children first, each inactive node turns active
 * (taking the permissions its parents need, its driver reading its image
 * afresh), then the BlockBackends take what their devices asked for. A
 * lock another process still holds fails it with the lock's message.
 */
export async function activateAll(graph: BlockGraph): Promise<void> {
  graph.openInactive = false;
  const nodes = allNodes(graph).reverse();
  for (const node of nodes) {
    if (!node.inactive) continue;
    node.inactive = false;
    try {
      await GraphTransaction.run((tran) => refreshPerms([node], tran));
      await node.activate();
    } catch (err) {
      node.inactive = true;
      throw err;
    }
  }
  for (const b of graph.backends.list()) await b.blk.activate();
}

/**
 * bdrv_activate on one node: its subtree, children first, then the
 * BlockBackends on it (an export of an incoming machine's image, made for
 * storage migration before the switch-over). Failures are ignored, as
 * blk_exp_add ignores them: the export's own permissions then refuse.
 */
export async function activateNode(graph: BlockGraph, node: BlockNode): Promise<void> {
  for (const n of topologicalOrder([node]).reverse()) {
    if (!n.inactive) continue;
    n.inactive = false;
    try {
      await GraphTransaction.run((tran) => refreshPerms([n], tran));
      await n.activate();
    } catch {
      n.inactive = true;
      return;
    }
  }
  for (const b of graph.backends.list()) if (b.node === node) await b.blk.activate(true).catch(() => undefined);
}

/** Whether any node is inactive (a source after its migration, a destination before). */
export function anyInactive(graph: BlockGraph): boolean {
  return graph.list().some((n) => n.inactive);
}
