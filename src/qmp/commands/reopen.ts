import type { BlockdevSpec } from '../../blockdev/open.js';
import { blockdevReopen, type ReopenContext } from '../../blockdev/reopen.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { qdictOrder } from '../qdict-order.js';
import { blockdevReopen as blockdevReopenCmd } from '../schema/block-core.js';

/** What the block layer's reopen needs from here: the graph, and QEMU's QDict order for naming the first bad option. */
export function reopenContext(ctx: QmpContext): ReopenContext {
  return { graph: ctx.graph, order: qdictOrder };
}

/** blockdev-reopen: the options as the schema validated them, each entry one node's; the jobs on them pause for a moment. */
export function addReopenCommands(table: CommandTable<QmpContext>): void {
  table.add(blockdevReopenCmd, (a, ctx) => blockdevReopen(reopenContext(ctx), a.options as BlockdevSpec[], (node) => ctx.jobs.drainNode(node)));
}
