import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { nodeCrypto } from '../image/lazy-builtins.js';
import { createImage } from '../image/open.js';
import { FileNode } from './drivers/file.js';
import type { BlockGraph } from './graph.js';
import type { BlockNode } from './node.js';
import { openBlockdev } from './open.js';

/** get_tmp_filename: $TMPDIR, else /var/tmp, and vl.XXXXXX. */
export function tempSnapshotPath(): string {
  return join(process.env['TMPDIR'] || '/var/tmp', `vl.${nodeCrypto().randomBytes(3).toString('hex')}`);
}

/**
 * bdrv_append_temp_snapshot (qemu-system's -snapshot and snapshot=on,
 * qemu-io -s): a qcow2 of the image's size in a temporary file, opened
 * with the image as its backing node, to take the image's place. Writes
 * land in the overlay; the file is removed when its node closes
 * (BDRV_O_TEMPORARY). A failure is worded as QEMU words it.
 */
export async function appendTempSnapshot(graph: BlockGraph, base: BlockNode, readOnly: boolean, path = tempSnapshotPath()): Promise<BlockNode> {
  let created = false;
  try {
    await createImage(path, { format: 'qcow2', size: base.size() });
    created = true;
    // bdrv_temp_snapshot_options: nothing in it outlives the process, so it is never flushed.
    const overlay = await openBlockdev(graph, { driver: 'qcow2', file: { driver: 'file', filename: path }, backing: base.nodeName, 'read-only': readOnly, cache: { 'no-flush': true } }, false);
    const file = overlay.childEdge('file')?.node;
    if (file instanceof FileNode) file.temporary = true;
    return overlay;
  } catch (err) {
    if (created) await unlink(path).catch(() => undefined);
    throw new Error(`Could not create temporary overlay '${path}': ${(err as Error).message}`, { cause: err });
  }
}
