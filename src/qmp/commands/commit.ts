import { chainContains, filterOrCowChild, findOverlay, skipFilters } from '../../blockdev/chain.js';
import { findBackingImage } from '../../blockdev/find-backing.js';
import type { BlockNode } from '../../blockdev/node.js';
import { PERM_WRITE } from '../../image/perm.js';
import { startActiveCommit } from '../../jobs/commit-active.js';
import { startCommit } from '../../jobs/commit-start.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import type { ArgsType } from '../schema/command.js';
import { blockCommit } from '../schema/block-core.js';
import { rootNode } from './backing.js';
import { namesOf } from './block-info.js';
import { jobStart } from './job-start.js';

type Args = ArgsType<typeof blockCommit>;
const fail = (desc: string) => new QmpError('GenericError', desc);

/** The device must exist before anything else is said of it: libvirt probes for DeviceNotFound. */
function device(ctx: QmpContext, name: string): BlockNode {
  if (!ctx.graph.backends.byName(name)?.node && !ctx.graph.get(name)) throw new QmpError('DeviceNotFound', `Device '${name}' not found`);
  return rootNode(ctx, name);
}

/** `top-node` or `top` (a backing file name; the device's own name means the device): the top of the range, the device by default. */
async function topOf(ctx: QmpContext, a: Args, bs: BlockNode): Promise<BlockNode> {
  const topNode = a['top-node'];
  if (topNode !== undefined && a.top !== undefined) throw fail("'top-node' and 'top' are mutually exclusive");
  let top: BlockNode | undefined = bs;
  if (topNode !== undefined) {
    top = ctx.graph.findNode(topNode);
    if (!chainContains(bs, top)) throw fail(`'${topNode}' is not in this backing file chain`);
  } else if (a.top !== undefined) {
    const names = namesOf(bs);
    if (names.get(bs)!.filename !== a.top) top = await findBackingImage(bs, a.top, names);
  }
  if (!top) throw fail(`Top image file ${a.top ?? 'NULL'} not found`);
  return top;
}

/** `base-node` or `base` (a backing file name): the node the data goes into, the bottom of the chain by default. */
async function baseOf(ctx: QmpContext, a: Args, top: BlockNode): Promise<BlockNode> {
  const baseNode = a['base-node'];
  if (baseNode !== undefined && a.base !== undefined) throw fail("'base-node' and 'base' are mutually exclusive");
  if (baseNode !== undefined) {
    const base = ctx.graph.findNode(baseNode);
    if (!chainContains(top, base)) throw fail(`'${baseNode}' is not in this backing file chain`);
    return base;
  }
  if (a.base !== undefined) {
    const base = await findBackingImage(top, a.base, namesOf(top));
    if (!base) throw fail(`Can't find '${a.base}' in the backing chain`);
    return base;
  }
  const base = findOverlay(top, undefined);
  if (!base) throw fail('There is no backimg image');
  return base;
}

/**
 * qmp_block_commit: the device (a root node), the commit-source blocker,
 * the range's top and base, the commit-target blockers from top down to
 * base, then either an active commit (the top is the active layer or has
 * a writer) or commit_start, after the top's overlay is checked too.
 */
async function blockCommitCmd(ctx: QmpContext, a: Args): Promise<void> {
  const bs = device(ctx, a.device);
  bs.blockers.check(ctx.graph.backends.deviceOrNodeName(bs), 'commit-source');
  const top = await topOf(ctx, a, bs);
  const base = await baseOf(ctx, a, top);
  const end = filterOrCowChild(base);
  for (let n: BlockNode | undefined = top; n && n !== end; n = filterOrCowChild(n)) n.blockers.check(ctx.graph.backends.deviceOrNodeName(n), 'commit-target');
  if (top === base) throw fail('cannot commit an image into itself');
  const start = jobStart(ctx, a, bs);
  const active = skipFilters(top) === skipFilters(bs);
  if (active || top.cumulativePerm().perm & PERM_WRITE) {
    if (a['backing-file'] !== undefined) throw fail(active ? "'backing-file' specified, but 'top' is the active layer" : "'backing-file' specified, but 'top' has a writer on it");
    await startActiveCommit({ ...start, top, base });
    return;
  }
  const overlay = findOverlay(bs, top)!;
  overlay.blockers.check(ctx.graph.backends.deviceOrNodeName(overlay), 'commit-target');
  await startCommit({ ...start, bs, top, base, backingFile: a['backing-file'] });
}

export function addCommitCommands(table: CommandTable<QmpContext>): void {
  table.add(blockCommit, (a, ctx) => blockCommitCmd(ctx, a));
}
