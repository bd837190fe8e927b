import { chainContains, filterOrCowChild } from '../../blockdev/chain.js';
import { findBackingImage } from '../../blockdev/find-backing.js';
import type { BlockNode } from '../../blockdev/node.js';
import { startStream } from '../../jobs/stream-start.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import type { ArgsType } from '../schema/command.js';
import { blockStream } from '../schema/block-core.js';
import { namesOf } from './block-info.js';
import { jobStart } from './job-start.js';

const fail = (desc: string) => new QmpError('GenericError', desc);

/**
 * qmp_block_stream: the argument checks in QEMU's order and words — the
 * exclusive pairs, the device, `base` as a backing file name, `base-node`
 * and `bottom` as nodes of the device's chain, the op blockers of every
 * node from the device down to the base — then stream_start.
 */
async function blockStreamCmd(ctx: QmpContext, a: ArgsType<typeof blockStream>): Promise<void> {
  if (a.base !== undefined && a['base-node'] !== undefined) throw fail("'base' and 'base-node' cannot be specified at the same time");
  if (a.base !== undefined && a.bottom !== undefined) throw fail("'base' and 'bottom' cannot be specified at the same time");
  if (a.bottom !== undefined && a['base-node'] !== undefined) throw fail("'bottom' and 'base-node' cannot be specified at the same time");
  const bs = ctx.graph.find(a.device);
  let base: BlockNode | undefined;
  if (a.base !== undefined) {
    base = await findBackingImage(bs, a.base, namesOf(bs));
    if (!base) throw fail(`Can't find '${a.base}' in the backing chain`);
  }
  const baseNode = a['base-node'];
  if (baseNode !== undefined) {
    base = ctx.graph.findNode(baseNode);
    if (bs === base || !chainContains(bs, base)) throw fail(`Node '${baseNode}' is not a backing image of '${a.device}'`);
  }
  let bottom: BlockNode | undefined;
  if (a.bottom !== undefined) {
    bottom = ctx.graph.findNode(a.bottom);
    if (bottom.isFilter) throw fail(`Node '${a.bottom}' is a filter, use a non-filter node as 'bottom'`);
    if (!chainContains(bs, bottom)) throw fail(`Node '${a.bottom}' is not in a chain starting from '${a.device}'`);
  }
  const end = bottom ? filterOrCowChild(bottom) : base;
  for (let n: BlockNode | undefined = bs; n && n !== end; n = filterOrCowChild(n)) n.blockers.check(ctx.graph.backends.deviceOrNodeName(n), 'stream');
  // Streaming the whole chain leaves no backing file to name.
  if (!base && a['backing-file'] !== undefined) throw fail('backing file specified, but streaming the entire chain');
  await startStream({ ...jobStart(ctx, a, bs), bs, base, bottom, backingFile: a['backing-file'] });
}

export function addStreamCommands(table: CommandTable<QmpContext>): void {
  table.add(blockStream, (a, ctx) => blockStreamCmd(ctx, a));
}
