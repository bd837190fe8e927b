/**
 * The dirty-bitmap operations the monitor offers (block-dirty-bitmap-*),
 * with QEMU 7.2's checks and words, in shapes a transaction can use: each
 * change returns how to undo it, so an action's prepare does the change
 * and its abort calls the undo (commit has nothing left to do).
 */
import { BlockError } from '../image/errors.js';
import { BitmapCheck, type DirtyBitmap } from './dirty-bitmap.js';
import type { BlockGraph } from './graph.js';
import type { BlockNode } from './node.js';

export type Undo = () => void;

export interface BitmapAddSpec {
  node: string;
  name: string;
  granularity?: number;
  persistent?: boolean;
  disabled?: boolean;
}

/** A source of a merge: a bitmap of the target's node by name, or any node's bitmap. */
export type BitmapSource = string | { node: string; name: string };

const fail = (msg: string) => new BlockError('INVALID_ARGUMENT', msg);

/** A node whose format keeps persistent bitmaps (qcow2). */
interface BitmapStoringNode {
  whyCannotStoreBitmap(name: string, granularity: number): string | undefined;
  removeStoredBitmap(name: string): Promise<void>;
}

function bitmapStore(node: BlockNode): BitmapStoringNode | undefined {
  return 'whyCannotStoreBitmap' in node ? (node as BlockNode & BitmapStoringNode) : undefined;
}

/**
 * The granularity QEMU picks when none is given
 * (bdrv_get_default_bitmap_granularity): the cluster size clamped to
 * 4 KiB..64 KiB, or 64 KiB for a node without clusters.
 */
export async function defaultGranularity(node: BlockNode): Promise<number> {
  const cs = (await node.imageInfo()).clusterSize;
  return cs !== undefined && cs > 0 ? Math.min(65536, Math.max(4096, cs)) : 65536;
}

/** block_dirty_bitmap_lookup: the node, then the bitmap. */
export function lookupBitmap(graph: BlockGraph, node: string, name: string): { node: BlockNode; bitmap: DirtyBitmap } {
  // bdrv_lookup_bs(node, node) with its error dropped: a BlockBackend's name first (an empty one finds nothing).
  const n = graph.backends.byName(node)?.node ?? graph.get(node);
  if (!n) throw new BlockError('NOT_FOUND', `Node '${node}' not found`);
  return { node: n, bitmap: n.dirtyBitmaps.lookup(name) };
}

/** block-dirty-bitmap-add; the undo removes the new bitmap again. */
export async function addBitmap(graph: BlockGraph, spec: BitmapAddSpec): Promise<{ bitmap: DirtyBitmap; undo: Undo }> {
  if (spec.name === '') throw fail('Bitmap name cannot be empty');
  const node = graph.find(spec.node);
  let granularity = spec.granularity;
  if (granularity !== undefined) {
    if (granularity < 512 || (granularity & (granularity - 1)) !== 0) throw fail('Granularity must be power of 2 and at least 512');
  } else {
    granularity = await defaultGranularity(node);
  }
  if (spec.persistent) {
    const store = bitmapStore(node);
    if (!store) throw fail(`Can't store persistent bitmaps to ${node.nodeName}: Operation not supported`);
    // qcow2 refuses a taken name before its own checks, without their prefix.
    if (node.dirtyBitmaps.find(spec.name)) throw fail(`Bitmap already exists: ${spec.name}`);
    const why = store.whyCannotStoreBitmap(spec.name, granularity);
    if (why) throw fail(`Can't make bitmap '${spec.name}' persistent in '${node.nodeName}': ${why}`);
  }
  const bitmap = node.dirtyBitmaps.create(spec.name, granularity);
  if (spec.disabled) bitmap.disabled = true;
  bitmap.persistent = spec.persistent ?? false;
  return { bitmap, undo: () => node.dirtyBitmaps.release(bitmap) };
}

/**
 * block-dirty-bitmap-remove; the undo puts the bitmap back in its place. A
 * persistent bitmap leaves the image at once, as in QEMU; put back by an
 * undo, it is stored again when the node closes.
 */
export async function removeBitmap(graph: BlockGraph, nodeName: string, name: string): Promise<Undo> {
  const { node, bitmap } = lookupBitmap(graph, nodeName, name);
  bitmap.check(BitmapCheck.Busy | BitmapCheck.ReadOnly);
  await unstoreBitmap(node, bitmap);
  const index = node.dirtyBitmaps.indexOf(bitmap);
  node.dirtyBitmaps.release(bitmap);
  return () => node.dirtyBitmaps.reinsert(bitmap, index);
}

/** A persistent bitmap about to be removed leaves its image first (bdrv_remove_persistent_dirty_bitmap). */
export async function unstoreBitmap(node: BlockNode, bitmap: DirtyBitmap): Promise<void> {
  if (bitmap.persistent && bitmap.name !== undefined) await bitmapStore(node)?.removeStoredBitmap(bitmap.name);
}

/** block-dirty-bitmap-clear; the undo restores the bits (bdrv_restore_dirty_bitmap). */
export function clearBitmap(graph: BlockGraph, nodeName: string, name: string): Undo {
  const { bitmap } = lookupBitmap(graph, nodeName, name);
  bitmap.check(BitmapCheck.Default);
  const backup = bitmap.clear();
  return () => bitmap.restore(backup);
}

/** block-dirty-bitmap-enable/-disable; the undo sets the previous state. */
export function setBitmapEnabled(graph: BlockGraph, nodeName: string, name: string, enabled: boolean): Undo {
  const { bitmap } = lookupBitmap(graph, nodeName, name);
  bitmap.check(BitmapCheck.AllowReadOnly);
  const wasDisabled = bitmap.disabled;
  bitmap.disabled = !enabled;
  return () => {
    bitmap.disabled = wasDisabled;
  };
}

/** block-dirty-bitmap-merge: sources are looked up in order and the first missing one is reported; the undo restores the target. */
export function mergeBitmaps(graph: BlockGraph, nodeName: string, target: string, sources: readonly BitmapSource[]): Undo {
  const { node, bitmap: dst } = lookupBitmap(graph, nodeName, target);
  const srcs: DirtyBitmap[] = [];
  // QEMU merges source by source; checking each before any bits move gives the same errors and leaves the target untouched on failure.
  for (const s of sources) {
    const src = typeof s === 'string' ? node.dirtyBitmaps.lookup(s) : lookupBitmap(graph, s.node, s.name).bitmap;
    dst.checkMergeSource(src);
    srcs.push(src);
  }
  const backup = dst.merge(srcs);
  return () => dst.restore(backup);
}
