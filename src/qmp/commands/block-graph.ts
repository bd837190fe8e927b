import type { BlockBackend } from '../../blockdev/block-backend.js';
import type { NodeChild } from '../../blockdev/child.js';
import type { BlockGraph } from '../../blockdev/graph.js';
import { PERM_QAPI_NAMES, type PermQapiName } from '../../image/perm.js';
import { BlockJob } from '../../jobs/block-job.js';
import type { JobManager } from '../../jobs/manager.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { xBlockdevChange, xBlockdevSetIothread, xDebugQueryBlockGraph } from '../schema/block-core.js';
import { QuorumNode } from '../../blockdev/drivers/quorum.js';
import { iothreadChangeRefusal } from '../../blockdev/aio-context.js';
import { QmpError } from '../error.js';
import { BlockNode } from '../../blockdev/node.js';

type Perm = PermQapiName;
/** BlockPermission names; each list is built by prepending, so it comes out last bit first. */
const permList = (bits: number): Perm[] => PERM_QAPI_NAMES.filter(([b]) => (bits & b) !== 0).map(([, n]) => n).reverse();

interface GraphNode {
  id: number;
  type: 'block-backend' | 'block-job' | 'block-driver';
  name: string;
}
interface GraphEdge {
  parent: number;
  child: number;
  name: string;
  perm: Perm[];
  'shared-perm': Perm[];
}

/**
 * bdrv_get_xdbg_block_graph: every BlockBackend, then every block job,
 * then every node (oldest first), each with its links to its children.
 * Ids are handed out in the order things are first met — a link's child
 * gets one before it is listed itself — and both lists are built by
 * prepending, so they come out newest first.
 */
export function blockGraph(graph: BlockGraph, jobs: JobManager, exportBackends: readonly BlockBackend[]): { nodes: GraphNode[]; edges: GraphEdge[] } {
  const ids = new Map<object, number>();
  const id = (o: object) => {
    let n = ids.get(o);
    if (n === undefined) ids.set(o, (n = ids.size + 1));
    return n;
  };
  const nodes: GraphNode[] = [];
  const edges: GraphEdge[] = [];
  const addNode = (o: object, type: GraphNode['type'], name: string) => nodes.unshift({ id: id(o), type, name });
  const addEdge = (parent: object, link: NodeChild) =>
    edges.unshift({ parent: id(parent), child: id(link.node), name: link.name, perm: permList(link.perm), 'shared-perm': permList(link.shared) });

  // The monitor's BlockBackends in the order they were made, then those of exports (blk_all_next).
  const backends: Array<{ blk: BlockBackend; name: string }> = graph.backends.list().map((b) => ({ blk: b.blk, name: b.name !== '' ? b.name : (b.device?.id ?? b.device?.path ?? '') }));
  for (const blk of exportBackends) backends.push({ blk, name: '' });
  for (const { blk, name } of backends) {
    addNode(blk, 'block-backend', name);
    const root = blk.node?.parents.find((l) => l.owner === blk);
    if (root) addEdge(blk, root);
  }
  // The job list holds the newest job first (QLIST_INSERT_HEAD).
  for (const job of [...jobs.list()].reverse()) {
    if (!(job instanceof BlockJob)) continue;
    addNode(job, 'block-job', job.id);
    for (const link of job.nodes.list()) addEdge(job, link);
  }
  for (const node of [...graph.list()].reverse()) {
    addNode(node, 'block-driver', node.nodeName);
    for (const link of node.childList()) addEdge(node, link);
  }
  return { nodes, edges };
}

/**
 * qmp_x_blockdev_set_iothread: its checks in QEMU's order and words. The
 * move itself changes nothing here (one event loop), but what QEMU would
 * refuse is refused: a node a BlockBackend uses without force, an unknown
 * iothread, and (bdrv_try_change_aio_context) a subtree a device's
 * BlockBackend uses, which cannot change context while attached.
 */
function setIothread(ctx: QmpContext, nodeName: string, iothread: string | null, force: boolean): void {
  const node = ctx.graph.get(nodeName);
  if (!node) throw new QmpError('GenericError', `Failed to find node with node-name='${nodeName}'`);
  const backendOf = (n: BlockNode) => n.parents.find((c) => (c.owner as { isBackend?: boolean }).isBackend);
  if (!force && backendOf(node)) {
    throw new QmpError('GenericError', `Node ${nodeName} is associated with a BlockBackend and could be in use (use force=true to override this check)`);
  }
  if (iothread !== null && ctx.objects.find(iothread)?.typeName !== 'iothread') throw new QmpError('GenericError', `Cannot find iothread ${iothread}`);
  const refusal = iothreadChangeRefusal(node);
  if (refusal) throw new QmpError('GenericError', refusal);
}

export function addBlockGraphCommands(table: CommandTable<QmpContext>): void {
  table.add(xDebugQueryBlockGraph, async (_a, ctx) =>
    blockGraph(
      ctx.graph,
      ctx.jobs,
      ctx.exports.list().map((e) => e.blk),
    ),
  );
  table.add(xBlockdevSetIothread, async (a, ctx) => setIothread(ctx, a['node-name'], a.iothread, a.force ?? false));
  table.add(xBlockdevChange, async (a, ctx) => changeChildren(ctx, a.parent, a.child, a.node));
}

/** qmp_x_blockdev_change: one child taken away (bdrv_del_child), or one node added (bdrv_add_child), in QEMU's words. */
async function changeChildren(ctx: QmpContext, parentName: string, child: string | undefined, nodeName: string | undefined): Promise<void> {
  const parent = ctx.graph.find(parentName);
  if ((child === undefined) === (nodeName === undefined)) {
    throw new QmpError('GenericError', child !== undefined ? 'The parameters child and node are in conflict' : 'Either child or node must be specified');
  }
  const shown = ctx.graph.backends.deviceOrNodeName(parent);
  if (child !== undefined) {
    const link = parent.childList().find((c) => c.name === child);
    if (!link) throw new QmpError('GenericError', `Node '${parentName}' does not have child '${child}'`);
    if (!(parent instanceof QuorumNode)) throw new QmpError('GenericError', `The node ${shown} does not support removing a child`);
    await parent.delChild(link);
    // bdrv_unref_child: a child the monitor did not add, and nothing else uses, goes with its link.
    await ctx.graph.release(link.node);
  }
  if (nodeName !== undefined) {
    const node = ctx.graph.get(nodeName);
    if (!node) throw new QmpError('GenericError', `Node '${nodeName}' not found`);
    if (!(parent instanceof QuorumNode)) throw new QmpError('GenericError', `The node ${shown} does not support adding a child`);
    if (node.parents.length > 0) throw new QmpError('GenericError', `The node ${node.nodeName} already has a parent`);
    await parent.addChild(node);
  }
}
