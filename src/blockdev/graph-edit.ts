import { PERM_ALL } from '../image/perm.js';
import { BlockError } from '../image/errors.js';
import { filterOrCowLink } from './chain.js';
import { CHILD_COW, CHILD_FILTERED_PRIMARY, CHILD_PRIMARY, type ChildOwner, NodeChild, type PermPair } from './child.js';
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
  // bdrv_attach_child_noperm: a node may not end up below itself (blockdev-snapshot of a node onto its own backing chain).
  if (owner instanceof BlockNode && reaches(node, owner)) {
    throw new BlockError('INVALID_ARGUMENT', `Making '${node.nodeName}' a ${name} child of '${owner.nodeName}' would create a cycle`);
  }
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

/** bdrv_recurse_has_child: whether `target` is `node` or anywhere below it. */
export function reaches(node: BlockNode, target: BlockNode): boolean {
  return node === target || node.childList().some((c) => reaches(c.node, target));
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

export interface ReplaceOptions {
  /** Refresh the permissions of both subtrees (default); off when the caller refreshes a larger set itself. */
  refresh?: boolean;
  /**
   * Leave the links that must stay where they are (default); off, such a
   * link refuses the whole replacement (bdrv_replace_node_common's
   * auto_skip, off for bdrv_drop_intermediate).
   */
  autoSkip?: boolean;
}

/**
 * bdrv_replace_node: every parent of `from` uses `to` instead, but the
 * links that must stay (shouldUpdate); a frozen link refuses, as QEMU
 * words it. Then both subtrees' permissions are refreshed. Returns the
 * links moved.
 */
export async function replaceNode(tran: GraphTransaction, from: BlockNode, to: BlockNode, opts: ReplaceOptions = {}): Promise<NodeChild[]> {
  const moved: NodeChild[] = [];
  for (const c of [...from.parents]) {
    if (!shouldUpdate(c, to)) {
      if (opts.autoSkip ?? true) continue;
      throw new BlockError('INVALID_ARGUMENT', `Should not change '${c.name}' link to '${from.nodeName}'`, { errno: 'EINVAL' });
    }
    if (c.frozen) throw new BlockError('PERMISSION', `Cannot change '${c.name}' link to '${from.nodeName}'`, { errno: 'EPERM' });
    await replaceChildNode(tran, c, to);
    moved.push(c);
  }
  if (opts.refresh ?? true) await refreshPerms([to, from], tran);
  return moved;
}

/**
 * bdrv_drop_filter: the filter's parents use the node below it instead,
 * and the filter lets go of that node (detach_subchain), so nothing of
 * it stays in the chain.
 */
export async function dropFilter(tran: GraphTransaction, filter: BlockNode): Promise<NodeChild[]> {
  const below = filterOrCowLink(filter);
  if (!below) return [];
  const to = below.node;
  const moved = await replaceNode(tran, filter, to, { refresh: false });
  removeLink(tran, below);
  await refreshPerms([to, filter], tran);
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
  const moved = await replaceNode(tran, top, overlay, { refresh: false });
  await refreshPerms([overlay], tran);
  return moved;
}

/** Takes a link out of the graph as a step of `tran` (bdrv_remove_child); its node stays open, the caller's to drop once unused. */
function removeLink(tran: GraphTransaction, c: NodeChild): void {
  const owner = c.owner as BlockNode;
  const node = c.node;
  const inParents = node.parents.indexOf(c);
  const inChildren = owner.childList().indexOf(c);
  if (inParents >= 0) node.parents.splice(inParents, 1);
  unblock(c);
  owner.dropChild(c);
  tran.addUndo(() => {
    node.parents.splice(Math.max(inParents, 0), 0, c);
    block(c);
    owner.adoptChild(c, Math.max(inChildren, 0));
  });
}

/** Sets bs->inherits_from as a step of `tran`. */
export function setInheritsFrom(tran: GraphTransaction, node: BlockNode, parent: BlockNode | undefined): void {
  const old = node.inheritsFrom;
  node.inheritsFrom = parent;
  tran.addUndo(() => {
    node.inheritsFrom = old;
  });
}

/**
 * bdrv_unset_inherits_from: nodes below `c` that inherit from `root` stop
 * doing so once no other link of `root` reaches them directly.
 */
function unsetInheritsFrom(tran: GraphTransaction, root: BlockNode, c: NodeChild): void {
  if (c.node.inheritsFrom === root && !root.childList().some((o) => o !== c && o.node === c.node)) setInheritsFrom(tran, c.node, undefined);
  for (const below of c.node.childList()) unsetInheritsFrom(tran, root, below);
}

/** bdrv_inherits_from_recursive: whether `parent` is on `node`'s chain of inherits_from. */
export function inheritsFromRecursive(node: BlockNode, parent: BlockNode): boolean {
  let n: BlockNode | undefined = node;
  while (n && n !== parent) n = n.inheritsFrom;
  return n !== undefined;
}

/** A node's file link (bs->file): its primary child, whatever its name, unless that is its backing link (a filter like mirror_top filters its backing child). */
export function fileLink(node: BlockNode): NodeChild | undefined {
  return node.childList().find((c) => c.role & CHILD_PRIMARY && !(c.role & CHILD_COW) && c.name !== 'backing');
}

/**
 * bdrv_set_file_or_backing_noperm: `parent`'s backing link (or file link)
 * goes to `node`, or (backing only) to nothing, as a step of `tran`: the
 * old link is taken out and a new one made, with the role QEMU gives it
 * (a filter's is its filtered child, a backing link copy-on-write, a file
 * link keeps its role); a node that inherited from `parent` through the
 * new child now inherits from it directly. The driver follows the new
 * child; permissions are the caller's to refresh.
 */
export async function setFileOrBackingNoPerm(tran: GraphTransaction, parent: BlockNode, node: BlockNode | undefined, isBacking: boolean): Promise<void> {
  const old = isBacking ? parent.childEdge('backing') : fileLink(parent);
  if (old?.frozen) {
    throw new BlockError('PERMISSION', `Cannot change frozen '${old.name}' link from '${parent.nodeName}' to '${old.node.nodeName}'`, { errno: 'EPERM' });
  }
  if (isBacking && !parent.isFilter && !parent.supportsBacking) {
    throw new BlockError('INVALID_ARGUMENT', `Driver '${parent.driver}' of node '${parent.nodeName}' does not support backing files`);
  }
  if (!parent.isFilter && !isBacking && !old) throw new BlockError('INVALID_ARGUMENT', 'Cannot set file child to format node without file child');
  const role = parent.isFilter ? CHILD_FILTERED_PRIMARY : isBacking ? CHILD_COW : old!.role;
  const name = isBacking ? 'backing' : 'file';
  const updateInherits = node !== undefined && inheritsFromRecursive(node, parent);
  if (old) {
    unsetInheritsFrom(tran, parent, old);
    removeLink(tran, old);
  }
  if (node) {
    const cum = parent.cumulativePerm();
    const link = linkChild(tran, parent, name, role, node, parent.childPerm(new NodeChild(parent, name, role, node), cum.perm, cum.shared));
    if (updateInherits) setInheritsFrom(tran, node, parent);
    if (!isBacking) {
      await parent.childReplaced(link, node);
      if (old) tran.addUndo(() => parent.childReplaced(old, old.node));
    }
  }
  if (isBacking) {
    await parent.backingChanged(node);
    tran.addUndo(() => parent.backingChanged(old?.node));
  }
}

/**
 * bdrv_set_backing_hd: `overlay`'s backing child becomes `node` (or none),
 * then the overlay's subtree and the old backing node's are refreshed.
 */
export async function setBacking(tran: GraphTransaction, overlay: BlockNode, node: BlockNode | undefined): Promise<void> {
  const old = overlay.childEdge('backing');
  await setFileOrBackingNoPerm(tran, overlay, node, true);
  await refreshPerms(old && !old.node.isClosed ? [overlay, old.node] : [overlay], tran);
}
