import type { BlockGraph } from '../../blockdev/graph.js';
import type { BlockNode } from '../../blockdev/node.js';
import { type BlockdevSpec, openBlockdev, PROTOCOLS } from '../../blockdev/open.js';
import { BlockError } from '../../image/errors.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { blockdevAdd, blockdevDel, queryBlock, queryNamedBlockNodes } from '../schema/block-core.js';
import { blockDeviceInfo } from './block-info.js';

/** Adds a node as blockdev-add (and --blockdev) do: the root must be named. */
export async function addBlockdev(ctx: Pick<QmpContext, 'graph'> & Partial<Pick<QmpContext, 'jobs'>>, spec: BlockdevSpec): Promise<void> {
  if (spec['node-name'] === undefined) throw new BlockError('INVALID_ARGUMENT', "'node-name' must be specified for the root node");
  // bdrv_open_inherit puts a BlockBackend on the `file` of every format or filter node it opens, only to probe it,
  // and removes it again (blk_remove_bs): jobs at or above an existing node named there pause twice for a moment.
  for (const node of probedFiles(ctx.graph, spec)) for (let i = 0; i < 2; i++) ctx.jobs?.drainWithParents(node);
  await openBlockdev(ctx.graph, asNumbers(spec) as BlockdevSpec);
}

/** The existing nodes that a non-protocol node of the tree (the root or an inline child) names as its `file`. */
function probedFiles(graph: BlockGraph, spec: BlockdevSpec): BlockNode[] {
  const out: BlockNode[] = [];
  const walk = (s: Record<string, unknown>) => {
    const file = s['file'];
    const named = typeof file === 'string' && !PROTOCOLS.has(String(s['driver'])) ? graph.get(file) : undefined;
    if (named) out.push(named);
    for (const v of Object.values(s)) if (v !== null && typeof v === 'object' && !Array.isArray(v) && 'driver' in v) walk(v as Record<string, unknown>);
  };
  walk(spec);
  return out;
}

/**
 * The node drivers take their sizes and offsets as numbers: a 64-bit
 * option the schema kept as a bigint (past 2^53) reaches them rounded,
 * as every option did before the schema kept them exact.
 */
function asNumbers(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(asNumbers);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, asNumbers(x)]));
  return v;
}

/** blockdev-add, blockdev-del and the node queries (block-core.json). */
export function addBlockdevCommands(table: CommandTable<QmpContext>): void {
  table
    .add(blockdevAdd, (args, ctx) => addBlockdev(ctx, args as BlockdevSpec))
    .add(blockdevDel, (args, ctx) => ctx.graph.delete(args['node-name']))
    // Every node's info at once: each waits on its file's fstat in the thread pool, and one after
    // another those round trips were most of the reply's time with many nodes (QEMU's are synchronous).
    .add(queryNamedBlockNodes, async (args, ctx) => (await Promise.all(ctx.graph.list().map((n) => blockDeviceInfo(n, args.flat ?? false)))) as never)
    .add(queryBlock, async (_args, ctx) => (await import('./query-block.js')).queryBlock(ctx.graph) as never);
}
