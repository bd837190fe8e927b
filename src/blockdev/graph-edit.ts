import { PERM_ALL } from '../image/perm.js';
import { CHILD_COW, CHILD_FILTERED_PRIMARY, type ChildOwner, NodeChild, type PermPair } from './child.js';
import { GraphTransaction } from './graph-transaction.js';
import { BlockNode } from './node.js';
import { backingBlocker } from './op-blockers.js';
import { refreshPerms } from './permissions.js';

/**
 * The graph's link changes, each a step of a transaction with its undo and
 * each followed by the permission refresh QEMU does (block.c's
 * bdrv_attach_child, bdrv_replace_child_tran, bdrv_replace_node). Callers
 * hold the graph's lock (BlockGraph.exclusive).
 */

/** An overlay's backing link blocks most operations on the backing node while it exists (bdrv_backing_attach). */
function block(c: NodeChild): void {
  if (c.role & CHILD_COW && c.owner.nodeName !== undefined && !c.blocker) {
    c.blocker = backingBlocker(c.owner.nodeName);
    c.node.blockers.add(c.blocker);
  }
}

function unblock(c: NodeChild): void {
  if (c.blocker) c.node.blockers.remove(c.blocker);
  c.blocker = undefined;
}

/** A link gets a new child node: the owner's requests go there from now on (bdrv_replace_child_noperm). */
async function pointAt(c: NodeChild, node: BlockNode): Promise<void> {
  const old = c.node;
  const i = old.parents.indexOf(c);
  if (i >= 0) old.parents.splice(i, 1);
  unblock(c);
  c.node = node;
  node.parents.unshift(c);
  block(c);
  if (c.owner instanceof BlockNode) await c.owner.childReplaced(c, node);
  else await (c.owner as Partial<LinkFollower>).childReplaced?.(c, node);
}

/** An owner outside the graph that wants to know when its link moves (a BlockBackend telling its export). */
export interface LinkFollower {
  childReplaced(c: NodeChild, node: BlockNode): void | Promise<void>;
}

/** A new link from `owner` to `node` with the given permissions, as a step of `tran`, with no refresh yet (bdrv_attach_child_noperm). */
export function linkChild(tran: GraphTransaction, owner: ChildOwner, name: string, role: number, node: BlockNode, perms: PermPair): NodeChild {
  const c = new NodeChild(owner, name, role, node);
  c.perm = perms.perm;
  c.shared = node.forceShare ? PERM_ALL : perms.shared;
  node.parents.unshift(c);
  block(c);
  if (owner instanceof BlockNode) owner.adoptChild(c);
  tran.addUndo(() => {
    const i = node.parents.indexOf(c);
    if (i >= 0) node.parents.splice(i, 1);
    unblock(c);
    if (owner instanceof BlockNode) owner.dropChild(c);
  });
  return c;
}

/**
 * A new link from `owner` to `node` with the permissions given (for a node
 * owner: what its driver needs with no parents of its own yet, as while it
 * is being opened), then the node's subtree refreshed: a conflict or a
 * lock another process holds fails it here, before the owner uses the
 * node.
 */
export async function attachChild(tran: GraphTransaction, owner: ChildOwner, name: string, role: number, node: BlockNode, perms: PermPair): Promise<NodeChild> {
  const c = linkChild(tran, owner, name, role, node, perms);
  await refreshPerms([node], tran);
  return c;
}

/**
 * Takes a link out (bdrv_root_unref_child): the child's remaining
 * permissions are refreshed, which only loosens them; a failure there is
 * ignored, as QEMU ignores it.
 */
export async function detachChild(c: NodeChild): Promise<void> {
  const node = c.node;
  const i = node.parents.indexOf(c);
  if (i >= 0) node.parents.splice(i, 1);
  unblock(c);
  if (c.owner instanceof BlockNode) c.owner.dropChild(c);
  if (node.isClosed) return;
  await GraphTransaction.run((tran) => refreshPerms([node], tran)).catch(() => undefined);
}

