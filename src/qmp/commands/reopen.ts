import type { ReopenContext } from '../../blockdev/reopen.js';
import type { QmpContext } from '../context.js';
import { qdictOrder } from '../qdict-order.js';

/** What the block layer's reopen needs from here: the graph, and QEMU's QDict order for naming the first bad option. */
export function reopenContext(ctx: QmpContext): ReopenContext {
  return { graph: ctx.graph, order: qdictOrder };
}
