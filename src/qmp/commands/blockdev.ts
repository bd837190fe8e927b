import { type BlockdevSpec, openBlockdev } from '../../blockdev/open.js';
import { BlockError } from '../../image/errors.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { blockdevAdd, blockdevDel, queryBlock, queryNamedBlockNodes } from '../schema/block-core.js';
import { blockDeviceInfo } from './block-info.js';

/** Adds a node as blockdev-add (and --blockdev) do: the root must be named. */
export async function addBlockdev(ctx: Pick<QmpContext, 'graph'>, spec: BlockdevSpec): Promise<void> {
  if (spec['node-name'] === undefined) throw new BlockError('INVALID_ARGUMENT', "'node-name' must be specified for the root node");
  await openBlockdev(ctx.graph, spec);
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
