import { type BlockdevSpec, openBlockdev } from '../../blockdev/open.js';
import { BlockError } from '../../image/errors.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { blockdevAdd, blockdevDel, queryBlock, queryNamedBlockNodes } from '../schema/block-core.js';
import { blockDeviceInfo } from './block-info.js';

/** Adds a node as blockdev-add (and --blockdev) do: the root must be named. */
export async function addBlockdev(ctx: Pick<QmpContext, 'graph'>, spec: BlockdevSpec): Promise<void> {
  if (spec['node-name'] === undefined) throw new BlockError('INVALID_ARGUMENT', "'node-name' must be specified for the root node");
  await openBlockdev(ctx.graph, asNumbers(spec) as BlockdevSpec);
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
    .add(queryNamedBlockNodes, async (args, ctx) => {
      const out = [];
      for (const n of ctx.graph.list()) out.push(await blockDeviceInfo(n, args.flat ?? false));
      return out as never;
    })
    // The storage daemon has no guest devices (BlockBackends), so there is nothing to list.
    .add(queryBlock, () => []);
}
