import { BlockBackend } from '../../blockdev/block-backend.js';
import { PERM_ALL, PERM_RESIZE } from '../../image/perm.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import { blockResize } from '../schema/block-core.js';

const fail = (desc: string) => new QmpError('GenericError', desc);

/**
 * block_resize (qmp_block_resize): the node is found as bdrv_lookup_bs
 * finds it (a `device` names a BlockBackend, which the storage daemon
 * never has), refused while an operation blocks resizing, then resized
 * through a BlockBackend of its own taking resize — so an export or a job
 * that does not share it refuses with QEMU's permission conflict — with
 * the jobs using the node drained meanwhile.
 */
async function resize(ctx: QmpContext, device: string | undefined, nodeName: string | undefined, size: number | bigint): Promise<void> {
  const node = ctx.graph.lookup(device, nodeName);
  if (size < 0) throw fail("Parameter 'size' expects a >0 size");
  // QERR_DEVICE_IN_USE with the device argument, which QEMU prints as "(null)" when only node-name was given.
  if (node.blockers.blocking('resize')) throw fail(`Device '${device ?? '(null)'}' is in use`);
  const blk = new BlockBackend({ perm: PERM_RESIZE, shared: PERM_ALL });
  await blk.insert(node);
  try {
    ctx.jobs.drainNode(node);
    // Past 2^53 the node refuses the size as beyond blockemu (QEMU's limit is near 2^63).
    await node.resize(Number(size));
  } finally {
    await blk.remove();
  }
}

export function addResizeCommands(table: CommandTable<QmpContext>): void {
  table.add(blockResize, (a, ctx) => resize(ctx, a.device, a['node-name'], a.size));
}
