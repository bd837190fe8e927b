import * as ops from '../../blockdev/bitmap-ops.js';
import { imgBlockGraph } from './objects.js';
import { BlockBackend } from '../../blockdev/block-backend.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import type { BlockImage } from '../../image/types.js';
import { openNode } from './bitmap.js';
import { type ImgIo, ImgFailure } from './output.js';

/**
 * qemu-img convert --bitmaps (convert_check_bitmaps, convert_copy_bitmaps):
 * the source's persistent dirty bitmaps checked before anything is
 * created, then, once the data is copied, each one added to the target
 * with its granularity and enabled state and its bits merged in. Bitmaps
 * are taken in the order QEMU's node lists them (newest first), which is
 * the order of its messages.
 */

/** convert_check_bitmaps: a qcow2 source, and no inconsistent bitmap unless it is to be skipped. */
export async function checkConvertBitmaps(src: BlockImage, skipBroken: boolean): Promise<void> {
  if (!(src instanceof Qcow2Image)) throw new ImgFailure('Source lacks bitmap support');
  if (skipBroken) return;
  // The directory lists the oldest first; QEMU's node list is the other way round.
  const broken = [...(await src.bitmaps.describe())].reverse().find((b) => b.flags.includes('in-use'));
  // The hint is error_printf's: on its own line, without the program's name.
  if (broken) throw new ImgFailure(`Cannot copy inconsistent bitmap '${broken.name}'\nTry --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to delete it`);
}

/**
 * convert_copy_bitmaps, once source and target are closed: both opened as
 * nodes without their backing files (the target read-write), each bitmap
 * copied as block-dirty-bitmap-add and -merge would copy it; the target's
 * node stores them when it closes. `warn` gets the skipped ones.
 */
export async function copyConvertBitmaps(io: ImgIo, source: { name: string; format: string }, target: { name: string; format: string }, skipBroken: boolean, warn: (text: string) => void): Promise<void> {
  const graph = await imgBlockGraph();
  const users: BlockBackend[] = [];
  try {
    // As qemu-img bitmap opens its images: format nodes over file nodes, without backing files.
    const src = await openNode(io, graph, users, source.name, source.format, true);
    const dst = await openNode(io, graph, users, target.name, target.format, false);
    for (const bm of src.dirtyBitmaps.all()) {
      if (!bm.persistent || bm.name === undefined) continue;
      const name = bm.name;
      if (skipBroken && bm.inconsistent) {
        warn(`Skipping inconsistent bitmap '${name}'`);
        continue;
      }
      try {
        await ops.addBitmap(graph, { node: dst.nodeName, name, granularity: bm.granularity, persistent: true, disabled: bm.disabled });
      } catch (err) {
        throw new ImgFailure(`Failed to create bitmap ${name}: ${err instanceof Error ? err.message : String(err)}`);
      }
      try {
        ops.mergeBitmaps(graph, dst.nodeName, name, [{ node: src.nodeName, name }]);
      } catch (err) {
        await ops.removeBitmap(graph, dst.nodeName, name).catch(() => undefined);
        throw new ImgFailure(`Failed to populate bitmap ${name}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  } finally {
    for (const blk of users) await blk.remove();
    await graph.closeAll();
  }
}
