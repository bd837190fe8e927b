import type { HmpArgs } from './args.js';
import { callQmp, type HmpContext, HmpReportError } from './command.js';

/**
 * `drive_del id` (hmp_drive_del, whose failures are error_report's, without "Error: "): a node name deletes that node as
 * blockdev-del; a -drive's BlockBackend loses its medium and, with no
 * device attached, goes. (QEMU also makes a BlockBackend that a device
 * still holds anonymous; blockemu's keeps its name, without a medium.)
 */
export async function driveDel(ctx: HmpContext, a: HmpArgs): Promise<void> {
  const id = a['id'] as string;
  const graph = ctx.qmp.graph;
  if (graph.get(id)) {
    try {
      await callQmp(ctx, 'blockdev-del', { 'node-name': id });
    } catch (err) {
      throw new HmpReportError((err as Error).message, { cause: err });
    }
    return;
  }
  const b = graph.backends.byName(id);
  if (!b) throw new HmpReportError(`Device '${id}' not found`);
  if (!b.drive) throw new HmpReportError('Deleting device added with blockdev-add is not supported');
  const node = b.node;
  if (node) {
    try {
      node.blockers.check(graph.backends.deviceOrNodeName(node), 'drive-del');
    } catch (err) {
      throw new HmpReportError(err instanceof Error ? err.message : String(err), { cause: err });
    }
  }
  if (b.device) await b.blk.remove();
  else await graph.backends.remove(b);
  if (node) await graph.release(node);
}
