import { setBacking } from './graph-edit.js';
import { GraphTransaction } from './graph-transaction.js';
import type { BlockGraph } from './graph.js';
import type { BlockNode } from './node.js';
import { backingError, implicitBacking, openBlockdev } from './open.js';

/**
 * bdrv_open_backing_file for a node opened without its backing file
 * (drive-mirror's mode=existing target, opened when the mirror completes):
 * the image the header names is opened as implicit backing files are and
 * becomes the node's backing child. Nothing to do when the node has one or
 * its image names none.
 */
export async function openBackingFile(graph: BlockGraph, node: BlockNode): Promise<void> {
  if (node.child('backing')) return;
  const info = await node.imageInfo();
  if (info.backingFilename === undefined || info.fullBackingFilename === undefined) return;
  let backing: BlockNode | undefined;
  try {
    const implicit = await implicitBacking(info.fullBackingFilename, info.fullBackingFilename, info.backingFormat);
    backing = await openBlockdev(graph, implicit.spec, false, true);
    const opened = backing;
    await GraphTransaction.run((tran) => setBacking(tran, node, opened));
    const link = node.childEdge('backing');
    if (link) link.implicitName = implicit.name;
    // auto_backing_file: the opened image's name, so the node's backing counts as the header's (no json: name).
    node.autoBackingFile = implicit.name;
    node.autoBackingNode = opened;
  } catch (err) {
    if (backing && !backing.inUse) await graph.discard(backing);
    throw backingError(err);
  }
}