/** Points a link at another node as a step of `tran` (bdrv_replace_child_tran); permissions are the caller's to refresh. */
export async function replaceChildNode(tran: GraphTransaction, c: NodeChild, node: BlockNode): Promise<void> {
  const old = c.node;
  await pointAt(c, node);
  tran.addUndo(() => pointAt(c, old));
}

/**
 * should_update_child: a link that `to` reaches through its own children
 * stays where it is, or the graph would get a loop (an overlay's backing
 * link to the node it replaces); so do a job's links (stay_at_node).
 */
function shouldUpdate(c: NodeChild, to: BlockNode): boolean {
  if (c.owner.staysAtNode) return false;
  const seen = new Set<BlockNode>([to]);
  const queue: BlockNode[] = [to];
  for (let v = queue.shift(); v; v = queue.shift()) {
    for (const c2 of v.childList()) {
      if (c2 === c) return false;
      if (!seen.has(c2.node)) {
        seen.add(c2.node);
        queue.push(c2.node);
      }
    }
  }
  return true;
}

/**
 * bdrv_replace_node: every parent of `from` uses `to` instead, but the
 * links that must stay (shouldUpdate); then both subtrees' permissions
 * are refreshed. Returns the links moved.
 */
export async function replaceNode(tran: GraphTransaction, from: BlockNode, to: BlockNode, refresh = true): Promise<NodeChild[]> {
  const moved: NodeChild[] = [];
  for (const c of [...from.parents]) {
    if (!shouldUpdate(c, to)) continue;
    await replaceChildNode(tran, c, to);
    moved.push(c);
  }
  if (refresh) await refreshPerms([to, from], tran);
  return moved;
}

/**
 * bdrv_append: `top` becomes the backing child of `overlay` (which has
 * none), and `overlay` takes `top`'s place for all its other parents; then
 * the permissions of the overlay's subtree are refreshed. Returns the
 * links moved.
 */
export async function appendOverlay(tran: GraphTransaction, overlay: BlockNode, top: BlockNode): Promise<NodeChild[]> {
  const cum = overlay.cumulativePerm();
  // A filter's backing child is the node it filters (mirror_top), not a COW layer (bdrv_set_backing_hd_drained).
  const role = overlay.isFilter ? CHILD_FILTERED_PRIMARY : CHILD_COW;
  const probe = new NodeChild(overlay, 'backing', role, top);
  linkChild(tran, overlay, 'backing', role, top, overlay.childPerm(probe, cum.perm, cum.shared));
  await overlay.backingChanged(top);
  tran.addUndo(() => overlay.backingChanged(undefined));
  const moved = await replaceNode(tran, top, overlay, false);
  await refreshPerms([overlay], tran);
  return moved;
}

/**
 * bdrv_set_backing_hd: `overlay`'s backing child becomes `node` (or none),
 * needing of it what the overlay's driver needs given the overlay's own
 * parents, then the subtrees are refreshed.
 */
export async function setBacking(tran: GraphTransaction, overlay: BlockNode, node: BlockNode | undefined): Promise<void> {
  const old = overlay.childEdge('backing');
  if (old) {
    const oldNode = old.node;
    const i = oldNode.parents.indexOf(old);
    if (i >= 0) oldNode.parents.splice(i, 1);
    unblock(old);
    overlay.dropChild(old);
    tran.addUndo(async () => {
      oldNode.parents.unshift(old);
      block(old);
      overlay.adoptChild(old);
      await overlay.backingChanged(oldNode);
    });
  }
  if (node) {
    const cum = overlay.cumulativePerm();
    const c = new NodeChild(overlay, 'backing', CHILD_COW, node);
    const want = overlay.childPerm(c, cum.perm, cum.shared);
    await attachChild(tran, overlay, 'backing', CHILD_COW, node, want);
  }
  await overlay.backingChanged(node);
  tran.addUndo(() => overlay.backingChanged(old?.node));
  await refreshPerms(old && !old.node.isClosed ? [overlay, old.node] : [overlay], tran);
}
