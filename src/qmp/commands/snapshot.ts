import { unlink } from 'node:fs/promises';
import type { NodeChild } from '../../blockdev/child.js';
import { appendOverlay, setBacking } from '../../blockdev/graph-edit.js';
import { GraphTransaction } from '../../blockdev/graph-transaction.js';
import type { BlockNode } from '../../blockdev/node.js';
import { reopenSetReadOnly } from '../../blockdev/reopen.js';
import { reopenContext } from './reopen.js';
import { canSnapshot } from '../../blockdev/internal-snapshots.js';
import { PERM_CONSISTENT_READ } from '../../image/perm.js';
import { openBlockdev } from '../../blockdev/open.js';
import type { QmpContext } from '../context.js';
import { QmpError } from '../error.js';
import { rootNode } from './backing.js';
import { imageFileOptions, prepareImageFile } from './new-image.js';
import type { BlockdevSnapshot, BlockdevSnapshotInternal, BlockdevSnapshotSync } from '../schema/block-core/snapshot-args.js';
import type { Infer } from '../schema/types.js';

const fail = (desc: string) => new QmpError('GenericError', desc);

/** An external snapshot set up by prepare: the overlay node on top of the old one. */
export interface PreparedSnapshot {
  old: BlockNode;
  overlay: BlockNode;
  createdFile: string | undefined;
  /** blockdev-snapshot: the overlay existed before, only its backing link is new. */
  attached?: boolean;
  /** The links of the old node's parents, which went onto the overlay (abort moves them back). */
  moved: NodeChild[];
}

/**
 * blockdev-snapshot-sync's prepare (blockdev.c external_snapshot_prepare),
 * checks in QEMU's order and words: the node, the overlay's name, then the
 * overlay image (created with the old node's file as backing file unless
 * mode=existing) opened on top of the old node. The old node's parents
 * move to the overlay (bdrv_append), so they write into it from now on.
 */
export async function prepareSnapshotSync(ctx: QmpContext, d: Infer<typeof BlockdevSnapshotSync>): Promise<PreparedSnapshot> {
  // bdrv_lookup_bs(device, node-name): `device` names a BlockBackend (none in the storage daemon).
  const old = ctx.graph.lookup(d.device, d['node-name']);
  ctx.jobs.drainNode(old);
  old.blockers.check(ctx.graph.backends.deviceOrNodeName(old), 'external-snapshot');
  const snapshotName = d['snapshot-node-name'];
  if (d['node-name'] !== undefined && snapshotName === undefined) throw fail('New overlay node-name missing');
  if (snapshotName !== undefined && ctx.graph.get(snapshotName)) throw fail('New overlay node-name already in use');
  if (!old.readOnly) await old.flush();
  const format = d.format ?? 'qcow2';
  const file = d['snapshot-file'];
  // The old node named as QEMU names it (a json: name when its options make it more than its file).
  const { createdFile } = await prepareImageFile(file, d.mode ?? 'absolute-paths', format, old.size(), old, ctx.printf);
  let overlay: BlockNode | undefined;
  try {
    // Opened without its backing file (BDRV_O_NO_BACKING); the old node becomes its backing child below. An existing raw
    // image or bare file opens, and only then is found to take no backing image (bdrv_open, then supports_backing).
    overlay = await openBlockdev(
      ctx.graph,
      { driver: format, ...(snapshotName !== undefined ? { 'node-name': snapshotName } : {}), ...imageFileOptions(format, file), ...(format === 'qcow2' ? { backing: null } : {}) },
      // The command's own reference until the transaction ends (commitSnapshot); the overlay is never the monitor's.
      true,
    );
    return { old, overlay, createdFile, moved: await appendChecked(overlay, old) };
  } catch (err) {
    if (overlay) await ctx.graph.discard(overlay);
    if (createdFile !== undefined) await unlink(createdFile).catch(() => undefined);
    throw err;
  }
}

/** external_snapshot_prepare's checks of the overlay, then bdrv_append. */
async function appendChecked(overlay: BlockNode, old: BlockNode): Promise<NodeChild[]> {
  // Only parents that do not expect to see a valid image yet may use an overlay that gets a backing file (a mirror target).
  if (overlay.cumulativePerm().perm & PERM_CONSISTENT_READ) throw fail('The overlay is already in use');
  if (overlay.isFilter) throw fail('Filters cannot be used as overlays');
  if (overlay.child('backing')) throw fail('The overlay already has a backing image');
  if (!overlay.supportsBacking) throw fail('The overlay does not support backing images');
  return GraphTransaction.run((tran) => appendOverlay(tran, overlay, old));
}

/**
 * blockdev-snapshot's prepare: an existing overlay node (a qcow2 opened
 * without a backing image) goes on top of `node`, checked in QEMU's order
 * and words.
 */
export async function prepareSnapshot(ctx: QmpContext, d: Infer<typeof BlockdevSnapshot>): Promise<PreparedSnapshot> {
  const old = ctx.graph.find(d.node);
  ctx.jobs.drainNode(old);
  old.blockers.check(ctx.graph.backends.deviceOrNodeName(old), 'external-snapshot');
  if (!old.readOnly) await old.flush();
  const overlay = ctx.graph.find(d.overlay);
  return { old, overlay, createdFile: undefined, attached: true, moved: await appendChecked(overlay, old) };
}

/** external_snapshot_commit: the old node becomes read-only below its overlay (a failure there is ignored, as QEMU ignores it). */
export async function commitSnapshot(ctx: QmpContext, s: PreparedSnapshot): Promise<void> {
  await reopenSetReadOnly(reopenContext(ctx), s.old, true).catch(() => undefined);
  // The command's own reference goes (bdrv_unref in external_snapshot_clean): an overlay lives as long as its parents (a
  // device, an export, a job) hold it, and one nothing uses is closed now, its name free again (iotest 182).
  if (s.attached) return;
  ctx.graph.disown(s.overlay);
  await ctx.graph.release(s.overlay);
}

/**
 * external_snapshot_abort: the old node's parents go back to it and the
 * overlay loses its backing child; the overlay itself goes unless it
 * existed before, and so does a file this snapshot created (unlike QEMU).
 */
export async function abortSnapshot(ctx: QmpContext, s: PreparedSnapshot): Promise<void> {
  await ctx.graph.moveBack(s.moved, s.old);
  await GraphTransaction.run((tran) => setBacking(tran, s.overlay, undefined)).catch(() => undefined);
  if (s.attached) return;
  await ctx.graph.discard(s.overlay);
  if (s.createdFile !== undefined) await unlink(s.createdFile).catch(() => undefined);
}

/**
 * The checks of blockdev-snapshot-internal-sync's prepare
 * (internal_snapshot_prepare), as a command or a transaction action:
 * QEMU's, in its order and words.
 */
export function checkInternalSnapshot(ctx: QmpContext, d: Infer<typeof BlockdevSnapshotInternal>): BlockNode {
  const bs = rootNode(ctx, d.device);
  bs.blockers.check(ctx.graph.backends.deviceOrNodeName(bs), 'internal-snapshot');
  if (bs.readOnly) throw fail(`Device '${d.device}' is read only`);
  if (!canSnapshot(bs)) throw fail(`Block format '${bs.driver}' used by device '${d.device}' does not support internal snapshots`);
  if (d.name === '') throw fail('Name is empty');
  return bs;
}
