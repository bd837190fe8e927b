import { BlockError } from '../image/errors.js';
import type { BlockGraph } from './graph.js';
import { replaceNode } from './graph-edit.js';
import { GraphTransaction } from './graph-transaction.js';
import type { BlockNode } from './node.js';
import { type BlockdevSpec, openBlockdev } from './open.js';

/** QEMU prefixes the step that failed to the reason (error_prepend). */
function prefixed(prefix: string, err: unknown): BlockError {
  const msg = err instanceof Error ? err.message : String(err);
  return new BlockError(err instanceof BlockError ? err.code : 'INVALID_ARGUMENT', `${prefix}${msg}`, { errno: err instanceof BlockError ? err.errno : undefined, cause: err });
}

/**
 * bdrv_insert_node: a new node opened from `spec` (read-write, not owned
 * by the monitor) takes `above`'s place for all its parents but those
 * that stay (jobs, links the new node reaches itself). Refused with
 * QEMU's words: "Could not create node: …" when it cannot be opened,
 * "Could not replace node: …" when the parents cannot move (the new node
 * then goes again).
 */
export async function insertNode(graph: BlockGraph, spec: BlockdevSpec, above: BlockNode): Promise<BlockNode> {
  let node: BlockNode;
  try {
    node = await openBlockdev(graph, spec, false);
  } catch (err) {
    throw prefixed('Could not create node: ', err);
  }
  try {
    await GraphTransaction.run((tran) => replaceNode(tran, above, node));
  } catch (err) {
    await graph.discard(node);
    throw prefixed('Could not replace node: ', err);
  }
  return node;
}
