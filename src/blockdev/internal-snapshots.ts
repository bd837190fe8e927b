/**
 * Internal snapshots of a node (block/snapshot.c): the node that stores
 * them, found down a filter's or raw's primary child as
 * bdrv_snapshot_fallback finds it, and creating and deleting one while the
 * node serves others. Guest writes wait meanwhile (QEMU drains the node):
 * the snapshot copies the tables as they are on disk and then counts
 * every cluster they name once more, which a write allocating in between
 * would invalidate.
 */
import { CHILD_DATA, CHILD_FILTERED, CHILD_METADATA, CHILD_PRIMARY } from '../image/child-perms.js';
import { createSnapshot, deleteSnapshot, gotoSnapshot, type NewSnapshot, type Qcow2Snapshot } from '../image/qcow2/snapshots.js';
import { Qcow2Node } from './drivers/qcow2.js';
import type { BlockNode } from './node.js';

/** bdrv_snapshot_fallback: the primary child, when no other child holds data (a raw or filter node above the image). */
function snapshotFallback(bs: BlockNode): BlockNode | undefined {
  const links = bs.childList();
  const primary = links.find((c) => c.role & CHILD_PRIMARY);
  if (!primary || links.some((c) => c !== primary && c.role & (CHILD_DATA | CHILD_METADATA | CHILD_FILTERED))) return undefined;
  return primary.node;
}

/** The node that stores a node's snapshots, if any. */
export function snapshotNode(bs: BlockNode): Qcow2Node | undefined {
  if (bs instanceof Qcow2Node) return bs;
  const fallback = snapshotFallback(bs);
  return fallback && snapshotNode(fallback);
}

/**
 * bdrv_can_snapshot (with Debian 7.2's fix): inserted and writable — an
 * inactive node (an incoming migration's) is not — at every level down to
 * the node that stores the snapshots.
 */
export function canSnapshot(bs: BlockNode): boolean {
  if (bs.ejected || bs.readOnly || bs.inactive) return false;
  if (bs instanceof Qcow2Node) return true;
  const fallback = snapshotFallback(bs);
  return fallback !== undefined && canSnapshot(fallback);
}

/** Runs `fn` with every write to the node's image held back (the whole range locked, as a resize locks it). */
async function quiesced<T>(node: Qcow2Node, fn: () => Promise<T>): Promise<T> {
  const release = await node.image.ranges.acquire(0, Infinity);
  try {
    return await fn();
  } finally {
    release();
  }
}

/** bdrv_snapshot_create on a node serving others. */
export function createInternalSnapshot(node: Qcow2Node, info: NewSnapshot): Promise<Qcow2Snapshot> {
  return quiesced(node, () => createSnapshot(node.image, info));
}

/** bdrv_snapshot_goto on a node serving others (load_snapshot drains them all first). */
export function gotoInternalSnapshot(node: Qcow2Node, name: string): Promise<void> {
  return quiesced(node, () => gotoSnapshot(node.image, name, { rangesHeld: true }));
}

/** bdrv_snapshot_delete on a node serving others. */
export function deleteInternalSnapshot(node: Qcow2Node, id: string, name: string): Promise<void> {
  return quiesced(node, () => deleteSnapshot(node.image, id, name));
}
