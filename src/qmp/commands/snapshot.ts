import { unlink } from 'node:fs/promises';
import { Qcow2Node } from '../../blockdev/drivers/qcow2.js';
import type { BlockNode } from '../../blockdev/node.js';
import { openBlockdev } from '../../blockdev/open.js';
import type { QmpContext } from '../context.js';
import { QmpError } from '../error.js';
import { checkOpenFormat, createImageFile } from './image-format.js';
import type { BlockdevSnapshot, BlockdevSnapshotSync } from '../schema/block-core/snapshot-args.js';
import type { Infer } from '../schema/types.js';

const fail = (desc: string) => new QmpError('GenericError', desc);

/** An external snapshot set up by prepare: the overlay node on top of the old one. */
export interface PreparedSnapshot {
  old: BlockNode;
  overlay: BlockNode;
  createdFile: string | undefined;
  /** blockdev-snapshot: the overlay existed before, only its backing link is new. */
  attached?: boolean;
  /** Moves the old node's parents, which went onto the overlay, back (abort). */
  moveBack: () => Promise<void>;
}

/**
 * blockdev-snapshot-sync's prepare (blockdev.c external_snapshot_prepare),
 * checks in QEMU's order and words: the node, the overlay's name, then the
 * overlay image (created with the old node's file as backing file unless
 * mode=existing) opened on top of the old node. The old node's parents
 * move to the overlay (bdrv_append), so they write into it from now on.
 */
export async function prepareSnapshotSync(ctx: QmpContext, d: Infer<typeof BlockdevSnapshotSync>): Promise<PreparedSnapshot> {
  // bdrv_lookup_bs(device, node-name): `device` names a BlockBackend, which the storage daemon never has, so only node-name finds a node.
  const old = d['node-name'] !== undefined ? ctx.graph.get(d['node-name']) : undefined;
  if (!old) throw fail(`Cannot find device='${d.device ?? ''}' nor node-name='${d['node-name'] ?? ''}'`);
  ctx.jobs.drainNode(old);
  if (old.busyWith) throw fail(`Node '${old.nodeName}' is busy: block device is in use by ${old.busyWith}`);
  const snapshotName = d['snapshot-node-name'];
  if (d['node-name'] !== undefined && snapshotName === undefined) throw fail('New overlay node-name missing');
  if (snapshotName !== undefined && ctx.graph.get(snapshotName)) throw fail('New overlay node-name already in use');
  if (!old.readOnly) await old.flush();
  const format = d.format ?? 'qcow2';
  const file = d['snapshot-file'];
  const info = await old.imageInfo();
  let createdFile: string | undefined;
  if ((d.mode ?? 'absolute-paths') !== 'existing') {
    const backingFormat = old.driver === 'qcow2' ? 'qcow2' : 'raw';
    if (await createImageFile({ path: file, format, size: old.size(), backingFile: info.filename, backingFormat })) createdFile = file;
  } else {
    checkOpenFormat(format);
  }
  try {
    // An existing raw image or bare file opens, and only then is found to take no backing image (bdrv_open, then supports_backing).
    if (format === 'raw' || format === 'file') {
      const probe = await openBlockdev(ctx.graph, format === 'file' ? { driver: 'file', filename: file } : { driver: 'raw', file: { driver: 'file', filename: file } }, false);
      await ctx.graph.discard(probe);
      throw fail('The overlay does not support backing images');
    }
    const overlay = await openBlockdev(
      ctx.graph,
      { driver: format, ...(snapshotName !== undefined ? { 'node-name': snapshotName } : {}), file: { driver: 'file', filename: file }, backing: old.nodeName },
      // QEMU drops an overlay nobody uses right after the command (in the storage daemon, every overlay without an export);
      // blockemu keeps it as if added by blockdev-add, so it can be used and deleted.
      true,
    );
    return { old, overlay, createdFile, moveBack: await ctx.graph.moveParents(old, overlay, overlay) };
  } catch (err) {
    if (createdFile !== undefined) await unlink(createdFile).catch(() => undefined);
    throw err;
  }
}

/**
 * blockdev-snapshot's prepare: an existing overlay node (a qcow2 opened
 * without a backing image) goes on top of `node`, checked in QEMU's order
 * and words.
 */
export async function prepareSnapshot(ctx: QmpContext, d: Infer<typeof BlockdevSnapshot>): Promise<PreparedSnapshot> {
  const old = ctx.graph.find(d.node);
  ctx.jobs.drainNode(old);
  if (old.busyWith) throw fail(`Node '${old.nodeName}' is busy: block device is in use by ${old.busyWith}`);
  if (!old.readOnly) await old.flush();
  const overlay = ctx.graph.find(d.overlay);
  if (overlay.inUse) throw fail('The overlay is already in use');
  if (overlay.busyWith) throw fail(`Node '${overlay.nodeName}' is busy: block device is in use by ${overlay.busyWith}`);
  if (!(overlay instanceof Qcow2Node)) throw fail('The overlay does not support backing images');
  if (overlay.image.hasBacking() || overlay.child('backing')) throw fail('The overlay already has a backing image');
  await overlay.setBackingNode(old);
  return { old, overlay, createdFile: undefined, attached: true, moveBack: await ctx.graph.moveParents(old, overlay, overlay) };
}

/** external_snapshot_commit: the old node becomes read-only below its overlay (a failure there is ignored, as QEMU ignores it). */
export async function commitSnapshot(s: PreparedSnapshot): Promise<void> {
  await s.old.reopenReadOnly().catch(() => undefined);
}

/** external_snapshot_abort: the overlay goes; unlike QEMU, a file this snapshot created goes too. */
export async function abortSnapshot(ctx: QmpContext, s: PreparedSnapshot): Promise<void> {
  await s.moveBack();
  if (s.attached) {
    await (s.overlay as Qcow2Node).setBackingNode(undefined);
    return;
  }
  await ctx.graph.discard(s.overlay);
  if (s.createdFile !== undefined) await unlink(s.createdFile).catch(() => undefined);
}
