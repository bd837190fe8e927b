import { errnoOf, strerror } from '../image/errno.js';
import { BlockError } from '../image/errors.js';
import { CHILD_COW } from './child.js';
import { GraphTransaction } from './graph-transaction.js';
import type { BlockNode } from './node.js';
import { type ReopenPlan, refreshPerms } from './permissions.js';

/**
 * The nodes a reopen of `node` to `readOnly` takes along
 * (bdrv_reopen_queue_child): the node, and each child it opened inline
 * that did not set read-only itself; a backing child keeps its own state.
 */
export function reopenQueue(node: BlockNode, readOnly: boolean, plan = new Map<BlockNode, { readOnly: boolean }>()): Map<BlockNode, { readOnly: boolean }> {
  plan.set(node, { readOnly });
  for (const c of node.childList()) {
    if (c.role & CHILD_COW || c.node.inheritsFrom !== node || c.node.readOnlyExplicit || plan.has(c.node)) continue;
    reopenQueue(c.node, readOnly, plan);
  }
  return plan;
}

/**
 * bdrv_reopen_multiple for a change of read-only state: every node is
 * flushed first (a failure refuses the reopen: "Error flushing drive"),
 * the permissions the nodes will need are checked (a node going
 * read-only can no longer serve a writer: "Read-only block node 'x'
 * cannot support read-write users"), then each node switches (a qcow2
 * stores its bitmaps first), then the lock bytes narrow.
 */
export async function reopenReadOnlyState(plan: ReopenPlan): Promise<void> {
  for (const node of plan.keys()) {
    try {
      await node.flush();
    } catch (err) {
      const errno = errnoOf(err);
      throw new BlockError('IO', `Error flushing drive: ${strerror(errno)}`, { errno, cause: err });
    }
  }
  await GraphTransaction.run(async (tran) => {
    const roots = [...plan.keys()];
    await refreshPerms(roots, tran, plan);
    // Children first when they become writable (a format writes its header through its file as it reopens), parents first otherwise.
    const steps = [...[...plan].filter(([, p]) => !p.readOnly).reverse(), ...[...plan].filter(([, p]) => p.readOnly)];
    for (const [node, { readOnly }] of steps) {
      if (node.readOnly === readOnly) continue;
      await node.switchReadOnly(readOnly);
      tran.addUndo(() => node.switchReadOnly(!readOnly));
    }
  });
}

/** bdrv_reopen_set_read_only(node, true): a snapshot's old top below its overlay. */
export function reopenReadOnly(node: BlockNode): Promise<void> {
  return reopenReadOnlyState(reopenQueue(node, true));
}

/** bdrv_reopen_set_read_only(node, false): a job's target made writable for the job. */
export function reopenReadWrite(node: BlockNode): Promise<void> {
  return reopenReadOnlyState(reopenQueue(node, false));
}

/**
 * Runs `fn` with `node` writable: a read-only node is reopened read-write
 * for it and read-only again after, a failure of that last step ignored
 * (bdrv_backing_update_filename's pattern).
 */
export async function whileWritable<T>(node: BlockNode, fn: () => Promise<T>): Promise<T> {
  const ro = node.readOnly;
  if (ro) await reopenReadWrite(node);
  try {
    return await fn();
  } finally {
    if (ro) await reopenReadOnly(node).catch(() => undefined);
  }
}
